"""Levelling for music delivery: integrated loudness to a target, then a look-ahead true-peak limiter.

One stage serves every track the product delivers (generated music, exact edits, muxed soundtracks, video scores):

- loudness (ITU-R BS.1770-4, pyloudnorm) is brought to the target with a capped gain: near-silence is never boosted
  by more than `max_gain_db`, and the quieter result is reported, not forced;
- true peaks (4x oversampled, as BS.1770-4 Annex 2 measures them) are held under `ceiling_dbtp` by a look-ahead
  limiter with a musical release; when the target would need more than `max_limiting_db` of gain reduction the
  stage stops at the level that needs at most that, and says so.

Nothing here clips: the limiter's gain is computed so the output's true peak stays under the ceiling. Callers that
change the sample rate (muxing at 48 kHz) resample first and limit after, never the other way round.
The limiter is hand-written because no maintained Python package offers a true-peak look-ahead limiter (pyloudnorm
measures loudness only; pedalboard's Limiter is sample-peak and not in the dependency set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import firwin, resample_poly

OVERSAMPLE = 4
_BLOCK_SECONDS = 0.4  # BS.1770 gating block
_ON_TARGET_DB = 0.1  # loudness within this of the target counts as reached
_MAX_PASSES = 4  # limiter passes (each one only tightens the gain; the first almost always suffices)
# The interpolation filter of the true-peak meter: 48 taps per phase, Kaiser beta 10, cut at the input's Nyquist. It
# reads bright material (content up to 0.45 fs) within 0.001 dB of ideal band-limited interpolation; scipy's default
# (10 taps per phase, beta 5) under-reads such material, and so does BS.1770-4's 12-tap example filter.
_INTERP = firwin(OVERSAMPLE * 48 + 1, 1.0 / OVERSAMPLE, window=("kaiser", 10.0))
# Two good interpolators still disagree by up to ~0.025 dB on such material (this filter vs ideal FFT interpolation,
# measured both ways on the test's bright loop), so the limiter aims this far under the ceiling.
_METER_TOLERANCE_DB = 0.05


@dataclass(frozen=True)
class Levelling:
    """How a track is levelled. target_lufs None: leave loudness alone and only hold true peaks under the ceiling.

    release_s: time the limiter takes to recover from 6 dB of gain reduction (its release is linear in dB).
    lookahead_s: how early the limiter starts to turn down before a peak (a linear attack ramp, full at the peak).
    """

    target_lufs: float | None = -14.0
    ceiling_dbtp: float = -1.0
    max_gain_db: float = 20.0
    max_limiting_db: float = 3.0
    release_s: float = 0.1
    lookahead_s: float = 0.005

    def __post_init__(self) -> None:
        checks = [
            ("target_lufs", self.target_lufs is None or -70.0 <= self.target_lufs <= 0.0, "LUFS in [-70, 0] or None"),
            ("ceiling_dbtp", -20.0 <= self.ceiling_dbtp <= 0.0, "dBTP in [-20, 0]"),
            ("max_gain_db", 0.0 <= self.max_gain_db <= 60.0, "dB in [0, 60]"),
            ("max_limiting_db", 0.0 <= self.max_limiting_db <= 20.0, "dB in [0, 20]"),
            ("release_s", 0.05 <= self.release_s <= 2.0, "seconds in [0.05, 2] (shorter release distorts)"),
            ("lookahead_s", 0.001 <= self.lookahead_s <= 0.02, "seconds in [0.001, 0.02]"),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range: expected {accepted}")


@dataclass(frozen=True)
class LevelReport:
    """What levelling did: loudness before/after, the static gain, the limiter's largest gain reduction, the true
    peak delivered, and whether the target was reached (and if not, why: 'silent', 'gain cap' or 'limiting cap')."""

    target_lufs: float | None
    input_lufs: float
    output_lufs: float
    gain_db: float
    limiting_db: float
    true_peak_dbtp: float
    reached: bool
    held_back_by: str | None = None

    def note(self) -> str | None:
        """One sentence for the user when the track is not at the asked loudness; None when it is."""
        if self.reached or self.target_lufs is None:
            return None
        why = {
            "silent": "the track is silent",
            "gain cap": f"raising it further would amplify noise (gain capped at +{self.gain_db:.1f} dB)",
            "limiting cap": f"reaching it would need more than {self.limiting_db:.1f} dB of peak limiting",
        }[self.held_back_by or "silent"]
        return (f"the track was left at {self.output_lufs:.1f} LUFS instead of {self.target_lufs:g} LUFS: {why}"
                if self.held_back_by != "silent" else f"the track was not levelled: {why}")


def _audio(wav: np.ndarray) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"audio must be a non-empty (samples,) or (channels, samples) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    return x


def loudness(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); -inf for silence."""
    x = _audio(wav).astype(np.float64)
    if not np.any(x):
        return -math.inf
    block = math.ceil(_BLOCK_SECONDS * sr) + 1
    if x.shape[-1] < block:
        # Shorter than one gating block: measure it repeated, i.e. its mean K-weighted power.
        x = np.tile(x, [1] * (x.ndim - 1) + [math.ceil(block / x.shape[-1])])
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sr).integrated_loudness(x.T))


