"""The final soundtrack of a scored clip: music ducked under speech, mixed with the clip's own audio, levelled."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from media.levelling import Levelling, LevelReport, level, loudness

DUCK_RANGE = (0.0, 40.0)


@dataclass
class DuckSettings:
    """Sidechain ducking keyed by the speech regions: `depth_db` down inside them.

    The envelope looks ahead: its attack ends where speech starts, so no word is spoken over full music; it
    releases over `release` seconds after the speech ends. Both ramps are raised-cosine in dB.
    """

    depth_db: float = 12.0
    attack: float = 0.15
    release: float = 0.5

    def validate(self) -> DuckSettings:
        """Raise ValueError naming the bad setting."""
        if not DUCK_RANGE[0] <= self.depth_db <= DUCK_RANGE[1]:
            raise ValueError(f"ducking depth {self.depth_db!r} dB is out of range: expected {DUCK_RANGE[0]:g} to "
                             f"{DUCK_RANGE[1]:g} dB")
        if not (0.0 <= self.attack <= 2.0 and 0.0 <= self.release <= 5.0):
            raise ValueError(f"ducking attack {self.attack!r} s / release {self.release!r} s must be in [0, 2] / "
                             "[0, 5] s")
        return self


@dataclass
class ScoreMix:
    """The levelled soundtrack, the music alone (the stem: ducked as in the mix, levelled to the same target on its
    own), and what was measured."""

    mix: np.ndarray
    stem: np.ndarray
    sample_rate: int
    loudness: float
    true_peak_db: float
    ducked: bool
    levelling: LevelReport


def duck_gain(n: int, sr: int, regions: list[tuple[float, float]], settings: DuckSettings) -> np.ndarray:
    """Linear gain per sample: 1 away from speech, 10^(-depth/20) inside every region, smooth ramps between."""
    depth = np.zeros(n, dtype=np.float64)  # fraction of the full depth applied at each sample
    t = np.arange(n) / sr
    for start, end in regions:
        lo, hi = max(0, math.floor((start - settings.attack) * sr)), min(n, math.ceil((end + settings.release) * sr))
        seg = t[lo:hi]
        rise = _ramp((seg - (start - settings.attack)) / settings.attack) if settings.attack else (seg >= start) * 1.0
        fall = _ramp((end + settings.release - seg) / settings.release) if settings.release else (seg <= end) * 1.0
        depth[lo:hi] = np.maximum(depth[lo:hi], np.minimum(rise, fall))
    return (10.0 ** (-settings.depth_db * depth / 20.0)).astype(np.float32)


def _ramp(u: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


def mix_score(music: np.ndarray, original: np.ndarray | None, sr: int, speech: list[tuple[float, float]],
              duck: DuckSettings, target_lufs: float, keep_original: bool) -> ScoreMix:
    """Duck `music` under `speech` and add the clip's own audio (when kept), levelled to `target_lufs`.

    Without the clip's audio there is no dialogue to make room for, so the music is not ducked. With it, the music
    is first set to the dialogue track's loudness, so the depth is relative to a bed as loud as the voices.
    """
    duck.validate()
    x = np.asarray(music, dtype=np.float32)
    own = np.asarray(original, dtype=np.float32)[: len(x)] if original is not None and keep_original else None
    if own is not None:
        own = np.pad(own, (0, len(x) - len(own)))
    voice = loudness(own, sr) if own is not None and np.any(own) else -math.inf
    ducked = bool(own is not None and speech and duck.depth_db > 0)
    if math.isfinite(voice):
        x = x * np.float32(10.0 ** ((voice - loudness(x, sr)) / 20.0)) if np.any(x) else x
    if ducked:
        x = x * duck_gain(len(x), sr, speech, duck)
    mix = x + own if own is not None else x
    delivery = Levelling(target_lufs=target_lufs)
    levelled, report = level(mix, sr, delivery)
    stem = level(x, sr, delivery)[0] if own is not None else levelled  # a deliverable of its own, same target
    return ScoreMix(levelled, stem, sr, report.output_lufs, report.true_peak_dbtp, ducked, report)
