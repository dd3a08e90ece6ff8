"""load_video_frames, video_duration and load_video_audio: synthetic clips whose frames encode their index."""

from __future__ import annotations

import io
import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from media import video_io
from media.limits import MediaLimits
from media.video_io import frame_indices, load_video_audio, load_video_frames, video_duration
from tests.media.helpers import rejects

FRAMES, FPS, WIDTH, HEIGHT = 30, 10, 64, 48
STEP = 8  # frame i is filled with red = 8 * i and green = 255 - 8 * i


def write_video(
    path: Path, frames: int = FRAMES, audio: bool = False, container_options: dict | None = None
) -> Path:
    """Lossless H.264 at FPS whose frame i is a flat colour encoding i; optionally a 440 Hz soundtrack."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        # Every stream must exist before the first packet is muxed.
        sound = container.add_stream("aac", rate=16_000, layout="mono") if audio else None
        for index in range(frames):
            pixels = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            pixels[..., 0], pixels[..., 1], pixels[..., 2] = STEP * index, 255 - STEP * index, 0
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(16_000 * frames / FPS)
            wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16_000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    wave[None, start : start + 1024].copy(), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16_000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def decoded_indices(frames: np.ndarray) -> list[int]:
    """Recover each frame's index from its colour."""
    return [round(float(value)) for value in frames[..., 0].mean(axis=(1, 2)) / STEP]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4")


@pytest.fixture
def without_decord(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_io, "decord", None)


def test_indices_follow_the_uniform_formula():
    assert frame_indices(30, 8) == [1, 5, 9, 13, 16, 20, 24, 28]
    assert frame_indices(5, 12) == [math.floor((i + 0.5) * 5 / 12) for i in range(12)]
    assert frame_indices(1, 3) == [0, 0, 0]


def upstream_indices(seg_len: int, clip_len: int, end_idx: int) -> list[int]:
    """The published sample_frame_indices(clip_len, frame_sample_rate=1, seg_len), its random end fixed."""
    start_idx = end_idx - clip_len
    indices = np.linspace(start_idx, end_idx, num=clip_len)
    return np.clip(indices, start_idx, end_idx - 1).astype(np.int64).tolist()


@pytest.mark.parametrize(("total", "num"), [(300, 32), (33, 32), (45, 8), (61, 32)])
def test_consecutive_indices_are_an_upstream_window_from_the_middle(total, num):
    ours = frame_indices(total, num, "consecutive")
    # Upstream draws end_idx from [clip_len, seg_len); ours is the window centred in the clip.
    end = (total - num) // 2 + num
    assert num <= end < total
    assert ours == upstream_indices(total, num, end)
    assert ours == list(range(ours[0], ours[0] + num))
    assert abs(ours[0] - (total - 1 - ours[-1])) <= 1


def test_consecutive_indices_of_a_short_clip_repeat_its_last_frame():
    # Upstream fails on clips shorter than num_frames (randint over an empty range); ours holds the last frame.
    assert frame_indices(5, 8, "consecutive") == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ValueError, match="frame sampling must be one of uniform, consecutive, got 'random'"):
        frame_indices(5, 8, "random")


@pytest.mark.parametrize("use_decord", [True, False])
def test_consecutive_frames_are_decoded_from_the_middle(clip, monkeypatch, use_decord):
    if not use_decord:
        monkeypatch.setattr(video_io, "decord", None)
    assert decoded_indices(load_video_frames(clip, 8, sampling="consecutive")) == frame_indices(
        FRAMES, 8, "consecutive")


def test_frames_have_the_right_shape_and_type(clip):
    frames = load_video_frames(clip, 8)
    assert frames.shape == (8, HEIGHT, WIDTH, 3)
    assert frames.dtype == np.uint8


@pytest.mark.parametrize("num_frames", [1, 8, 30, 45])
def test_sampled_frames_are_exactly_the_uniform_ones(clip, num_frames):
    expected = [math.floor((i + 0.5) * FRAMES / num_frames) for i in range(num_frames)]
    assert decoded_indices(load_video_frames(clip, num_frames)) == expected


def test_sampling_is_deterministic(clip):
    np.testing.assert_array_equal(load_video_frames(clip, 8), load_video_frames(clip, 8))


def test_pyav_fallback_gives_the_same_frames_as_decord(clip, monkeypatch):
    pytest.importorskip("decord")
    with_decord = load_video_frames(clip, 8)
    monkeypatch.setattr(video_io, "decord", None)
    np.testing.assert_array_equal(load_video_frames(clip, 8), with_decord)


