"""What a track offers the picture: beats, downbeats, tempo, key and a loudness curve (librosa)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np

ANALYSIS_RATE = 22_050
HOP = 256  # 11.6 ms beat resolution at ANALYSIS_RATE
BEATS_PER_BAR = 4
ATTACK_SEARCH = 0.04  # seconds either side of a tracked beat where its attack is looked for
LEVEL_WINDOW, LEVEL_HOP = 0.4, 0.1  # seconds: the loudness curve's window and step
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) key profiles, the usual template for key finding from a chroma average.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass
class MusicAnalysis:
    """Beat-level facts about a track, times in seconds from its start.

    level_times / level_db: RMS level in dBFS over 400 ms windows every 100 ms (the loudness curve).
    """

    duration: float
    tempo: float
    beats: np.ndarray
    downbeats: np.ndarray
    key: str
    level_times: np.ndarray
    level_db: np.ndarray

    def summary(self) -> dict:
        """JSON-ready numbers (times rounded to the millisecond)."""
        return {"tempo": round(self.tempo, 2), "key": self.key, "beats": rounded_ms(self.beats),
                "downbeats": rounded_ms(self.downbeats)}


def rounded_ms(times: Any) -> list[float]:
    """Times in seconds as JSON-ready floats rounded to the millisecond."""
    return [round(float(t), 3) for t in times]


def analyze_music(wav: np.ndarray, sr: int) -> MusicAnalysis:
    """Analyse a mono (samples,) or multichannel (channels, samples) waveform."""
    x = np.asarray(wav, dtype=np.float32)
    x = x if x.ndim == 1 else x.mean(axis=0)
    if len(x) == 0 or not np.isfinite(x).all():
        raise ValueError("music must be a non-empty waveform of finite samples")
    y = librosa.resample(x, orig_sr=sr, target_sr=ANALYSIS_RATE) if sr != ANALYSIS_RATE else x
    onset = librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=HOP)
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=HOP)
    frames = _whole_grid(np.asarray(frames, dtype=int), len(onset))
    beats = _on_attacks(librosa.frames_to_time(frames, sr=ANALYSIS_RATE, hop_length=HOP), y, len(x) / sr)
    tempo = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 1 else 0.0
    times, level = _level_curve(x, sr)
    return MusicAnalysis(len(x) / sr, tempo, beats, _downbeats(y, frames, beats), _key(y), times, level)


def _whole_grid(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """The beat grid carried at its median period to both ends of the track.

    The tracker drops beats near the edges (its trimming of weak beats), so a short loop or an opening downbeat
    would be missing; the grid goes on where the tracker stopped, and _on_attacks then finds each beat's attack.
    """
    if len(frames) < 2:
        return frames
    period = float(np.median(np.diff(frames)))
    before = frames[0] - period * np.arange(1, int(frames[0] // period) + 1)
    # A beat due within a quarter period past the end is the bar line the track ends on (kept, at the end).
    after = frames[-1] + period * np.arange(1, int((n_frames - frames[-1]) / period + 0.25) + 1)
    return np.concatenate([np.round(before[::-1]), frames, np.round(after)]).astype(int)


def _on_attacks(beats: np.ndarray, y: np.ndarray, duration: float) -> np.ndarray:
    """Each beat moved to the steepest energy rise within ATTACK_SEARCH of it, at 2.9 ms resolution.

    The tracker's beats sit on onset-envelope frames (11.6 ms apart, and the spectral flux peaks a frame or two
    into an attack); the attack itself is where the short-time energy rises fastest. A beat too near the end to have
    its attack in the track (the bar line it ends on) stays where the grid puts it, at most at the end.
    """
    hop = 64
    energy = np.square(y[: len(y) // hop * hop]).reshape(-1, hop).mean(axis=1)
    rise = np.diff(energy, prepend=0.0)
    reach = round(ATTACK_SEARCH * ANALYSIS_RATE / hop)
    moved = []
    for t in beats:
        if t > duration - ATTACK_SEARCH:
            moved.append(min(t, duration))
            continue
        centre = round(t * ANALYSIS_RATE / hop)
        lo = max(0, centre - reach)
        window = rise[lo : centre + reach + 1]
        moved.append((lo + int(np.argmax(window))) * hop / ANALYSIS_RATE if len(window) else t)
    return np.array(moved)


def _downbeats(y: np.ndarray, frames: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Every BEATS_PER_BAR-th beat, starting at the phase whose beats carry the most low-band onset energy.

    librosa tracks beats but not bars, so this assumes 4/4 and finds the bar phase from the accents: bass and kick
    mark the one in most popular music. A heuristic; the hit points and BHS show the user how well it landed.
    """
    if len(beats) < BEATS_PER_BAR:
        return beats[:1]
    mel = librosa.feature.melspectrogram(y=y, sr=ANALYSIS_RATE, hop_length=HOP, n_mels=32, fmax=300.0)
    low = mel.sum(axis=0)  # bass power per frame
    # A beat's accent: the most bass power in the 50 ms from its attack.
    reach = round(0.05 * ANALYSIS_RATE / HOP)
    accent = np.array([low[f : f + reach + 1].max() for f in np.minimum(frames, len(low) - 1)])
    phase = int(np.argmax([accent[p::BEATS_PER_BAR].mean() for p in range(BEATS_PER_BAR)]))
    return beats[phase::BEATS_PER_BAR]


def _key(y: np.ndarray) -> str:
    """The major or minor key whose Krumhansl-Kessler profile best correlates with the mean chroma."""
    chroma = librosa.feature.chroma_stft(y=y, sr=ANALYSIS_RATE, hop_length=2048, tuning=0.0).mean(axis=1)
    if not np.any(chroma):
        return "unknown"
    scores = [(np.corrcoef(np.roll(profile, tonic), chroma)[0, 1], f"{KEYS[tonic]} {mode}")
              for mode, profile in (("major", _MAJOR), ("minor", _MINOR)) for tonic in range(12)]
    return max(scores)[1]


def _level_curve(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    frame, hop = round(LEVEL_WINDOW * sr), round(LEVEL_HOP * sr)
    rms = librosa.feature.rms(y=x, frame_length=frame, hop_length=hop, center=True)[0]
    return librosa.frames_to_time(np.arange(len(rms)), sr=sr, hop_length=hop), 20 * np.log10(np.maximum(rms, 1e-6))
