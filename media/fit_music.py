"""Fit a track to a picture, exactly and without a model: downbeats on the hit points, the clip's exact length.

One piecewise-linear time map (output time -> track time) is chosen, then applied in a single WSOLA pass
(media.edits.warp), so segment boundaries are as seamless as the rest. Each segment changes the tempo by at most
`max_tempo_change`; a hit point no downbeat can reach within that is reported as missed, never forced. The map ends
on a downbeat followed by a fading tail, so the music finishes rather than stops. A track too short for the clip is
first extended by looping whole bars (loop_bars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from media.edits import fade, loop, warp
from media.music_analysis import MusicAnalysis

START_FADE = 0.05  # seconds of fade-in when the music starts past its beginning
EndingKind = Literal["downbeat", "fade"]  # a downbeat then a fading tail, or (no downbeat fits) a plain fade-out


@dataclass
class FitSettings:
    """How far fitting may bend the music.

    max_tempo_change: the largest tempo change of any segment (0.08 = +-8 %).
    tail: (shortest, longest) seconds the music may ring on after its last downbeat, fading to silence.
    loop_crossfade: seconds of each bar-loop seam.
    """

    max_tempo_change: float = 0.08
    tail: tuple[float, float] = (0.5, 4.0)
    loop_crossfade: float = 0.02

    def validate(self) -> FitSettings:
        """Raise ValueError naming the bad setting."""
        if not 0.0 <= self.max_tempo_change <= 0.08:
            raise ValueError(f"max_tempo_change={self.max_tempo_change!r} must be in [0, 0.08] (+-8 % at most)")
        if not 0.0 < self.tail[0] <= self.tail[1]:
            raise ValueError(f"tail={self.tail!r} must be (shortest, longest) seconds with 0 < shortest <= longest")
        if not 0.001 <= self.loop_crossfade <= 0.5:
            raise ValueError(f"loop_crossfade={self.loop_crossfade!r} must be in [0.001, 0.5] s")
        return self


@dataclass
class Fitted:
    """A fitted track and how it was made (times in seconds).

    anchors: (output time, track time) points of the time map; hits: hit point -> the track time of the downbeat
    placed on it; missed: hit points no downbeat could reach; loops: bars-loop repetitions added before fitting.
    beats / downbeats: the analysed beats of the track carried through the map (output times within the clip).
    """

    waveform: np.ndarray
    sample_rate: int
    anchors: list[tuple[float, float]]
    hits: dict[float, float]
    missed: list[float]
    ending: EndingKind
    loops: int
    beats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    downbeats: np.ndarray = field(default_factory=lambda: np.zeros(0))


def fit_to_picture(wav: np.ndarray, sr: int, music: MusicAnalysis, hit_points: list[float], duration: float,
                   settings: FitSettings | None = None) -> Fitted:
    """Warp mono `wav` (analysed as `music`) to exactly round(duration * sr) samples with downbeats on hit points."""
    settings = (settings or FitSettings()).validate()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"fitting takes a mono waveform, got shape {x.shape}")
    n_out = round(duration * sr)
    low, high = 1.0 - settings.max_tempo_change, 1.0 + settings.max_tempo_change
    need = duration * high + settings.tail[1]
    x, beats, downbeats, loops = loop_bars(x, sr, music, need, settings.loop_crossfade)
    anchors, hits, missed = _best_start(sorted(hit_points), downbeats, low, high)
    ending = _ending(anchors, hits, missed, downbeats, duration, settings.tail, low, high)
    if ending is None:
        kind: EndingKind = "fade"
        tail = min(1.0, duration / 4)
        anchors.append((duration, anchors[-1][1] + duration - anchors[-1][0]))
    else:
        kind, (at, downbeat) = "downbeat", ending
        tail = duration - at
        if at > anchors[-1][0]:
            anchors.append((at, downbeat))
        anchors.append((duration, downbeat + tail))
    out_pts, in_pts = np.array(anchors).T
    fitted = warp(x, sr, out_pts * sr, in_pts * sr, n_out)
    # Music entering mid-track (a start offset) gets a short fade-in so its first sample is not a click.
    fitted = fade(fitted, sr, fade_in=START_FADE if anchors[0][1] > 0 else 0.0, fade_out=min(tail, duration))
    return Fitted(fitted, sr, anchors, hits, missed, kind, loops,
                  _carry(beats, in_pts, out_pts, duration), _carry(downbeats, in_pts, out_pts, duration))


def loop_bars(x: np.ndarray, sr: int, music: MusicAnalysis, seconds: float,
              crossfade: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Loop the bars between the first and the last downbeat until the track lasts `seconds`.

    Returns (track, beats, downbeats, repetitions added), beats and downbeats carried to their new places. Each seam
    is the `crossfade` just before a downbeat, so the downbeat's attack plays clean; edits.loop makes the seam
    click-free (it crossfades sample-to-sample steps with equal gain, the right law for a bar joined to the same
    music a whole number of bars on, which is correlated with it: equal power would swell it by up to 3 dB).
    A track with no two downbeats to loop between is looped whole, its seams placed where they match best.
    """
    beats, downbeats = music.beats.copy(), music.downbeats.copy()
    if len(x) >= seconds * sr:
        return x, beats, downbeats, 0
    xfade = round(crossfade * sr)
    usable = downbeats[(downbeats * sr >= xfade) & (np.round(downbeats * sr) <= len(x))]
    if len(usable) < 2 or round(usable[-1] * sr) - round(usable[0] * sr) <= 2 * xfade:
        times = min(64, math.ceil(seconds * sr / max(1, len(x) - 2 * xfade)))
        if len(x) <= 2 * xfade + 1 or times < 2:
            raise ValueError(f"the music ({len(x) / sr:.2f} s) is too short to loop to the {seconds:.1f} s needed")
        return loop(x, sr, times, crossfade=crossfade), beats[:0], downbeats[:0], times - 1
    first, last = round(usable[0] * sr), round(usable[-1] * sr)
    body = last - first
    times = min(64, math.ceil((seconds * sr - len(x)) / body) + 1)
    looped = loop(x[first - xfade : last], sr, times, crossfade=xfade / sr, search=0.0)
    out = np.concatenate([x[: first - xfade], looped, x[last:]])
    period = body / sr

    def repeat(times_in: np.ndarray) -> np.ndarray:
        before = times_in[times_in < usable[0]]
        inside = times_in[(times_in >= usable[0]) & (times_in < usable[-1])]
        after = times_in[times_in >= usable[-1]] + (times - 1) * period
        return np.concatenate([before, *(inside + r * period for r in range(times)), after])

    if times == 64 and len(out) < seconds * sr:  # longer than 64 loops: loop the looped track again
        more = MusicAnalysis(len(out) / sr, music.tempo, repeat(beats), repeat(downbeats), music.key,
                             music.level_times, music.level_db)
        out, b, d, extra = loop_bars(out, sr, more, seconds, crossfade)
        return out, b, d, times - 1 + extra
    return out, repeat(beats), repeat(downbeats), times - 1


