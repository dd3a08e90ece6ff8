"""Beat alignment of music to picture: BCS and BHS, and the video / music events they compare.

Definitions (Beat Coverage Score and Beat Hit Score, from the dance-to-music work of Zhu et al., "Quantized GAN
for Complex Music Generation from Dance Videos", ECCV 2022, as used for video-to-music by V2Meow, arXiv
2305.06594, and MuVi, arXiv 2410.12957, whose table has M2UGen 75.2 / 25.1 and MuVi 104.2 / 49.2):
- BCS = 100 * (number of music beats) / (number of video beats);
- BHS = 100 * (number of video beats with a music beat within `tolerance` seconds) / (number of video beats).
Video beats here are the clip's hard cuts (a frame-difference detector); music beats come from librosa's beat
tracker. Both sit behind `video_events` / `music_beats` so they can switch to the cut and beat analysis in
media/ (issue 15) without touching the metric.
"""

from __future__ import annotations

from pathlib import Path

import av
import librosa
import numpy as np

CUT_THRESHOLD = 30.0  # mean absolute difference (0-255) between consecutive downsampled grey frames
DEFAULT_TOLERANCE = 0.1  # seconds


def beat_scores(video_beats: list[float], music_beats: list[float],
                tolerance: float = DEFAULT_TOLERANCE) -> dict[str, float | int | None]:
    """{'BCS', 'BHS'} in percent (None when the video has no beats), plus the two counts."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 seconds, got {tolerance}")
    video = np.sort(np.asarray(video_beats, dtype=np.float64))
    music = np.sort(np.asarray(music_beats, dtype=np.float64))
    out: dict[str, float | int | None] = {"video_beats": len(video), "music_beats": len(music)}
    if len(video) == 0:
        return out | {"BCS": None, "BHS": None}
    if len(music) == 0:
        return out | {"BCS": 0.0, "BHS": 0.0}
    nearest = np.abs(video[:, None] - music[None, :]).min(axis=1)
    hits = int((nearest <= tolerance + 1e-9).sum())
    return out | {"BCS": 100.0 * len(music) / len(video), "BHS": 100.0 * hits / len(video)}


def video_events(path: str | Path, threshold: float = CUT_THRESHOLD) -> list[float]:
    """Times (s) of hard cuts: frames whose mean absolute difference from the previous frame exceeds threshold."""
    cuts: list[float] = []
    previous = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            grey = frame.to_ndarray(format="gray", width=64, height=36).astype(np.float32)
            if previous is not None and np.abs(grey - previous).mean() > threshold and frame.time is not None:
                cuts.append(float(frame.time))
            previous = grey
    return cuts


def music_beats(waveform: np.ndarray, sample_rate: int) -> list[float]:
    """Beat times (s) from librosa's dynamic-programming beat tracker (Ellis, 2007)."""
    _, frames = librosa.beat.beat_track(y=np.asarray(waveform, dtype=np.float32), sr=sample_rate)
    return [float(t) for t in librosa.frames_to_time(frames, sr=sample_rate)]
