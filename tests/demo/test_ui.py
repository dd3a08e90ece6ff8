"""Demo building blocks: bundled examples load through the real loaders, the ZeroGPU hook, the tiny banner."""

from __future__ import annotations

import sys
import types

from adapters.audio_io import load_audio
from adapters.image_io import load_image
from adapters.media import detect_kind
from adapters.video_io import load_video_frames
from demo.ui import EXAMPLE_MESSAGES, build_demo, on_gpu
from mumu.pipeline import MuMuPipeline


def test_examples_exist_and_load():
    for message in EXAMPLE_MESSAGES:
        (path,) = message["files"]
        kind = detect_kind(path)
        loaded = {"audio": lambda p: load_audio(p), "image": load_image,
                  "video": lambda p: load_video_frames(p, 8)}[kind](path)
        assert loaded is not None
        assert message["text"].strip()


def test_on_gpu_uses_spaces_when_present(monkeypatch):
    def handler(x):
        return x

    assert on_gpu(handler) is handler  # no spaces package here
    calls = []
    fake = types.ModuleType("spaces")

    def gpu(duration):
        calls.append(duration)
        return lambda fn: ("wrapped", fn)

    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert on_gpu(handler) == ("wrapped", handler)
    assert calls == [120]


def _texts(tmp_path, banner):
    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    config = build_demo(pipeline, banner).get_config_file()
    return [str(c.get("props", {}).get("value")) for c in config["components"]]


def test_banner_is_shown_when_given(tmp_path):
    assert any("random weights: gibberish" in t for t in _texts(tmp_path, "random weights: gibberish"))


def test_no_banner_for_real_weights(tmp_path):
    assert not any("**Note:**" in t for t in _texts(tmp_path, None))
