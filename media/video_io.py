"""Sample frames from a video (uniformly over the clip, or consecutive ones; decord, else PyAV) and read its
soundtrack."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, get_args

import av
import av.container
import av.video.stream
import numpy as np

from media.audio_io import load_audio
from media.errors import MediaError
from media.files import accepted, check_file, find_video_stream, open_container
from media.limits import MediaLimits

try:
    import decord
except ImportError:  # decord has no wheels for some platforms; PyAV decodes everything it does
    decord = None


FrameSampling = Literal["uniform", "consecutive"]
SAMPLINGS: tuple[str, ...] = get_args(FrameSampling)


def frame_indices(total_frames: int, num_frames: int, sampling: str = "uniform") -> list[int]:
    """Which frames to keep, deterministically.

    "uniform": index i is floor((i + 0.5) * total_frames / num_frames), spread over the whole clip.
    "consecutive": num_frames consecutive frames from the middle of the clip (what the published M2UGen code
    fed ViViT, there at a random place); a clip shorter than that repeats its last frame.
    """
    if sampling == "consecutive":
        start = max(0, (total_frames - num_frames) // 2)
        return [min(start + i, total_frames - 1) for i in range(num_frames)]
    if sampling != "uniform":
        raise ValueError(f"frame sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    # Integer arithmetic, so that no float rounding can move an index.
    return [(2 * i + 1) * total_frames // (2 * num_frames) for i in range(num_frames)]


def video_duration(path: str | Path) -> float:
    """Duration in seconds, from the container header where it has one."""
    p = check_file(path)
    with open_container(p, "video") as container:
        return _seconds(container, _video_stream(p, container))


def load_video_frames(
    path: str | Path, num_frames: int, limits: MediaLimits | None = None, sampling: str = "uniform"
) -> np.ndarray:
    """`num_frames` RGB frames picked by `sampling` (see frame_indices), shape (num_frames, H, W, 3) uint8."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"frame sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    limits = limits or MediaLimits()
    p = check_file(path, limits)
    # Probe with PyAV first: it tells a real video from audio, stills and text, and gives the duration
    # before anything is decoded.
    with open_container(p, "video") as container:
        seconds = _seconds(container, _video_stream(p, container))
    if seconds > limits.max_video_seconds:
        raise MediaError(p, f"video is {seconds:.1f} s long, over the {limits.max_video_seconds:g} s limit")
    frames = _read_decord(p, num_frames, sampling) if decord is not None else None
    return frames if frames is not None else _read_av(p, num_frames, sampling)


def load_video_audio(
    path: str | Path, sample_rate: int = 24000, limits: MediaLimits | None = None
) -> np.ndarray | None:
    """The clip's soundtrack as mono float32 at `sample_rate`, or None when it has no audio stream."""
    limits = limits or MediaLimits()
    p = check_file(path, limits)
    with open_container(p, "video") as container:
        _video_stream(p, container)
        if not container.streams.audio:
            return None
    # A soundtrack is as long as its picture: the video length limit governs it, not the audio one.
    return load_audio(p, sample_rate, dataclasses.replace(limits, max_audio_seconds=limits.max_video_seconds))


def _video_stream(p: Path, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    stream = find_video_stream(container)
    if stream is not None:
        return stream
    if container.streams.audio:
        problem = "has no video stream (an audio file?)"
    elif container.streams.video:
        problem = "is not a video file (a still image or text?)"
    else:
        problem = "has no video stream"
    raise MediaError(p, problem, accepted=accepted("video"))


def _count_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    # Matroska/WebM headers carry no frame count; demuxing (no decoding) counts one packet per frame.
    if stream.frames:
        return stream.frames
    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError:
        return 0


def _seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate
    return _count_frames(container, stream) / float(rate) if rate else 0.0


def _read_decord(p: Path, num_frames: int, sampling: str) -> np.ndarray | None:
    """Frames via decord, or None when decord cannot handle the file (PyAV then decodes or says why)."""
    try:
        reader = decord.VideoReader(str(p), ctx=decord.cpu(0))
        if len(reader) == 0:
            return None
        return reader.get_batch(frame_indices(len(reader), num_frames, sampling)).asnumpy()
    except (RuntimeError, decord.DECORDError):
        return None


def _read_av(p: Path, num_frames: int, sampling: str) -> np.ndarray:
    with open_container(p, "video") as container:
        total = _count_frames(container, _video_stream(p, container))
    if total == 0:
        raise MediaError(p, "video contains no frames")
    indices = frame_indices(total, num_frames, sampling)
    wanted, last = set(indices), indices[-1]
    kept: dict[int, np.ndarray] = {}
    size: dict[str, int] = {}
    with open_container(p, "video") as container:
        stream = _video_stream(p, container)
        stream.thread_type = "AUTO"
        try:
            # Sequential decode keeping only the wanted frames: seeking is inexact in many files.
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    # The first kept frame fixes the size, so a mid-stream resolution change still stacks.
                    size = size or {"width": frame.width, "height": frame.height}
                    kept[index] = frame.to_ndarray(format="rgb24", **size)
                if index >= last:
                    break
        except av.FFmpegError as e:
            raise MediaError(p, f"is truncated or corrupt ({e.strerror or e})") from e
    if last not in kept:
        raise MediaError(p, f"is truncated or corrupt: not all of its {total} frames decode")
    return np.stack([kept[i] for i in indices])
