"""Writing audio files: WAV/FLAC (16/24-bit PCM) or MP3, loudness-normalised, tagged, and never half-written."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import COMM, TIT2, TXXX
from mutagen.mp3 import MP3

from media.levelling import Levelling, LevelReport, level

log = logging.getLogger(__name__)

FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3"}
SUBTYPES = {16: "PCM_16", 24: "PCM_24"}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# libsndfile drops every RIFF INFO string on read when one is longer than this many bytes.
WAV_INFO_MAX_BYTES = 2044
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
_RESERVED = {"title", "comment"}  # native fields we fill ourselves; such keys live in the comment block only


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        accepted = ", ".join(FORMATS)
        raise ValueError(f"cannot write {path.name!r}: unsupported extension, expected one of {accepted}")
    return fmt


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def _tags(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"metadata key {key!r} must be letters, digits, '_', '.' or '-'")
        text = str(value)
        if "\x00" in text:
            raise ValueError(f"metadata value for {key!r} contains a NUL character")
        tags[key] = text
    return tags


def _comment_block(tags: dict[str, str]) -> str:
    """All keys as 'key=value' lines (newlines escaped): the copy read_metadata parses back."""
    return "\n".join(f"{key}={_escape(value)}" for key, value in tags.items())


def _parse_block(block: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in block.splitlines() if "=" in line]
    return {key: _unescape(value) for key, value in pairs if _KEY.match(key)}


def _title(tags: dict[str, str]) -> str | None:
    return tags.get("title", tags.get("prompt"))


def _pcm(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round to integers at 2^(bits-1) per full scale, the scale soundfile reads back with."""
    # libsndfile's own float writer scales by 2^(bits-1) - 1, so a float round trip is off by up to 1 LSB.
    scale = 2.0 ** (bit_depth - 1)
    ints = np.clip(np.round(x.astype(np.float64) * scale), -scale, scale - 1)
    return ints.astype(np.int16) if bit_depth == 16 else ints.astype(np.int32) << 8  # PCM_24 keeps the top bytes


def _tag_flac(path: Path, tags: dict[str, str]) -> None:
    audio = FLAC(path)
    if audio.tags is None:
        audio.add_tags()
    title = _title(tags)
    if title is not None:
        audio["title"] = title
    audio["comment"] = _comment_block(tags)
    for key, value in tags.items():
        if key.lower() not in _RESERVED:
            audio[key] = value  # mirrored as its own Vorbis field for tag editors
    audio.save()


def _tag_mp3(path: Path, tags: dict[str, str]) -> None:
    audio = MP3(path)
    if audio.tags is None:
        audio.add_tags()
    title = _title(tags)
    if title is not None:
        audio.tags.add(TIT2(encoding=3, text=title))
    audio.tags.add(COMM(encoding=3, lang="eng", desc="", text=_comment_block(tags)))
    for key, value in tags.items():
        if key.lower() not in _RESERVED:
            audio.tags.add(TXXX(encoding=3, desc=key, text=value))
    audio.save(v2_version=3)  # ID3v2.3 is the version most players and OS file browsers read


@dataclass(frozen=True)
class WrittenAudio:
    """What write_audio delivered: the file, the waveform exactly as levelled into it (float, before PCM), and what
    the levelling did (LevelReport.note() is the sentence to show when the asked loudness was not reached)."""

    path: Path
    waveform: np.ndarray
    sample_rate: int
    levelling: LevelReport | None = None


