"""Load any decodable audio file as mono float32 at a fixed sample rate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import av
import av.audio.stream
import av.container
import librosa
import numpy as np
import soundfile as sf

from media.errors import MediaError
from media.files import accepted, check_file, find_video_stream, open_container
from media.limits import MediaLimits

# libsndfile error codes meaning "not a format I handle", as opposed to a broken file of a format it knows.
_SF_NOT_MINE = (1, 4)  # SF_ERR_UNRECOGNISED_FORMAT, SF_ERR_UNSUPPORTED_ENCODING
_SF_MALFORMED = 3
# libsndfile clamps a cut WAV/AIFF/AU to the bytes present and only says so in its log,
# e.g. "data : 176400 (should be 956)".
_SHORT_DATA_CHUNK = re.compile(r"^\s*(?:data|SSND|Data Size)\s*: (\d+) \(should be (\d+)\)", re.MULTILINE)
# Streaming writers put 0 or 0xFFFFFFFF in size fields they cannot know; that is not truncation.
_UNKNOWN_CHUNK_SIZE = 0xFFFFFFFF
# Headers of compressed formats only estimate the length, so only a clear shortfall means truncation.
_SHORTFALL_TOLERANCE = 0.05


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, read from the file header where it has one."""
    p = check_file(path)
    info = _soundfile_info(p)
    if info is not None:
        return float(info.duration)
    with open_container(p, "audio") as container:
        stream = _audio_stream(p, container)
        declared = _declared_seconds(container, stream)
        if declared is not None:
            return declared
        return sum(frame.samples for frame in _decode(p, container, stream)) / stream.rate


def load_audio_native(
    path: str | Path, limits: MediaLimits | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode `path` at the file's own sample rate: mono (samples,) or, with mono=False, (channels, samples)."""
    limits = limits or MediaLimits()
    p = check_file(path, limits)
    info = _soundfile_info(p)
    if info is not None:
        samples, rate = _read_soundfile(p, info, limits)
    else:
        samples, rate = _read_av(p, limits)
    seconds = samples.shape[-1] / rate
    if seconds < limits.min_audio_seconds:
        raise MediaError(p, f"audio is {seconds:.3f} s long, under the {limits.min_audio_seconds} s minimum")
    if not np.isfinite(samples).all():
        raise MediaError(p, "audio contains NaN or infinite samples")
    if mono:
        samples = samples.mean(axis=0)
    return samples.astype(np.float32, copy=False), int(rate)


def load_audio(path: str | Path, sample_rate: int = 24000, limits: MediaLimits | None = None) -> np.ndarray:
    """Decode `path` to a mono float32 1-D array at `sample_rate`, enforcing `limits`."""
    samples, rate = load_audio_native(path, limits)
    if rate != sample_rate:
        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate)
    return samples.astype(np.float32, copy=False)


def _soundfile_info(p: Path) -> sf._SoundFileInfo | None:
    """The libsndfile header of `p`, or None when libsndfile does not handle its format."""
    try:
        return sf.info(str(p))
    except sf.LibsndfileError as e:
        if e.code in _SF_NOT_MINE:
            return None
        problem = "is truncated or corrupt" if e.code == _SF_MALFORMED else "cannot be read"
        raise MediaError(p, f"{problem} ({e.error_string.rstrip('.')})") from e


def _check_max_seconds(p: Path, seconds: float, limits: MediaLimits) -> None:
    if seconds > limits.max_audio_seconds:
        raise MediaError(p, f"audio is {seconds:.1f} s long, over the {limits.max_audio_seconds:g} s limit")


def _check_not_short(p: Path, decoded: float, declared: float | None) -> None:
    if declared and decoded < declared * (1 - _SHORTFALL_TOLERANCE):
        raise MediaError(
            p, f"is truncated or corrupt: decoded {decoded:.2f} s of the {declared:.2f} s its header declares"
        )


def _read_soundfile(p: Path, info: sf._SoundFileInfo, limits: MediaLimits) -> tuple[np.ndarray, int]:
    _check_max_seconds(p, info.duration, limits)
    for declared, present in _SHORT_DATA_CHUNK.findall(info.extra_info):
        if int(present) < int(declared) < _UNKNOWN_CHUNK_SIZE:
            raise MediaError(p, f"is truncated: {present} of {declared} bytes of audio data are present")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise MediaError(p, f"is truncated or corrupt ({e.error_string.rstrip('.')})") from e
    _check_not_short(p, len(data) / rate, info.duration)
    return data.T, rate


def _audio_stream(p: Path, container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if container.streams.audio:
        return container.streams.audio[0]
    if find_video_stream(container) is not None:
        raise MediaError(p, "has no audio stream (a video without sound?)", accepted=accepted("audio"))
    raise MediaError(p, "is not a readable audio file", accepted=accepted("audio"))


def _declared_seconds(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(
    p: Path, container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> Iterator[av.AudioFrame]:
    """Yield the decoded frames of `stream`, turning FFmpeg decode errors into a MediaError."""
    try:
        yield from container.decode(stream)
    except av.FFmpegError as e:
        raise MediaError(p, f"is truncated or corrupt ({e.strerror or e})") from e


def _read_av(p: Path, limits: MediaLimits) -> tuple[np.ndarray, int]:
    with open_container(p, "audio") as container:
        stream = _audio_stream(p, container)
        declared = _declared_seconds(container, stream)
        if declared is not None:
            _check_max_seconds(p, declared, limits)
        rate = stream.rate
        # A header may lack or understate the duration, so the limit is also enforced while decoding.
        max_samples = limits.max_audio_seconds * rate
        # Decoders emit int16/int32/float, planar or packed; normalise to planar float before mixing down.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        decoded = 0
        for frame in chain(_decode(p, container, stream), [None]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                decoded += out.samples
            if decoded > max_samples:
                _check_max_seconds(p, decoded / rate, limits)
    if not chunks:
        raise MediaError(p, "audio stream contains no samples")
    _check_not_short(p, decoded / rate, declared)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate
