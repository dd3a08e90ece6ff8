"""Beat alignment of generated music to its video, in the units video-to-music papers report.

BCS and BHS are defined once, in media.beat_scores (D2M-GAN's definitions, as V2Meow and MuVi report them; MuVi's
table has M2UGen 75.2 / 25.1 and MuVi 104.2 / 49.2). Here the video's beats are its scene cuts
(media.video_analysis, PySceneDetect) and the music's beats those of media.music_analysis: the same analysis the
video scoring uses, so `mumu eval` and `mumu score-video` measure alignment identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from media.beat_scores import HIT_TOLERANCE, beat_scores
from media.music_analysis import analyze_music
from media.video_analysis import analyze_video


def beat_alignment(video: str | Path, waveform: np.ndarray, sample_rate: int,
                   tolerance: float = HIT_TOLERANCE) -> dict[str, float | int | None]:
    """{'BCS', 'BHS'} in percent (None when the video has no cuts), plus the counts of cuts and music beats."""
    clip = analyze_video(video, speech=False)
    beats = analyze_music(waveform, sample_rate).beats
    inside = beats[(beats >= 0) & (beats <= clip.duration)]
    scores = beat_scores(clip.cuts, beats, clip.duration, tolerance)
    percent = {name.upper(): None if value is None else 100.0 * value for name, value in scores.items()}
    return {"video_beats": len(clip.cuts), "music_beats": len(inside), **percent}
