"""Score a video: fit a track to the picture, duck it under the dialogue, deliver the muxed clip, stem and cue sheet.

`score_video` is the whole job for a track file or waveform; `compose_for_video` has the model make the track first
(through a MuMuPipeline chat turn that sees the clip); `fit_for_video` is the fitting alone, as the chat uses it.
The signal work lives in media/ (analysis, fitting, mixing); this module decides the order and the deliverables.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import librosa
import numpy as np

from media.audio_io import load_audio
from media.audio_out import write_audio
from media.beat_scores import beat_scores
from media.edits import LUFS_RANGE
from media.fit_music import FitSettings, Fitted, fit_to_picture
from media.limits import MediaLimits
from media.music_analysis import MusicAnalysis, analyze_music, rounded_ms
from media.mux import AAC_RATE, mux_music
from media.score_mix import DuckSettings, ScoreMix, mix_score
from media.video_analysis import VideoAnalysis, analyze_video, clip_duration

if TYPE_CHECKING:
    from mumu.pipeline import MuMuPipeline

RATE = AAC_RATE  # everything is fitted and mixed at the rate the muxed soundtrack is encoded at
STEM_FORMATS = ("wav", "flac", "mp3")
HitPoints = Literal["auto", "none"] | list[float]


def parse_hit_points(text: str) -> HitPoints:
    """'auto' (the scene cuts), 'none', or comma-separated seconds such as '1.5,4,7.25'."""
    value = text.strip().lower()
    if value in ("auto", "none"):
        return value  # type: ignore[return-value]
    problem = f"hit points {text!r} must be 'auto', 'none' or comma-separated seconds, e.g. 1.5,4,7.25"
    try:
        points = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(problem) from None
    if not points or not all(math.isfinite(p) for p in points):
        raise ValueError(problem)
    return points


@dataclass
class ScoreSettings:
    """What the user controls: hit points, ducking, whether the clip's own audio stays, loudness, stem format."""

    hit_points: HitPoints = "auto"
    duck: DuckSettings = field(default_factory=DuckSettings)
    keep_original_audio: bool = False
    loudness_lufs: float = -14.0
    stem_format: Literal["wav", "flac", "mp3"] = "wav"
    fit: FitSettings = field(default_factory=FitSettings)

    def validate(self) -> ScoreSettings:
        """Raise ValueError naming the first bad setting and what is accepted."""
        if not LUFS_RANGE[0] <= self.loudness_lufs <= LUFS_RANGE[1]:
            raise ValueError(f"loudness {self.loudness_lufs!r} LUFS is out of range: expected {LUFS_RANGE[0]:g} to "
                             f"{LUFS_RANGE[1]:g}")
        if self.stem_format not in STEM_FORMATS:
            raise ValueError(f"stem format {self.stem_format!r} is not one of {', '.join(STEM_FORMATS)}")
        if not (self.hit_points in ("auto", "none") or isinstance(self.hit_points, list)):
            raise ValueError(f"hit points {self.hit_points!r} must be 'auto', 'none' or a list of seconds")
        self.duck.validate()
        self.fit.validate()
        return self


@dataclass
class Scored:
    """A fitted track for a clip, with what was analysed and the alignment scores before and after."""

    clip: VideoAnalysis
    before: MusicAnalysis
    fitted: Fitted
    hit_points: list[float]
    scores: dict[str, dict[str, float | None]]
    seconds: dict[str, float]


@dataclass
class ScoreResult:
    """The delivered files and everything `--json` reports."""

    scored: Scored
    mix: ScoreMix
    video: Path
    stem: Path
    cue_json: Path
    cue_csv: Path

    def report(self) -> dict[str, Any]:
        """One JSON-ready object: the clip, the music before and after fitting, the outputs and the scores."""
        s = self.scored
        tempo_changes = _tempo_changes(s.fitted)
        after = {"tempo_changes": tempo_changes, "tempos": [round(s.before.tempo * r, 2) for r in tempo_changes],
                 "beats": rounded_ms(s.fitted.beats), "downbeats": rounded_ms(s.fitted.downbeats),
                 "hits": {f"{h:.3f}": round(t, 3) for h, t in s.fitted.hits.items()},
                 "missed": rounded_ms(s.fitted.missed), "ending": s.fitted.ending, "loops": s.fitted.loops}
        return {
            "clip": {"duration": round(s.clip.duration, 3), "fps": round(s.clip.fps, 3), "frames": s.clip.frames,
                     "cuts": rounded_ms(s.clip.cuts), "speech": [[round(a, 3), round(b, 3)] for a, b in s.clip.speech]},
            "hit_points": rounded_ms(s.hit_points),
            "music": {"before": s.before.summary(), "after": after},
            "scores": s.scores,
            "mix": {"loudness_lufs": round(self.mix.loudness, 2), "true_peak_db": round(self.mix.true_peak_db, 2),
                    "ducked": self.mix.ducked, "sample_rate": self.mix.sample_rate, "samples": len(self.mix.mix)},
            "outputs": {"video": str(self.video), "stem": str(self.stem), "cue_sheet": str(self.cue_json),
                        "cue_csv": str(self.cue_csv)},
            "seconds": {k: round(v, 3) for k, v in s.seconds.items()},
        }


def _tempo_changes(fitted: Fitted) -> list[float]:
    """Each segment's tempo factor (track seconds per clip second), in order."""
    a = np.array(fitted.anchors)
    return [round(float(r), 4) for r in np.diff(a[:, 1]) / np.diff(a[:, 0])]


