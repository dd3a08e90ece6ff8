"""Exact edits as signal operations: tempo, pitch, trim, fades, loops, gain, loudness and mixing.

Audio is float32, mono (samples,) or multichannel (channels, samples); every function returns a new array.
Time-domain edits align on the channel mean so all channels stay in sync.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import librosa
import numpy as np
from scipy.signal import correlate, get_window

from media.levelling import Levelling, level

TEMPO_RANGE = (0.25, 4.0)
SEMITONE_RANGE = (-24.0, 24.0)
LOOP_RANGE = (1, 64)
FADE_RANGE = (0.0, 60.0)
GAIN_RANGE = (-60.0, 24.0)
LUFS_RANGE = (-70.0, 0.0)


def _audio(wav: np.ndarray) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"audio must be a non-empty (samples,) or (channels, samples) array, got shape {x.shape}")
    if x.ndim == 2 and x.shape[0] > 16:
        raise ValueError(f"audio of shape {x.shape} has {x.shape[0]} channels: pass (channels, samples)")
    return x


def _mono(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 1 else x.mean(axis=0)


def _check(name: str, value: float, bounds: tuple[float, float]) -> None:
    if not bounds[0] <= value <= bounds[1]:  # NaN fails this too
        raise ValueError(f"{name}={value!r} is out of range: expected a value in [{bounds[0]:g}, {bounds[1]:g}]")


def change_tempo(wav: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Play `rate` times faster keeping pitch (WSOLA); output length is round(len / rate)."""
    x = _audio(wav)
    _check("rate", rate, TEMPO_RANGE)
    if rate == 1.0:
        return x.copy()
    n_out = max(1, round(x.shape[-1] / rate))
    return warp(x, sr, np.array([0.0, 1.0]), np.array([0.0, rate]), n_out)


def warp(wav: np.ndarray, sr: int, out_points: np.ndarray, in_points: np.ndarray, n_out: int) -> np.ndarray:
    """Time-warp keeping pitch (WSOLA): output sample m plays input sample map(m), `n_out` samples long.

    map is piecewise linear through (out_points[i], in_points[i]) (in samples, increasing), extended past the last
    point with the last slope; change_tempo is the one-segment case map(m) = m * rate.
    """
    # Own WSOLA: audiotsm (last release 2017) runs on numpy 2 but drops the final partial frame (1 s clips come out
    # ~7% short), and librosa only has a phase vocoder, which smears transients.
    x = _audio(wav)
    out_points, in_points = np.asarray(out_points, dtype=np.float64), np.asarray(in_points, dtype=np.float64)
    if len(out_points) < 2 or np.any(np.diff(out_points) <= 0) or np.any(np.diff(in_points) < 0):
        raise ValueError("warp points must be at least two, with output points increasing and input not decreasing")
    n_in = x.shape[-1]
    frame = 2 * round(0.025 * sr)  # 50 ms Hann frames at 50% overlap: the periodic Hann sums to exactly 1
    hop, tol = frame // 2, frame // 4  # +-12.5 ms search covers periods down to 40 Hz
    n_frames = math.ceil((n_out + hop) / hop) + 1
    centres = np.arange(n_frames) * hop
    slope = (in_points[-1] - in_points[-2]) / (out_points[-1] - out_points[-2])
    mapped = np.interp(centres, out_points, in_points)
    beyond = centres > out_points[-1]
    mapped[beyond] = in_points[-1] + (centres[beyond] - out_points[-1]) * slope
    nominal = tol + np.round(mapped).astype(int)
    # Front padding of hop + tol maps output sample m to input sample map(m) at frame centres; the back padding
    # leaves room for the last search window and for the previous frame's successor (a hop past it).
    pad_back = max(0, int(nominal.max()) + tol + frame + hop - (hop + tol + n_in)) + 1
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(hop + tol, pad_back)])
    mono = _mono(xp)
    pos = nominal.copy()
    for k in range(1, n_frames):
        # The frame that best continues the previous one's natural successor, within +-tol of the nominal place.
        natural = mono[pos[k - 1] + hop : pos[k - 1] + hop + frame]
        lo = nominal[k] - tol
        score = correlate(mono[lo : nominal[k] + tol + frame], natural, mode="valid")
        if score.max() > 0:
            pos[k] = lo + int(np.argmax(score))
    frames = xp[..., pos[:, None] + np.arange(frame)] * get_window("hann", frame).astype(np.float32)
    out = np.zeros((*x.shape[:-1], n_frames + 1, hop), dtype=np.float32)
    out[..., :-1, :] += frames[..., :hop]
    out[..., 1:, :] += frames[..., hop:]
    out = out.reshape(*x.shape[:-1], -1)
    return np.ascontiguousarray(out[..., hop : hop + n_out])


