"""write_audio / read_metadata: format round trips, levels, metadata, errors and atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from media import audio_out
from media.audio_out import read_metadata, write_audio
from media.levelling import loudness

SR = 44_100
META = {"prompt": "slow lo-fi piano, no drums\nsecond line with = and \\ in it", "seed": 1234, "model": "musicgen-s"}
EXPECTED_META = {key: str(value) for key, value in META.items()}


def music(seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """A harmonic tone plus a little noise, (samples,) or (channels, samples)."""
    t = np.arange(round(seconds * SR)) / SR
    rng = np.random.default_rng(1)
    rows = [
        sum(0.2 / k * np.sin(2 * np.pi * 220 * (c + 1) * k * t) for k in range(1, 5))
        + 0.01 * rng.standard_normal(len(t))
        for c in range(channels)
    ]
    return np.asarray(rows[0] if channels == 1 else rows, dtype=np.float32)


@pytest.mark.parametrize(("suffix", "bits"), [(".wav", 16), (".wav", 24), (".flac", 16), (".flac", 24)])
def test_pcm_round_trip_is_exact_to_quantisation(tmp_path: Path, suffix: str, bits: int) -> None:
    wav = music(channels=2)
    path = write_audio(tmp_path / f"out{suffix}", wav, SR, bit_depth=bits, loudness_lufs=None, metadata=META).path
    back, rate = sf.read(path, dtype="float64", always_2d=True)
    assert rate == SR and back.shape == (wav.shape[1], 2)
    assert sf.info(path).subtype == f"PCM_{bits}"
    assert np.abs(back.T - wav).max() <= 0.5 / 2 ** (bits - 1) + 1e-7
    assert read_metadata(path) == EXPECTED_META


def test_mp3_round_trip(tmp_path: Path) -> None:
    wav = music()
    path = write_audio(tmp_path / "out.mp3", wav, SR, loudness_lufs=None, metadata=META).path
    back, rate = sf.read(path, dtype="float32")
    assert rate == SR and abs(len(back) - len(wav)) <= 1152  # one MPEG-1 frame
    n = min(len(back), len(wav))
    error = np.sqrt(np.mean((back[:n] - wav[:n]) ** 2) / np.mean(wav[:n] ** 2))
    assert error < 0.1  # lossy, but the same waveform (better than -20 dB)
    assert read_metadata(path) == EXPECTED_META


def test_native_fields_hold_prompt_and_keys(tmp_path: Path) -> None:
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3

    with sf.SoundFile(write_audio(tmp_path / "a.wav", music(), SR, metadata=META).path) as f:
        assert f.title == META["prompt"]
    flac = FLAC(write_audio(tmp_path / "a.flac", music(), SR, metadata=META).path)
    assert flac["title"] == [META["prompt"]] and flac["seed"] == ["1234"]
    id3 = ID3(write_audio(tmp_path / "a.mp3", music(), SR, metadata=META).path)
    assert str(id3["TIT2"]) == META["prompt"] and str(id3["TXXX:model"]) == "musicgen-s"


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_written_loudness_and_peak(tmp_path: Path, suffix: str, target: float) -> None:
    path = write_audio(tmp_path / f"loud{suffix}", music(seconds=2.0, channels=2) * 3.0, SR, loudness_lufs=target).path
    back, _ = sf.read(path, dtype="float32", always_2d=True)
    assert abs(loudness(back.T, SR) - target) < 0.5
    if suffix != ".mp3":  # MP3 decoding can overshoot the sample peak slightly
        assert np.abs(back).max() <= 10 ** (-1 / 20) + 1e-4


def test_levels_left_alone_but_overs_limited_not_clipped(tmp_path: Path) -> None:
    wav = np.array([0.0, 0.5, 1.5, -2.0, 0.25], dtype=np.float32)
    written = write_audio(tmp_path / "raw.wav", wav, 8000, loudness_lufs=None)
    back, _ = sf.read(written.path, dtype="float32")
    assert np.abs(back).max() < 10 ** (-1 / 20)
    # five samples within one look-ahead: one gain for all of them, so the shape is kept (no flat tops)
    assert np.allclose(back, wav * (back[3] / wav[3]), atol=1e-4)
    assert written.levelling is not None and written.levelling.limiting_db > 6.0
    calm = music()
    assert write_audio(tmp_path / "calm.wav", calm, SR, loudness_lufs=None).levelling is None


def test_silence_and_no_metadata(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "quiet.flac", np.zeros(SR, dtype=np.float32), SR).path
    assert not sf.read(path)[0].any()
    assert read_metadata(path) == {}
    assert read_metadata(write_audio(tmp_path / "plain.mp3", music(), SR).path) == {}


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("out.ogg", {}, r"\.wav, \.flac, \.mp3"),
        ("out", {}, "unsupported extension"),
        ("out.wav", {"bit_depth": 32}, "bit_depth=32"),
        ("out.mp3", {"sr": 96_000}, "MP3 cannot hold 96000 Hz"),
        ("out.wav", {"metadata": {"bad key": 1}}, "metadata key"),
        ("out.wav", {"metadata": {"prompt": "x" * 3000}}, "WAV INFO limit"),
        ("out.wav", {"wav": np.array([0.0, np.nan], dtype=np.float32)}, "NaN"),
    ],
)
def test_errors_leave_no_file(tmp_path: Path, name: str, kwargs: dict, message: str) -> None:
    args = {"wav": music(0.1), "sr": SR, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_audio(tmp_path / name, args.pop("wav"), args.pop("sr"), **args)
    assert list(tmp_path.iterdir()) == []


def test_long_prompt_fits_flac(tmp_path: Path) -> None:
    meta = {"prompt": "x" * 3000}
    assert read_metadata(write_audio(tmp_path / "long.flac", music(0.1), SR, metadata=meta).path) == meta


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_failure_mid_write_keeps_old_file_and_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    target = tmp_path / f"song{suffix}"
    target.write_bytes(b"old")

    def broken(path: Path, tags: dict[str, str]) -> None:
        assert path.exists() and path != target  # audio went to a temporary file beside the target
        raise OSError("disk full")

    monkeypatch.setattr(audio_out, "_tag_flac" if suffix == ".flac" else "_tag_mp3", broken)
    with pytest.raises(OSError, match="disk full"):
        write_audio(target, music(0.2), SR, metadata=META)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_read_metadata_of_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "other.wav"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        f.title, f.comment = "Field recording", "recorded at home"
        f.write(music(0.1))
    assert read_metadata(path) == {"title": "Field recording", "comment": "recorded at home"}


def test_returns_the_levelled_waveform_it_wrote(tmp_path: Path) -> None:
    written = write_audio(tmp_path / "levelled.wav", music(seconds=1.0) * 3.0, SR, bit_depth=24, loudness_lufs=-20.0)
    back, rate = sf.read(written.path, dtype="float32")
    assert rate == written.sample_rate == SR
    assert np.abs(back - written.waveform).max() < 2 ** -22  # only the 24-bit quantisation differs
    assert abs(loudness(written.waveform, SR) + 20.0) < 0.5
