"""Beat alignment scores between a clip's hit points and a track's beats: BCS and BHS.

Definitions as in D2M-GAN (Zhu et al., "Quantized GAN for Complex Music Generation from Dance Videos", ECCV 2022,
arXiv:2204.00604, Sec. 4), the ones V2Meow (Su et al., arXiv:2305.06594) and MuVi (Li et al., arXiv:2410.12957)
report: with B_t the reference beats, B_g the generated music's beats and B_a the reference beats that have a
generated beat within a tolerance window,

    BCS (Beats Coverage Score) = |B_g| / |B_t|        BHS (Beats Hit Score) = |B_a| / |B_t|

Here the reference beats are the picture's hit points and the music's beats are its downbeats inside the clip, so
BHS is the share of hit points a downbeat lands on, and BCS how many downbeats the clip carries per hit point.
"""

from __future__ import annotations

import numpy as np

HIT_TOLERANCE = 0.1  # seconds either side of a hit point


def beat_scores(hit_points: list[float] | np.ndarray, music_beats: np.ndarray, duration: float,
                tolerance: float = HIT_TOLERANCE) -> dict[str, float | None]:
    """{"bcs", "bhs"} as fractions (None for both when there are no hit points)."""
    hits = np.asarray(hit_points, dtype=np.float64)
    beats = np.asarray(music_beats, dtype=np.float64)
    beats = beats[(beats >= 0) & (beats <= duration)]
    if len(hits) == 0:
        return {"bcs": None, "bhs": None}
    if len(beats) == 0:
        return {"bcs": 0.0, "bhs": 0.0}
    nearest = np.abs(hits[:, None] - beats[None, :]).min(axis=1)
    return {"bcs": len(beats) / len(hits), "bhs": float(np.mean(nearest <= tolerance))}