def shift_pitch(wav: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by `semitones` keeping duration: WSOLA stretch by 2^(n/12), then a soxr resample back."""
    x = _audio(wav)
    _check("semitones", semitones, SEMITONE_RANGE)
    if semitones == 0:
        return x.copy()
    n = x.shape[-1]
    stretched = change_tempo(x, sr, 2.0 ** (-semitones / 12.0))
    # Resample by the exact length ratio so the result lands on n samples without drift.
    back = librosa.resample(stretched, orig_sr=sr * stretched.shape[-1] / n, target_sr=sr, res_type="soxr_hq")
    return librosa.util.fix_length(back, size=n, axis=-1).astype(np.float32)


def trim(wav: np.ndarray, sr: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Keep [start, end) seconds; negative values count from the end, end None means to the end."""
    x = _audio(wav)
    length = x.shape[-1] / sr
    s = start + length if start < 0 else start
    e = length if end is None else (end + length if end < 0 else end)
    i, j = round(s * sr), min(round(e * sr), x.shape[-1])
    if not (s >= 0 and e <= length + 0.5 / sr and i < j):
        raise ValueError(
            f"trim start={start!r}, end={end!r} is out of range for a {length:.3f} s clip: "
            f"expected -{length:.3f} <= start < end <= {length:.3f} (negative counts from the end)"
        )
    return x[..., i:j].copy()


def _fade_len(name: str, seconds: float, sr: int, n: int) -> int:
    _check(name, seconds, FADE_RANGE)
    count = round(seconds * sr)
    if count > n:
        raise ValueError(f"{name}={seconds!r} s is longer than the {n / sr:.3f} s clip")
    return count


def fade(wav: np.ndarray, sr: int, fade_in: float = 0.0, fade_out: float = 0.0) -> np.ndarray:
    """Equal-power (quarter-sine) fades: the first faded-in and the last faded-out sample are exactly 0."""
    x = _audio(wav).copy()
    n = x.shape[-1]
    n_in, n_out = _fade_len("fade_in", fade_in, sr, n), _fade_len("fade_out", fade_out, sr, n)
    if n_in:
        x[..., :n_in] *= np.sin(0.5 * np.pi * np.arange(n_in) / n_in).astype(np.float32)
    if n_out:
        x[..., n - n_out :] *= np.sin(0.5 * np.pi * np.arange(n_out)[::-1] / n_out).astype(np.float32)
    return x


def _best_seam(mono: np.ndarray, xfade: int, search: int) -> int:
    """Where the tail copy starts: the place within `search` samples of n - xfade that best matches the head."""
    n = mono.shape[-1]
    lo = max(xfade, n - xfade - search)
    head = mono[:xfade].astype(np.float64)
    region = mono[lo:].astype(np.float64)
    energy = np.convolve(region**2, np.ones(xfade), mode="valid")
    cost = energy - 2 * correlate(region, head, mode="valid")  # squared distance minus the constant |head|^2
    return lo + len(cost) - 1 - int(np.argmin(cost[::-1]))  # ties go to the latest seam, keeping the period


def _seam_head(x: np.ndarray, seam: int, xfade: int) -> np.ndarray:
    """The `xfade` samples that follow x[seam - 1] and lead into x[xfade]: tail crossfaded into head, click-free.

    The crossfade is done on sample-to-sample steps, so each step is a weighted mean of the two source steps and
    cannot exceed the source's largest; the small drift this leaves is spread over the steps that have room.
    """
    x64 = x.astype(np.float64)
    head_steps = np.diff(x64[..., : xfade + 1], prepend=0.0)  # step 0 has weight 0: the tail still rules there
    tail = x64[..., seam - 1 : seam + xfade + 1]
    if tail.shape[-1] < xfade + 2:  # seam at the very end: the missing last step has weight 0
        tail = np.concatenate([tail, tail[..., -1:]], axis=-1)
    tail_steps = np.diff(tail)
    # Equal-gain raised cosine: the aligned tail and head are correlated, so their weights sum to 1.
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(xfade + 1) / xfade)
    steps = rise * head_steps + (1.0 - rise) * tail_steps
    limit = np.abs(np.diff(x64, axis=-1)).max(axis=-1, keepdims=True)
    drift = x64[..., xfade : xfade + 1] - x64[..., seam - 1 : seam] - steps.sum(axis=-1, keepdims=True)
    room = limit - np.sign(drift) * steps
    steps += drift * room / np.maximum(room.sum(axis=-1, keepdims=True), 1e-30)
    return (x64[..., seam - 1 : seam] + np.cumsum(steps[..., :-1], axis=-1)).astype(np.float32)


