"""Shared file checks and media-kind detection (by extension, then by content)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import av
import av.container
import av.video.stream
import soundfile as sf
from PIL import Image, UnidentifiedImageError

from media.errors import MediaError
from media.limits import MediaLimits

MediaKind = Literal["audio", "image", "video"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
_EXTENSIONS: dict[MediaKind, tuple[str, ...]] = {
    "audio": AUDIO_EXTENSIONS,
    "image": IMAGE_EXTENSIONS,
    "video": VIDEO_EXTENSIONS,
}


def accepted(kind: MediaKind | None = None) -> str:
    """The accepted extensions of one kind (or of all kinds), for error messages."""
    kinds = [kind] if kind else list(_EXTENSIONS)
    return ", ".join(ext.lstrip(".") for k in kinds for ext in _EXTENSIONS[k])


def check_file(path: str | Path, limits: MediaLimits | None = None) -> Path:
    """Return `path` as a Path once it names a non-empty regular file within `limits.max_bytes`."""
    # Absolute and normalised, so that errors about "." or "dir/.." still name something.
    p = Path(os.path.abspath(path))
    if p.is_dir():
        raise MediaError(p, "is a directory, not a file")
    if not p.is_file():
        raise MediaError(p, "file not found")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(p, "file is empty (0 bytes)")
    if limits is not None and size > limits.max_bytes:
        raise MediaError(
            p, f"file is {size / 2**20:.1f} MB, over the {limits.max_bytes / 2**20:.1f} MB limit"
        )
    return p


def find_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first moving-picture stream of an open container, or None."""
    # FFmpeg presents still images (jpeg_pipe, png_pipe...), text files (tty) and album
    # art in music files as "video" streams; none of them is a video.
    name = container.format.name
    if name in ("tty", "image2") or name.endswith("_pipe"):
        return None
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def open_container(path: Path, kind: MediaKind) -> av.container.InputContainer:
    """Open `path` with PyAV, turning FFmpeg's refusal into a MediaError."""
    try:
        # Undecodable tag text must not make a playable file unreadable.
        return av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as e:
        raise MediaError(
            path, f"is not a readable {kind} file (unknown format or corrupt data)", accepted=accepted(kind)
        ) from e


def detect_kind(path: str | Path) -> MediaKind:
    """Whether `path` holds audio, an image or a video: by extension, else by sniffing the content."""
    p = check_file(path)
    suffix = p.suffix.lower()
    for kind, extensions in _EXTENSIONS.items():
        if suffix in extensions:
            return kind
    # Unknown extension: ask each decoder in turn whether it recognises the content.
    try:
        sf.info(str(p))
        return "audio"
    except sf.LibsndfileError:
        pass
    try:
        with Image.open(p):
            return "image"
    except Image.DecompressionBombError:
        return "image"
    except (UnidentifiedImageError, OSError):
        pass
    try:
        with av.open(str(p), metadata_errors="replace") as container:
            if find_video_stream(container) is not None:
                return "video"
            if container.streams.audio:
                return "audio"
    except av.FFmpegError:
        pass
    raise MediaError(p, "not a recognised audio, image or video file", accepted=accepted())
