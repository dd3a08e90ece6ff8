"""Exact edits of a track file: read it as it is (rate and channels kept), apply an EditPlan, write the result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from media.audio_io import load_audio_native
from media.audio_out import WrittenAudio, write_audio
from media.edits import EditPlan
from media.limits import MediaLimits


def edit_file(
    source: str | Path,
    plan: EditPlan,
    out: str | Path,
    *,
    limits: MediaLimits | None = None,
    bit_depth: int = 16,
    metadata: Mapping[str, Any] | None = None,
) -> WrittenAudio:
    """Apply `plan` to the track at `source` and write it to `out` (.wav/.flac/.mp3).

    A stereo track stays stereo and keeps its sample rate. The plan's loudness (if any) is the writer's levelling
    stage, so the returned WrittenAudio reports it; without one the loudness is left alone. The written metadata
    records the plan (and `metadata`'s keys).

    Raises:
        MediaError: `source` is missing, unreadable or outside `limits`.
        ValueError: the plan is invalid for this track, or `out` has an unsupported extension.
    """
    plan.validate()
    wav, rate = load_audio_native(source, limits, mono=False)
    edited = replace(plan, loudness_lufs=None).apply(wav, rate)
    tags = {"edit": json.dumps(plan.__dict__), **(metadata or {})}
    return write_audio(out, edited, rate, bit_depth=bit_depth, loudness_lufs=plan.loudness_lufs, metadata=tags)
