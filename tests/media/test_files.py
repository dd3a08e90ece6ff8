"""detect_kind and check_file: extensions, content sniffing, and what is refused."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from media.files import check_file, detect_kind
from media.limits import MediaLimits
from tests.media.helpers import rejects


def write_wav(path: Path) -> Path:
    sf.write(path, np.zeros(800, np.float32), 8_000, format="WAV")
    return path


def write_png(path: Path) -> Path:
    Image.new("RGB", (16, 16), "red").save(path, format="PNG")
    return path


def write_mp4(path: Path, video: bool = True) -> Path:
    """A few frames of H.264 video, or (video=False) a little AAC audio, in an MP4 container."""
    with av.open(str(path), "w", format="mp4") as container:
        if video:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        else:
            stream = container.add_stream("aac", rate=16_000, layout="mono")
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16_000
        for index in range(3):
            frame.pts = index * (1 if video else 1024)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.wav", "audio"),
        ("a.FLAC", "audio"),
        ("a.m4a", "audio"),
        ("a.jpeg", "image"),
        ("a.WebP", "image"),
        ("a.mp4", "video"),
        ("a.mkv", "video"),
    ],
)
def test_kind_follows_the_extension(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(b"content is not looked at when the extension is known")
    assert detect_kind(path) == kind


@pytest.mark.parametrize(
    ("write", "kind"),
    [
        (write_wav, "audio"),
        (write_png, "image"),
        (write_mp4, "video"),
        (lambda path: write_mp4(path, video=False), "audio"),
    ],
    ids=["wav", "png", "mp4-video", "mp4-audio-only"],
)
def test_kind_is_sniffed_from_content_without_a_known_extension(tmp_path, write, kind):
    assert detect_kind(write(tmp_path / "upload.bin")) == kind
    assert detect_kind(write(tmp_path / "upload")) == kind


def test_unknown_content_is_rejected_with_the_accepted_extensions(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 100)
    with rejects(path, r"not a recognised audio, image or video file \(accepted: wav, .*png, .*mp4"):
        detect_kind(path)


def test_missing_directory_and_empty_files_are_rejected(tmp_path):
    with rejects(tmp_path / "gone.wav", "file not found"):
        detect_kind(tmp_path / "gone.wav")
    with rejects(tmp_path, "is a directory"):
        detect_kind(tmp_path)
    empty = tmp_path / "empty.png"
    empty.touch()
    with rejects(empty, r"empty \(0 bytes\)"):
        detect_kind(empty)


def test_check_file_enforces_the_byte_limit_only_when_given(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 3 * 2**20)
    assert check_file(path) == path
    with rejects(path, r"3\.0 MB, over the 2\.0 MB limit"):
        check_file(path, MediaLimits(max_bytes=2 * 2**20))
    assert check_file(str(path), MediaLimits(max_bytes=3 * 2**20)) == path
