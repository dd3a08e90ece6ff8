"""`python -m mumu edit`: exact edits from the command line, in the documented order."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from media.audio_out import read_metadata
from mumu.cli import main

SR = 22050


def _f0(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spectrum) * SR / (8 * len(x)))


@pytest.fixture
def tone(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(3 * SR) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), SR)
    return path


def test_edit_applies_trim_then_tempo_then_pitch(tmp_path, tone, capsys):
    out = tmp_path / "edited.flac"
    argv = ["edit", "--input", str(tone), "--out", str(out), "--trim", "0.5:", "--tempo", "1.25", "--semitones", "2"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    wav, rate = sf.read(out)
    assert rate == SR
    assert result["seconds"] == pytest.approx(2.5 / 1.25, rel=0.02)
    assert len(wav) / SR == pytest.approx(2.0, rel=0.02)
    assert _f0(wav) == pytest.approx(440 * 2 ** (2 / 12), rel=0.01)
    meta = read_metadata(out)
    assert meta["source"] == "tone.wav"
    assert json.loads(meta["edit"])["tempo"] == 1.25


def test_edit_leaves_levels_alone_unless_asked(tmp_path, tone):
    plain, loud = tmp_path / "plain.wav", tmp_path / "loud.wav"
    assert main(["edit", "--input", str(tone), "--out", str(plain), "--loop", "2"]) == 0
    assert main(["edit", "--input", str(tone), "--out", str(loud), "--loudness", "-14"]) == 0
    original = sf.read(tone)[0]
    assert np.abs(sf.read(plain)[0]).max() == pytest.approx(np.abs(original).max(), rel=1e-3)
    from media.levelling import loudness

    assert loudness(sf.read(loud)[0].astype(np.float32), SR) == pytest.approx(-14.0, abs=0.5)


@pytest.mark.parametrize(("extra", "message"), [
    (["--tempo", "9"], "tempo=9.0 is out of range"),
    (["--loop", "0"], "loop=0 is out of range"),
    (["--trim", "5:1"], "trim start=5.0, end=1.0 is out of range for a 3.000 s clip"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, tone, capsys, extra, message):
    assert main(["edit", "--input", str(tone), "--out", str(tmp_path / "o.wav"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o.wav").exists()


def test_bad_files_exit_2(tmp_path, tone, capsys):
    assert main(["edit", "--input", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o.wav")]) == 2
    assert "'missing.wav': file not found" in capsys.readouterr().err
    assert main(["edit", "--input", str(tone), "--out", str(tmp_path / "o.aiff")]) == 2
    assert "cannot write 'o.aiff': unsupported extension, expected one of .wav, .flac, .mp3" in capsys.readouterr().err


def test_stereo_stays_stereo(tmp_path, capsys):
    path = tmp_path / "stereo.wav"
    t = np.arange(2 * SR) / SR
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)
    sf.write(path, np.stack([left, right], axis=1), SR)
    out = tmp_path / "edited.wav"
    assert main(["edit", "--input", str(path), "--out", str(out), "--semitones", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["channels"] == 2
    wav, _ = sf.read(out)
    assert wav.shape == (2 * SR, 2)
    assert _f0(wav[:, 0]) == pytest.approx(440 * 2 ** (2 / 12), rel=0.01)
    assert _f0(wav[:, 1]) == pytest.approx(660 * 2 ** (2 / 12), rel=0.01)