def loop(wav: np.ndarray, sr: int, times: int, crossfade: float = 0.01, search: float = 0.02) -> np.ndarray:
    """Repeat `times` times; each seam crossfades the tail into the head at the best-matching phase.

    The first repetition keeps the original start and the last the original end, so the result is
    (times - 1) * period + len(wav) samples, where period = len(wav) - crossfade - (0..search) seconds: the seam
    may move up to `search` earlier to line up with the head (0 keeps the period exact). crossfade 0 repeats the
    clip as is, which clicks unless it was made to loop.
    """
    x = _audio(wav)
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError(f"loop times={times!r} must be an integer in [{LOOP_RANGE[0]}, {LOOP_RANGE[1]}]")
    _check("loop", times, LOOP_RANGE)
    _check("crossfade", crossfade, (0.0, 10.0))
    _check("search", search, (0.0, 1.0))
    xfade, n = round(crossfade * sr), x.shape[-1]
    if times == 1:
        return x.copy()
    if xfade == 0:
        return np.concatenate([x] * times, axis=-1)
    if n < 2 * xfade + 1:
        raise ValueError(f"loop crossfade={crossfade!r} s needs a clip over twice as long; it is {n / sr:.3f} s")
    seam = _best_seam(_mono(x), xfade, round(search * sr))
    head = _seam_head(x, seam, xfade)
    middle = [head, x[..., xfade:seam]] * (times - 2)
    return np.concatenate([x[..., :seam], *middle, head, x[..., xfade:]], axis=-1)