def test_pyav_takes_over_when_decord_cannot_open_the_file(clip, monkeypatch):
    decord = pytest.importorskip("decord")

    def refuse(*args, **kwargs):
        raise decord.DECORDError("cannot open")

    monkeypatch.setattr(decord, "VideoReader", refuse)
    assert decoded_indices(load_video_frames(clip, 8)) == [1, 5, 9, 13, 16, 20, 24, 28]


@pytest.mark.parametrize("use_decord", [True, False])
def test_matroska_without_a_frame_count_in_its_header(tmp_path, monkeypatch, use_decord):
    if not use_decord:
        monkeypatch.setattr(video_io, "decord", None)
    path = write_video(tmp_path / "clip.mkv")
    assert decoded_indices(load_video_frames(path, 4)) == frame_indices(FRAMES, 4)


def test_duration(clip):
    assert video_duration(clip) == pytest.approx(FRAMES / FPS, abs=0.01)


def test_soundtrack_is_returned_when_present(tmp_path, clip):
    assert load_video_audio(clip) is None
    scored = write_video(tmp_path / "scored.mp4", audio=True)
    audio = load_video_audio(scored, sample_rate=8_000)
    assert audio is not None
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert len(audio) == pytest.approx(8_000 * FRAMES / FPS, abs=600)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / 8_000)[np.argmax(spectrum)] == pytest.approx(440, abs=1)
    assert decoded_indices(load_video_frames(scored, 3)) == frame_indices(FRAMES, 3)


def test_soundtrack_is_bounded_by_the_video_limit_not_the_audio_one(tmp_path):
    scored = write_video(tmp_path / "scored.mp4", audio=True)
    limits = MediaLimits(max_audio_seconds=1.0, max_video_seconds=10.0)
    assert load_video_audio(scored, limits=limits) is not None


@pytest.mark.usefixtures("without_decord")
def test_over_limit_duration_is_rejected_in_the_fallback_too(clip):
    with rejects(clip, r"3\.0 s long, over the 2 s limit"):
        load_video_frames(clip, 4, limits=MediaLimits(max_video_seconds=2))


def test_over_limit_duration_is_rejected(clip):
    with rejects(clip, r"3\.0 s long, over the 2\.5 s limit"):
        load_video_frames(clip, 4, limits=MediaLimits(max_video_seconds=2.5))


def test_audio_only_files_have_no_video_stream(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, np.zeros(8_000, np.float32), 8_000)
    with rejects(path, r"no video stream.*accepted: mp4"):
        load_video_frames(path, 4)


def test_album_art_in_a_music_file_is_not_a_video(tmp_path):
    cover = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(cover, format="JPEG")
    path = tmp_path / "song.mp3"
    with av.open(str(path), "w") as container:
        sound = container.add_stream("libmp3lame", rate=44_100, layout="mono")
        art = container.add_stream("mjpeg")
        art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(cover.getvalue())
        packet.stream, packet.pts = art, 0
        container.mux(packet)
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
        silence.sample_rate, silence.pts = 44_100, 0
        container.mux(sound.encode(silence))
        container.mux(sound.encode(None))
    with rejects(path, "no video stream"):
        load_video_frames(path, 4)


def test_text_and_still_images_are_not_videos(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a movie " * 20)
    with rejects(text, r"not a readable video file.*accepted: mp4"):
        load_video_frames(text, 4)
    still = tmp_path / "still.jpg"
    Image.new("RGB", (64, 48), "red").save(still)
    with rejects(still, "not a video file"):
        load_video_frames(still, 4)


def test_a_video_with_zero_frames_is_rejected(tmp_path):
    path = tmp_path / "nothing.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.start_encoding()
    with rejects(path, "no frames"):
        load_video_frames(path, 4)


@pytest.mark.parametrize("use_decord", [True, False])
def test_truncated_video_is_rejected(tmp_path, monkeypatch, use_decord):
    if not use_decord:
        monkeypatch.setattr(video_io, "decord", None)
    # Index at the front (faststart), so the cut file still opens and the loss shows while decoding.
    whole = write_video(tmp_path / "whole.mp4", container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with rejects(cut, "truncated or corrupt"):
        load_video_frames(cut, 8)


def test_missing_empty_and_oversized_files_are_rejected(tmp_path, clip):
    with rejects(tmp_path / "gone.mp4", "file not found"):
        load_video_frames(tmp_path / "gone.mp4", 4)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with rejects(empty, "empty"):
        load_video_frames(empty, 4)
    with rejects(clip, "MB, over the .* MB limit"):
        load_video_frames(clip, 4, limits=MediaLimits(max_bytes=100))


def test_num_frames_must_be_positive(clip):
    with pytest.raises(ValueError, match="num_frames"):
        load_video_frames(clip, 0)