def _peak_envelope(x: np.ndarray) -> np.ndarray:
    """Per input sample, the largest |value| of the 4x-oversampled signal around it (channels linked)."""
    up = np.abs(resample_poly(x.astype(np.float64), OVERSAMPLE, 1, axis=-1, window=_INTERP))
    if up.ndim == 2:
        up = up.max(axis=0)
    # Oversampled points 4n-2 .. 4n+2 lie within half a sample of n, so each inter-sample peak is owned by a sample.
    up = maximum_filter1d(up, OVERSAMPLE + 1, mode="nearest")
    return np.maximum(up[::OVERSAMPLE], np.abs(x).max(axis=0) if x.ndim == 2 else np.abs(x))


def true_peak_dbtp(wav: np.ndarray) -> float:
    """True peak in dBTP: the largest |value| of the signal oversampled 4x (see _INTERP)."""
    peak = float(_peak_envelope(_audio(wav)).max())
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _gain_reduction(peak: np.ndarray, ceiling: float, sr: int, settings: Levelling) -> np.ndarray:
    """Gain reduction in dB per sample: the least that holds every peak under the ceiling, with look-ahead attack
    and a release linear in dB. Every step only raises the reduction, so each peak stays covered."""
    with np.errstate(divide="ignore"):
        need = np.maximum(0.0, 20 * np.log10(np.maximum(peak, 1e-12) / ceiling))
    if not need.any():
        return need
    rate = 6.0 / (settings.release_s * sr)  # dB per sample
    ramp = rate * np.arange(len(need))
    # released[n] = max over m <= n of need[m] - rate * (n - m): a running maximum, vectorised.
    released = np.maximum.accumulate(need + ramp) - ramp
    half = max(1, round(settings.lookahead_s * sr / 2))  # hold +-half, then average +-half: ramp of 2 * half
    width = 2 * half + 1
    # Each averaged value is a maximum over a window holding n, so the smoothed reduction never drops below it.
    return uniform_filter1d(maximum_filter1d(released, width, mode="nearest"), width, mode="nearest")


def limit_true_peak(wav: np.ndarray, sr: int, settings: Levelling | None = None) -> tuple[np.ndarray, float]:
    """Hold true peaks under settings.ceiling_dbtp; returns (audio, largest gain reduction in dB)."""
    settings = settings or Levelling()
    x = _audio(wav)
    ceiling = 10.0 ** ((settings.ceiling_dbtp - _METER_TOLERANCE_DB) / 20.0)
    total = np.zeros(x.shape[-1])
    y = x
    for _ in range(_MAX_PASSES):
        reduction = _gain_reduction(_peak_envelope(y), ceiling, sr, settings)
        if not reduction.any():
            break
        total += reduction
        y = (x * 10.0 ** (-total / 20.0)).astype(np.float32)
    return y, float(total.max())


def _gain(x: np.ndarray, db: float) -> np.ndarray:
    return (x * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def level(wav: np.ndarray, sr: int, settings: Levelling | None = None) -> tuple[np.ndarray, LevelReport]:
    """Level a (samples,) or (channels, samples) track for delivery; see the module docstring."""
    settings = settings or Levelling()
    x = _audio(wav)
    before = loudness(x, sr)
    peak_in = true_peak_dbtp(x)
    target = settings.target_lufs
    if target is None or not math.isfinite(before):
        y, limited = limit_true_peak(x, sr, settings)
        after = loudness(y, sr)
        return y, LevelReport(target, before, after, 0.0, limited, true_peak_dbtp(y),
                              reached=target is None, held_back_by=None if target is None else "silent")
    # The largest gain the caps allow: capped boost, and no more limiting than max_limiting_db on the loudest peak.
    most = min(settings.max_gain_db, settings.ceiling_dbtp - _METER_TOLERANCE_DB + settings.max_limiting_db - peak_in)
    gain_db = min(target - before, most)
    # Limiting lowers loudness a little, so re-gain a few times while the caps allow.
    for _ in range(4):
        y, limited = limit_true_peak(_gain(x, gain_db), sr, settings)
        after = loudness(y, sr)
        step = min(target - after, most - gain_db)
        if abs(target - after) < _ON_TARGET_DB or step < 0.01:
            break
        gain_db += step
    reached = abs(target - after) < 0.5
    held = None
    if not reached:
        held = "gain cap" if most == settings.max_gain_db else "limiting cap"
    return y, LevelReport(target, before, after, gain_db, limited, true_peak_dbtp(y), reached, held)