def gain(wav: np.ndarray, db: float) -> np.ndarray:
    """Scale by `db` decibels."""
    return (_audio(wav) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def mix(
    base: np.ndarray, base_sr: int, layer: np.ndarray, layer_sr: int, layer_db: float = 0.0, offset: float = 0.0
) -> np.ndarray:
    """Mix `layer` over `base` from `offset` seconds, at base_sr and base length; scaled down if it would clip."""
    b, lay = _audio(base), _audio(layer)
    if layer_sr != base_sr:
        lay = librosa.resample(lay, orig_sr=layer_sr, target_sr=base_sr, res_type="soxr_hq").astype(np.float32)
    if b.ndim == 1 and lay.ndim == 2:
        lay = lay.mean(axis=0)
    elif b.ndim == 2 and lay.ndim == 2 and lay.shape[0] != b.shape[0]:
        raise ValueError(f"cannot mix a {lay.shape[0]}-channel layer over a {b.shape[0]}-channel base")
    n = b.shape[-1]
    start = round(offset * base_sr)
    if not 0 <= start < n:
        raise ValueError(f"mix offset={offset!r} is out of range: expected seconds in [0, {n / base_sr:.3f})")
    part = lay[..., : n - start]
    out = b.copy()
    out[..., start : start + part.shape[-1]] += gain(part, layer_db)
    peak = float(np.abs(out).max())
    return out / np.float32(peak) if peak > 1.0 else out


_TIME = re.compile(r"^([+-]?)(?:(\d+):([0-5]\d(?:\.\d*)?)|(\d+(?:\.\d*)?|\.\d+))$")


def _seconds(text: str) -> float | None:
    m = _TIME.match(text.strip())
    if not m:
        return None
    sign, minutes, secs, plain = m.groups()
    value = float(plain) if plain is not None else int(minutes) * 60 + float(secs)
    return -value if sign == "-" else value


def parse_trim(text: str) -> tuple[float, float | None]:
    """Parse "START:END" (seconds or m:ss, either may be empty or negative) into (start, end or None)."""
    parts = text.split(":")
    # Colons also separate minutes from seconds, so try every split point and keep those where both sides parse.
    found = []
    for cut in range(1, len(parts)):
        left, right = ":".join(parts[:cut]).strip(), ":".join(parts[cut:]).strip()
        start, end = (_seconds(left) if left else 0.0), (_seconds(right) if right else None)
        if start is not None and (end is not None or not right):
            found.append((start, end))
    if len(found) != 1:
        problem = "is ambiguous" if found else "is not START:END"
        raise ValueError(f"trim {text!r} {problem}: use seconds or m:ss on each side, e.g. '1.5:', ':10', '0:05:1:30'")
    return found[0]


@dataclass
class EditPlan:
    """Exact edits, applied in this order: trim -> tempo -> pitch -> loop -> fades -> gain -> loudness."""

    tempo: float = 1.0
    semitones: float = 0.0
    trim_start: float = 0.0
    trim_end: float | None = None
    fade_in: float = 0.0
    fade_out: float = 0.0
    loop: int = 1
    gain_db: float = 0.0
    loudness_lufs: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> EditPlan:
        """Raise ValueError naming the first out-of-range option and its accepted range."""
        _check("tempo", self.tempo, TEMPO_RANGE)
        _check("semitones", self.semitones, SEMITONE_RANGE)
        for name in ("trim_start", "trim_end"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}={value!r} must be a finite number of seconds")
        _check("fade_in", self.fade_in, FADE_RANGE)
        _check("fade_out", self.fade_out, FADE_RANGE)
        if isinstance(self.loop, bool) or not isinstance(self.loop, int):
            raise ValueError(f"loop={self.loop!r} must be an integer in [{LOOP_RANGE[0]}, {LOOP_RANGE[1]}]")
        _check("loop", self.loop, LOOP_RANGE)
        _check("gain_db", self.gain_db, GAIN_RANGE)
        if self.loudness_lufs is not None:
            _check("loudness_lufs", self.loudness_lufs, LUFS_RANGE)
        return self

    def apply(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Apply the plan in the documented order; options left at their defaults are skipped."""
        self.validate()
        x = _audio(wav)
        if self.trim_start != 0.0 or self.trim_end is not None:
            x = trim(x, sr, self.trim_start, self.trim_end)
        if self.tempo != 1.0:
            x = change_tempo(x, sr, self.tempo)
        if self.semitones != 0.0:
            x = shift_pitch(x, sr, self.semitones)
        if self.loop > 1:
            x = loop(x, sr, self.loop)
        if self.fade_in or self.fade_out:
            x = fade(x, sr, self.fade_in, self.fade_out)
        if self.gain_db != 0.0:
            x = gain(x, self.gain_db)
        if self.loudness_lufs is not None:
            x, _ = level(x, sr, Levelling(target_lufs=self.loudness_lufs))
        return x
