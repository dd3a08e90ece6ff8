"""`python -m mumu chat`: the JSON contract, music modes, and exit 2 with one line for every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import mumu.pipeline
from mumu.cli import main
from mumu.pipeline import MuMuPipeline


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return MuMuPipeline.from_profile("tiny", out_dir=tmp_path_factory.mktemp("out"))


@pytest.fixture(autouse=True)
def reuse_pipeline(monkeypatch, shared):
    """Build the tiny pipeline once for the module; the CLI logic around it is what is tested."""
    def from_profile(name, decoder="musicgen", device="cpu", out_dir="outputs"):
        shared.out_dir = out_dir
        return shared

    monkeypatch.setattr(mumu.pipeline.MuMuPipeline, "from_profile", staticmethod(from_profile))


def _run(capsys, *args):
    code = main(["chat", "--max-new-tokens", "10", "--duration", "0.3", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_reply_with_music(tmp_path, capsys):
    code, out, err = _run(capsys, "--text", "a calm piano piece", "--music", "always", "--json",
                          "--out-dir", str(tmp_path), "--seed", "4")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"text", "audio", "sample_rate", "timings", "model"}
    assert data["model"] | {"needs_gib": 0} == {"name": "tiny", "how": "profile", "reason": "--profile tiny",
                                                "profile": "tiny", "checkpoint": None, "needs_gib": 0}
    assert "running the offline tiny profile" in err
    assert data["audio"].startswith(str(tmp_path)) and sf.info(data["audio"]).samplerate == data["sample_rate"]
    assert {"encode", "llm", "decoder", "total"} <= set(data["timings"])
    assert "loading model" in err  # progress goes to stderr


def test_music_never_gives_null_audio(tmp_path, capsys):
    code, out, _ = _run(capsys, "--text", "hello", "--music", "never", "--json", "--out-dir", str(tmp_path))
    assert code == 0
    assert json.loads(out)["audio"] is None


def _media(tmp_path):
    """One file per bad-input class of the media loaders."""
    files = {}
    (tmp_path / "empty.wav").touch()
    files["empty"] = ("--audio", tmp_path / "empty.wav", r"empty \(0 bytes\)")
    (tmp_path / "text.wav").write_text("hello, not audio")
    files["undecodable"] = ("--audio", tmp_path / "text.wav", "not a readable audio file")
    sf.write(tmp_path / "long.wav", np.zeros(8000 * 901, dtype=np.int16), 8000, subtype="PCM_16")
    files["over limit"] = ("--audio", tmp_path / "long.wav", "over the 900 s limit")
    Image.new("RGB", (32, 32)).save(tmp_path / "pic.png")
    files["wrong type"] = ("--audio", tmp_path / "pic.png", "is an image file but was attached as audio")
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), "red").save(good)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:200])
    files["truncated image"] = ("--image", tmp_path / "cut.jpg", "cut.jpg")
    files["missing"] = ("--video", tmp_path / "gone.mp4", "file not found")
    (tmp_path / "text.mp4").write_text("not a video")
    files["not a video"] = ("--video", tmp_path / "text.mp4", "text.mp4")
    return files


@pytest.mark.parametrize("case", ["empty", "undecodable", "over limit", "wrong type", "truncated image", "missing",
                                  "not a video"])
def test_bad_media_exits_2_with_one_line(tmp_path, capsys, case):
    flag, path, message = _media(tmp_path)[case]
    code, out, err = _run(capsys, "--text", "hi", flag, str(path))
    assert code == 2
    assert out == ""
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1
    assert path.name in line[0]
    assert re.search(message, line[0])
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--duration", "0"], "duration=0.0 is out of range"),
    (["--temperature", "9"], "temperature must be in \\[0, 5\\]"),
    (["--text", " "], "the message is empty"),
])
def test_bad_settings_exit_2(capsys, args, message):
    code, _, err = _run(capsys, "--text", "hi", *args)
    assert code == 2
    assert re.search(message, err)


def test_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mumu", "chat", "--text", "hi", "--audio", str(tmp_path / "x.wav")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "'x.wav': file not found" in proc.stderr and "Traceback" not in proc.stderr
