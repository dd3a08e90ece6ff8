"""Demo building blocks: bundled examples load through the real loaders, the tiny banner, the decoder control."""

from __future__ import annotations

from demo.ui import EXAMPLE_MESSAGES, build_demo
from media.audio_io import load_audio
from media.files import detect_kind
from media.image_io import load_image
from media.video_io import load_video_frames
from mumu.pipeline import MuMuPipeline


def test_examples_exist_and_load():
    for message in EXAMPLE_MESSAGES:
        (path,) = message["files"]
        kind = detect_kind(path)
        loaded = {"audio": lambda p: load_audio(p), "image": load_image,
                  "video": lambda p: load_video_frames(p, 8)}[kind](path)
        assert loaded is not None
        assert message["text"].strip()


def _texts(tmp_path, banner):
    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    config = build_demo(pipeline, banner).get_config_file()
    return [str(c.get("props", {}).get("value")) for c in config["components"]]


def test_banner_is_shown_when_given(tmp_path):
    assert any("random weights: gibberish" in t for t in _texts(tmp_path, "random weights: gibberish"))


def test_no_banner_for_real_weights(tmp_path):
    assert not any("**Note:**" in t for t in _texts(tmp_path, None))


def test_decoder_dropdown_offers_every_decoder_and_says_which_run_in_caption_mode(tmp_path):
    from demo.ui import steps_slider

    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    components = build_demo(pipeline).get_config_file()["components"]
    (decoder,) = [c["props"] for c in components if c["props"].get("label") == "Decoder"]
    assert decoder["value"] == "musicgen"
    assert [tuple(c) for c in decoder["choices"]] == [
        ("musicgen (trained projector)", "musicgen"), ("musicgen_melody (caption mode)", "musicgen_melody"),
        ("audioldm2 (caption mode)", "audioldm2")]
    (steps,) = [c["props"] for c in components if c["props"].get("label") == "AudioLDM2 steps"]
    assert steps["interactive"] is False and "only when the decoder is audioldm2" in steps["info"]
    assert steps_slider("audioldm2").interactive and not steps_slider("musicgen").interactive