def _best_start(hit_points: list[float], downbeats: np.ndarray, low: float,
                high: float) -> tuple[list[tuple[float, float]], dict[float, float], list[float]]:
    """Start the music at its beginning, or later so its first downbeat past the first hit lands on it at the
    original tempo, whichever reaches more hit points (ties: the beginning)."""
    best = _hit_anchors(hit_points, downbeats, low, high, 0.0)
    later = downbeats[downbeats >= hit_points[0]] if hit_points else np.zeros(0)
    if len(later) and best[2]:
        shifted = _hit_anchors(hit_points, downbeats, low, high, float(later[0]) - hit_points[0])
        if len(shifted[1]) > len(best[1]):
            return shifted
    return best


def _hit_anchors(hit_points: list[float], downbeats: np.ndarray, low: float, high: float,
                 start: float) -> tuple[list[tuple[float, float]], dict[float, float], list[float]]:
    """Greedy in time: each hit takes the next downbeat reachable with the tempo change closest to none."""
    anchors: list[tuple[float, float]] = [(0.0, start)]
    hits: dict[float, float] = {}
    missed: list[float] = []
    for hit in hit_points:
        out_t, in_t = anchors[-1]
        span = hit - out_t
        if span <= 0:
            missed.append(hit)
            continue
        ahead = downbeats[downbeats > in_t]
        rates = (ahead - in_t) / span
        ok = (rates >= low - 1e-9) & (rates <= high + 1e-9)
        if not ok.any():
            missed.append(hit)
            continue
        best = int(np.argmin(np.where(ok, np.abs(np.log(np.maximum(rates, 1e-9))), np.inf)))
        anchors.append((hit, float(ahead[best])))
        hits[hit] = float(ahead[best])
    return anchors, hits, missed


def _ending(anchors: list[tuple[float, float]], hits: dict[float, float], missed: list[float], downbeats: np.ndarray,
            duration: float, tail: tuple[float, float], low: float, high: float) -> tuple[float, float] | None:
    """Where the last downbeat lands (output time, track time), dropping hit anchors that leave no room for it."""
    while True:
        found = _ending_after(anchors[-1], downbeats, duration, tail, low, high)
        if found is not None or len(anchors) == 1:
            return found
        dropped, _ = anchors.pop()
        del hits[dropped]
        missed.append(dropped)
        missed.sort()


def _ending_after(last: tuple[float, float], downbeats: np.ndarray, duration: float, tail: tuple[float, float],
                  low: float, high: float) -> tuple[float, float] | None:
    out_t, in_t = last
    if tail[0] <= duration - out_t <= tail[1] and out_t > 0:
        return last  # the last hit's own downbeat can end the music
    best: tuple[float, tuple[float, float]] | None = None
    for d in downbeats[downbeats > in_t]:
        # Landing d at duration - t for a tail t in range means a rate in [lo_r, hi_r]; take the one nearest 1.
        lo_span, hi_span = duration - tail[1] - out_t, duration - tail[0] - out_t
        if hi_span <= 0:
            return None
        lo_r, hi_r = (d - in_t) / hi_span, (d - in_t) / max(lo_span, 1e-9) if lo_span > 0 else math.inf
        r = min(max(1.0, lo_r, low), hi_r, high)
        if not (max(lo_r, low) - 1e-9 <= r <= min(hi_r, high) + 1e-9):
            continue
        cost = abs(math.log(r))
        if best is None or cost < best[0]:
            best = (cost, (out_t + (d - in_t) / r, float(d)))
    return None if best is None else best[1]


def _carry(times: np.ndarray, in_pts: np.ndarray, out_pts: np.ndarray, duration: float) -> np.ndarray:
    """Output times of track times through the map (inverse of the piecewise-linear out -> in map)."""
    inside = times[(times >= in_pts[0]) & (times <= in_pts[-1])]
    mapped = np.interp(inside, in_pts, out_pts)
    return mapped[mapped < duration]
