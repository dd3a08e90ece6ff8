"""What a clip offers a score: duration, frame rate, scene cuts, a motion-intensity curve and its speech regions.

Cuts come from PySceneDetect's ContentDetector (HSV + edge change between frames) decoding through PyAV; its
per-frame score is the motion-intensity curve. Speech comes from the clip's own soundtrack (media.speech).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from scenedetect import ContentDetector, SceneManager, StatsManager
from scenedetect.backends.pyav import VideoStreamAv

from media.errors import MediaError
from media.limits import MediaLimits
from media.speech import VAD_RATE, speech_regions
from media.video_io import load_video_audio, video_duration

MIN_CLIP_SECONDS = 0.5
CUT_THRESHOLD = 27.0  # ContentDetector's default: the frame score above which a cut is declared
MIN_SHOT_SECONDS = 0.3  # two cuts closer than this are one


@dataclass
class VideoAnalysis:
    """A clip as the scoring sees it (times in seconds from the clip's start).

    motion: ContentDetector's frame-to-frame change score, one value per frame (0 for the first frame).
    audio: the clip's own soundtrack, mono at `audio_rate`, or None when it has none.
    """

    path: Path
    duration: float
    fps: float
    frames: int
    cuts: list[float]
    motion: np.ndarray
    speech: list[tuple[float, float]] = field(default_factory=list)
    audio: np.ndarray | None = None
    audio_rate: int = VAD_RATE


def analyze_video(path: str | Path, limits: MediaLimits | None = None, audio_rate: int = 48_000,
                  speech: bool = True) -> VideoAnalysis:
    """Decode `path` once for cuts and motion, and read its soundtrack at `audio_rate` (and its speech, if asked).

    Raises:
        MediaError: not a readable video, no video stream, empty, or shorter/longer than the accepted length.
    """
    limits = limits or MediaLimits()
    p = Path(path)
    duration = clip_duration(p, limits)
    fps, frames, cuts, motion = _cuts_and_motion(p)
    audio = load_video_audio(p, audio_rate, limits)
    regions = speech_regions(audio, audio_rate) if audio is not None and speech else []
    return VideoAnalysis(p, duration, fps, frames, cuts, motion, regions, audio, audio_rate)


def clip_duration(path: str | Path, limits: MediaLimits | None = None) -> float:
    """The clip's duration in seconds, once it is a readable video of an accepted length (else a MediaError)."""
    p, limits = Path(path), limits or MediaLimits()
    seconds = video_duration(p)  # file, stream and format checks, with MediaErrors naming the file
    if not np.isfinite(seconds) or seconds < MIN_CLIP_SECONDS:
        raise MediaError(p, f"video is {seconds:.3f} s long: a clip to score must last at least {MIN_CLIP_SECONDS} s")
    if seconds > limits.max_video_seconds:
        raise MediaError(p, f"video is {seconds:.1f} s long, over the {limits.max_video_seconds:g} s limit")
    return seconds


def _cuts_and_motion(p: Path) -> tuple[float, int, list[float], np.ndarray]:
    try:
        stream = VideoStreamAv(str(p))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(p, f"cannot be decoded for scene detection ({e})") from e
    fps = float(stream.frame_rate)
    stats = StatsManager()
    manager = SceneManager(stats)
    manager.add_detector(ContentDetector(threshold=CUT_THRESHOLD, min_scene_len=max(1, round(MIN_SHOT_SECONDS * fps))))
    frames = manager.detect_scenes(stream)
    if frames == 0:
        raise MediaError(p, "video contains no frames")
    scenes = manager.get_scene_list()
    cuts = [start.frame_num / fps for start, _ in scenes[1:]]
    motion = np.zeros(frames, dtype=np.float32)
    for i in range(1, frames):
        (value,) = stats.get_metrics(i, [ContentDetector.FRAME_SCORE_KEY])
        motion[i] = value or 0.0
    return fps, frames, cuts, motion