def write_audio(
    path: str | os.PathLike[str],
    wav: np.ndarray,
    sr: int,
    *,
    bit_depth: int = 16,
    loudness_lufs: float | None = -14.0,
    peak_dbtp: float = -1.0,
    metadata: Mapping[str, Any] | None = None,
) -> WrittenAudio:
    """Write (samples,) or (channels, samples) audio to .wav/.flac/.mp3 by extension.

    Returns the path and the levelled waveform, so a caller that muxes or analyses the delivered track never
    reads its own output back from disk.

    Levels go through media.levelling: loudness_lufs with a capped gain, true peaks held under peak_dbtp (headroom for
    lossy decoders and resampling). loudness_lufs None leaves the loudness alone; only audio whose samples go beyond
    full scale is then brought under the ceiling by the limiter (never clipped). bit_depth (16 or 24) applies
    to WAV and FLAC; MP3 is VBR at LAME's best quality. Metadata keys are stored as 'key=value' lines in the
    comment (RIFF INFO ICMT, Vorbis COMMENT, ID3 COMM), with prompt (or title) as the title.
    """
    path = Path(path)
    fmt = _format(path)
    if bit_depth not in SUBTYPES:
        raise ValueError(f"bit_depth={bit_depth!r} is not supported: expected one of {sorted(SUBTYPES)}")
    if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    if fmt == "MP3" and sr not in MP3_RATES:
        raise ValueError(f"MP3 cannot hold {sr} Hz audio: expected one of {MP3_RATES} (resample first)")
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"audio must be a non-empty (samples,) or (channels, samples) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    tags = _tags(metadata)
    block = _comment_block(tags)
    if fmt == "WAV" and len(block.encode()) > WAV_INFO_MAX_BYTES:
        raise ValueError(
            f"metadata is {len(block.encode())} bytes, over the {WAV_INFO_MAX_BYTES}-byte WAV INFO limit: "
            "write .flac or .mp3 instead"
        )
    report = None
    if loudness_lufs is not None or np.abs(x).max() >= 1.0:
        x, report = level(x, sr, Levelling(target_lufs=loudness_lufs, ceiling_dbtp=peak_dbtp))
        if loudness_lufs is None:
            log.warning("%s went beyond full scale: limited by %.1f dB", path.name, report.limiting_db)

    # Same directory, so os.replace is an atomic rename; the dot prefix hides the partial file meanwhile.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}")
    options: dict[str, Any] = {"subtype": SUBTYPES[bit_depth], "format": fmt}
    if fmt == "MP3":
        # libsndfile's default MP3 setting is ~85 kbps VBR; level 0 is LAME's best VBR.
        options = {"format": fmt, "subtype": "MPEG_LAYER_III", "bitrate_mode": "VARIABLE", "compression_level": 0.0}
    try:
        with sf.SoundFile(tmp, "w", sr, 1 if x.ndim == 1 else x.shape[0], **options) as f:
            if fmt == "WAV" and tags:
                # libsndfile rejects empty strings, so set only what is there; the title is part of the block, so
                # the block's size check covers it too.
                title = _title(tags)
                if title:
                    f.title = title
                if block:
                    f.comment = block
            f.write(_pcm(x, bit_depth).T if fmt != "MP3" else x.T)
        if fmt == "FLAC" and tags:
            _tag_flac(tmp, tags)
        elif fmt == "MP3" and tags:
            _tag_mp3(tmp, tags)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return WrittenAudio(path, x, sr, report)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Metadata of a .wav/.flac/.mp3 file: the key=value comment block if present, else its title and comment."""
    path = Path(path)
    fmt = _format(path)
    title: str | None = None
    comment: str | None = None
    if fmt == "WAV":
        with sf.SoundFile(path) as f:
            title, comment = f.title or None, f.comment or None
    elif fmt == "FLAC":
        tags = FLAC(path).tags
        if tags is not None:
            title = tags["title"][0] if "title" in tags else None
            comment = tags["comment"][0] if "comment" in tags else None
    else:
        tags = MP3(path).tags
        if tags is not None:
            title = str(tags["TIT2"]) if "TIT2" in tags else None
            comments = [frame for frame in tags.getall("COMM") if frame.desc == ""]
            comment = str(comments[0]) if comments else None
    parsed = _parse_block(comment) if comment else {}
    if parsed:
        return parsed
    return {key: value for key, value in (("title", title), ("comment", comment)) if value}
