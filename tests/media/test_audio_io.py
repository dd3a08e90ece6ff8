"""load_audio / audio_duration: formats, rates, channel mixing, limits and every kind of unusable file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from media.audio_io import audio_duration, load_audio, load_audio_native
from media.limits import MediaLimits
from tests.media.helpers import rejects

OUT_RATE = 24_000


def tone(rate: int, seconds: float = 1.0, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A (samples, channels) sine at half scale."""
    wave = 0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def write_m4a(path: Path, signal: np.ndarray, rate: int) -> Path:
    """AAC in an MP4 container, which libsndfile cannot read (exercises the PyAV path)."""
    layout = "mono" if signal.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        planar = np.ascontiguousarray(signal.T)
        for start in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + 1024]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_silent_video(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "rate", "channels"),
    [
        ("wav", "WAV", "PCM_16", 44_100, 2),
        ("wav", "WAV", "FLOAT", 48_000, 1),
        ("flac", "FLAC", "PCM_24", 8_000, 2),
        ("flac", "FLAC", "PCM_16", 44_100, 1),
        ("ogg", "OGG", "VORBIS", 48_000, 2),
        ("mp3", "MP3", "MPEG_LAYER_III", 44_100, 2),
        ("mp3", "MP3", "MPEG_LAYER_III", 8_000, 1),
    ],
)
def test_each_format_loads_as_mono_float32_at_the_target_rate(tmp_path, ext, fmt, subtype, rate, channels):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, tone(rate, channels=channels), rate, format=fmt, subtype=subtype)
    audio = load_audio(path, sample_rate=OUT_RATE)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(len(audio) - OUT_RATE) <= 2
    assert peak_hz(audio, OUT_RATE) == pytest.approx(440, abs=1)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.05)
    assert audio_duration(path) == pytest.approx(1.0, abs=1e-3)


def test_m4a_decodes_through_pyav(tmp_path):
    path = write_m4a(tmp_path / "tone.m4a", tone(48_000, seconds=2.0, channels=2), 48_000)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)
    audio = load_audio(path, sample_rate=16_000)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    # AAC pads its last frame: allow one codec frame (1024 samples at 48 kHz) beyond 2 s.
    assert 32_000 <= len(audio) <= 32_000 + 1024 // 3 + 2
    assert peak_hz(audio, 16_000) == pytest.approx(440, abs=1)
    assert audio_duration(path) == pytest.approx(2.0, abs=0.03)


def test_no_resampling_when_the_rate_already_matches(tmp_path):
    path = tmp_path / "native.wav"
    sf.write(path, tone(OUT_RATE), OUT_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, sample_rate=OUT_RATE), tone(OUT_RATE)[:, 0])


def test_upsampling_keeps_length_and_pitch(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, tone(8_000, seconds=0.5), 8_000)
    audio = load_audio(path, sample_rate=48_000)
    assert abs(len(audio) - 24_000) <= 2
    assert peak_hz(audio, 48_000) == pytest.approx(440, abs=2)


def test_channels_are_averaged(tmp_path):
    left = tone(44_100)[:, 0]
    opposite = tmp_path / "opposite.wav"
    sf.write(opposite, np.stack([left, -left], axis=1), 44_100, subtype="FLOAT")
    assert np.abs(load_audio(opposite)).max() < 1e-6
    one_sided = tmp_path / "one_sided.wav"
    sf.write(one_sided, np.stack([left, np.zeros_like(left)], axis=1), 44_100, subtype="FLOAT")
    assert np.abs(load_audio(one_sided)).max() == pytest.approx(0.25, abs=0.01)


def test_missing_directory_and_empty_files_are_rejected(tmp_path):
    with rejects(tmp_path / "nowhere.wav", "file not found"):
        load_audio(tmp_path / "nowhere.wav")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with rejects(folder, "is a directory"):
        load_audio(folder)
    empty = tmp_path / "empty.wav"
    empty.touch()
    with rejects(empty, r"empty \(0 bytes\)"):
        load_audio(empty)


def test_files_over_the_byte_limit_are_rejected(tmp_path):
    path = tmp_path / "big.wav"
    sf.write(path, tone(44_100), 44_100)
    with rejects(path, r"0\.1 MB, over the 0\.0 MB limit"):
        load_audio(path, limits=MediaLimits(max_bytes=1_000))


def test_text_and_images_renamed_wav_are_not_audio(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples " * 50)
    with rejects(text, r"not a readable audio file.*accepted: wav, flac, mp3, ogg"):
        load_audio(text)
    picture = tmp_path / "photo.wav"
    Image.new("RGB", (32, 32), "red").save(picture, format="JPEG")
    with rejects(picture, r"not a readable audio file.*accepted: wav"):
        load_audio(picture)


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype"),
    [
        ("wav", "WAV", "PCM_16"),
        ("flac", "FLAC", "PCM_16"),
        ("mp3", "MP3", "MPEG_LAYER_III"),
        ("ogg", "OGG", "VORBIS"),
        ("aiff", "AIFF", "PCM_16"),
        ("au", "AU", "PCM_16"),
    ],
)
def test_truncated_files_are_rejected(tmp_path, ext, fmt, subtype):
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, tone(44_100, channels=2), 44_100, format=fmt, subtype=subtype)
    cut = tmp_path / f"cut.{ext}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with rejects(cut, "truncated"):
        load_audio(cut)


def test_a_video_without_sound_has_no_audio_stream(tmp_path):
    path = write_silent_video(tmp_path / "silent.mp4")
    with rejects(path, "no audio stream"):
        load_audio(path)


def test_duration_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.flac"
    sf.write(path, tone(44_100), 44_100)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file whose header already exceeds the limit")

    monkeypatch.setattr(sf, "read", no_decoding)
    with rejects(path, r"1\.0 s long, over the 0\.5 s limit"):
        load_audio(path, limits=MediaLimits(max_audio_seconds=0.5))


def test_duration_limit_applies_to_pyav_decoded_files(tmp_path):
    path = write_m4a(tmp_path / "long.m4a", tone(48_000, seconds=2.0), 48_000)
    with rejects(path, r"over the 1 s limit"):
        load_audio(path, limits=MediaLimits(max_audio_seconds=1.0))


def test_too_short_audio_is_rejected(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(44_100, seconds=0.1), 44_100)
    with rejects(path, r"0\.100 s long, under the 0\.5 s minimum"):
        load_audio(path, limits=MediaLimits(min_audio_seconds=0.5))


def test_non_finite_samples_are_rejected(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.full((4_410, 1), np.nan, np.float32), 44_100, subtype="FLOAT")
    with rejects(path, "NaN or infinite"):
        load_audio(path)


def test_native_loader_keeps_the_file_rate(tmp_path):
    path = tmp_path / "tone.flac"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    sf.write(path, np.stack([tone, tone], axis=1), 44100)
    samples, rate = load_audio_native(path)
    assert rate == 44100
    assert samples.shape == (44100,)
    np.testing.assert_allclose(samples, tone, atol=1e-4)


def test_native_loader_can_keep_channels(tmp_path):
    path = tmp_path / "stereo.flac"
    left = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    sf.write(path, np.stack([left, -left], axis=1), 8000)
    both, rate = load_audio_native(path, mono=False)
    assert rate == 8000
    assert both.shape == (2, 8000)
    np.testing.assert_allclose(both[1], -both[0], atol=1e-4)
    np.testing.assert_allclose(load_audio_native(path)[0], 0.0, atol=1e-4)