def resolve_hit_points(setting: HitPoints, clip: VideoAnalysis) -> list[float]:
    """The hit points to fit to: the scene cuts for 'auto', none for 'none', else the given times (checked)."""
    if setting == "auto":
        return list(clip.cuts)
    if setting == "none":
        return []
    outside = [t for t in setting if not 0.0 < t < clip.duration]
    if outside:
        raise ValueError(f"hit point {outside[0]:g} s is outside the clip '{clip.path.name}' "
                         f"(0 to {clip.duration:.3f} s, ends excluded)")
    return sorted(set(setting))


def fit_for_video(clip: VideoAnalysis, wav: np.ndarray, sr: int, settings: ScoreSettings | None = None) -> Scored:
    """Analyse the track and fit it to `clip` (at RATE, mono)."""
    settings = (settings or ScoreSettings()).validate()
    hits = resolve_hit_points(settings.hit_points, clip)
    x = np.asarray(wav, dtype=np.float32)
    x = x if x.ndim == 1 else x.mean(axis=0)
    if sr != RATE:
        x = librosa.resample(x, orig_sr=sr, target_sr=RATE).astype(np.float32)
    tick = time.perf_counter()
    before = analyze_music(x, RATE)
    analysed = time.perf_counter()
    fitted = fit_to_picture(x, RATE, before, hits, clip.duration, settings.fit)
    done = time.perf_counter()
    scores = {"before": beat_scores(hits, before.downbeats, clip.duration),
              "after": beat_scores(hits, fitted.downbeats, clip.duration)}
    return Scored(clip, before, fitted, hits, scores, {"music_analysis": analysed - tick, "fitting": done - analysed})


def score_video(video: str | Path, music: str | Path | tuple[np.ndarray, int], out: str | Path,
                settings: ScoreSettings | None = None, limits: MediaLimits | None = None) -> ScoreResult:
    """Fit `music` (a track file, or (waveform, rate)) to `video` and write OUT.mp4, its music stem and cue sheet.

    Raises:
        MediaError: the video or track is missing, empty, unreadable, has no video stream, or is outside `limits`.
        ValueError: a setting is out of range, a hit point is outside the clip, or OUT is not an .mp4.
    """
    settings = (settings or ScoreSettings()).validate()
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"cannot write '{out.name}': the scored video is written as .mp4")
    tick = time.perf_counter()
    clip = analyze_video(video, limits, audio_rate=RATE)
    analysed = time.perf_counter() - tick
    wav, sr = (load_audio(music, RATE, limits), RATE) if isinstance(music, str | Path) else music
    scored = fit_for_video(clip, wav, sr, settings)
    scored.seconds["video_analysis"] = analysed
    mix = mix_score(scored.fitted.waveform, clip.audio, RATE, clip.speech, settings.duck, settings.loudness_lufs,
                    settings.keep_original_audio)
    return _deliver(scored, mix, out, settings)


def _deliver(scored: Scored, mix: ScoreMix, out: Path, settings: ScoreSettings) -> ScoreResult:
    tick = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = write_audio(out.with_name(f"{out.stem}.music.{settings.stem_format}"), mix.stem, RATE,
                       loudness_lufs=None, metadata={"source": scored.clip.path.name, "role": "music stem"}).path
    video = mux_music(scored.clip.path, mix.mix, RATE, out)
    scored.seconds["delivery"] = time.perf_counter() - tick
    result = ScoreResult(scored, mix, video, stem, out.with_name(f"{out.stem}.cues.json"),
                         out.with_name(f"{out.stem}.cues.csv"))
    result.cue_json.write_text(json.dumps(result.report(), indent=2))
    _write_csv(result)
    return result


def _write_csv(result: ScoreResult) -> None:
    s = result.scored
    rows = [("hit_point", t) for t in s.hit_points] + [("cut", t) for t in s.clip.cuts]
    rows += [("downbeat_before", t) for t in s.before.downbeats] + [("beat_before", t) for t in s.before.beats]
    rows += [("downbeat_after", t) for t in s.fitted.downbeats] + [("beat_after", t) for t in s.fitted.beats]
    rows += [(kind, t) for a, b in s.clip.speech for kind, t in (("speech_start", a), ("speech_end", b))]
    with result.cue_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "seconds"])
        writer.writerows((kind, f"{float(t):.3f}") for kind, t in sorted(rows, key=lambda r: (r[1], r[0])))


def compose_for_video(pipeline: MuMuPipeline, video: str | Path, prompt: str, seed: int = 0) -> tuple[np.ndarray, int]:
    """The model's music for `video`: one chat turn that sees the clip and is asked for music to fill it.

    It asks for as much as fitting may use (the clip slowed by the largest tempo change, plus the longest ending
    tail), so the track needs no looping; MusicGen makes lengths past its 30 s window by windowed continuation, up
    to the decoder's maximum, and fitting loops whole bars beyond that. The track comes back unfitted: the caller
    fits it with its own settings. The turn's conversation is a throwaway one: its folder (the track's file) is
    deleted once the track is read.
    """
    from generation.config import SamplingSettings
    from mumu.pipeline import ChatOptions

    fit = FitSettings()
    wanted = clip_duration(video, pipeline.config.limits) * (1 + fit.max_tempo_change) + fit.tail[1]
    seconds = min(wanted, pipeline.config.decoder.max_duration)
    options = ChatOptions(music="always", fit_video=False,
                          sampling=SamplingSettings(duration=round(seconds, 3), seed=seed))
    conv = pipeline.new_conversation()
    try:
        reply = pipeline.chat(conv, prompt, video=video, options=options)
        if reply.audio is None:
            raise ValueError("the model made no music for this prompt")
        return load_audio(reply.audio, RATE, pipeline.config.limits), RATE
    finally:
        shutil.rmtree(conv.out_dir, ignore_errors=True)
