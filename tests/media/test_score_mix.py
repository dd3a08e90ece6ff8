"""Ducking, levelled mixing and the beat scores, against direct measurements and known answers."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from media.beat_scores import beat_scores
from media.levelling import true_peak_dbtp
from media.score_mix import DuckSettings, duck_gain, mix_score

SR = 48_000
SPEECH = [(1.0, 2.0), (3.0, 3.5)]


def _sine(seconds: float, freq: float = 330.0, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def _inside(regions, n):
    mask = np.zeros(n, bool)
    for a, b in regions:
        mask[round(a * SR) : round(b * SR)] = True
    return mask


def test_duck_gain_is_full_depth_inside_speech_and_unity_away_from_it() -> None:
    settings = DuckSettings(depth_db=12.0, attack=0.2, release=0.4)
    gain = duck_gain(5 * SR, SR, SPEECH, settings)
    inside = _inside(SPEECH, len(gain))
    assert np.allclose(gain[inside], 10 ** (-12 / 20))
    away = ~_inside([(a - 0.2, b + 0.4) for a, b in SPEECH], len(gain))
    assert np.allclose(gain[away], 1.0)
    assert np.abs(np.diff(gain)).max() < 1e-3  # smooth ramps, no steps


@pytest.mark.parametrize("depth", [6.0, 12.0, 20.0])
def test_music_is_at_least_the_depth_quieter_under_speech(depth: float) -> None:
    rng = np.random.default_rng(0)
    voice = np.zeros(5 * SR, np.float32)
    for a, b in SPEECH:
        voice[round(a * SR) : round(b * SR)] = 0.2 * rng.standard_normal(round((b - a) * SR))
    settings = DuckSettings(depth_db=depth)
    out = mix_score(_sine(5.0), voice, SR, SPEECH, settings, -14.0, keep_original=True)
    assert out.ducked
    inside = _inside(SPEECH, len(out.stem))
    away = ~_inside([(a - settings.attack, b + settings.release) for a, b in SPEECH], len(out.stem))
    assert _db(out.stem[away]) - _db(out.stem[inside]) >= depth - 0.01


def test_mix_reaches_the_target_loudness_with_peaks_under_the_ceiling() -> None:
    out = mix_score(_sine(4.0, amp=0.05), None, SR, SPEECH, DuckSettings(), -14.0, keep_original=False)
    assert not out.ducked  # nothing of the clip is kept, so there is no dialogue to make room for
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.mix.astype(np.float64))
    assert measured == pytest.approx(-14.0, abs=0.5)
    assert out.loudness == pytest.approx(measured, abs=0.05)
    assert out.true_peak_db <= -1.0
    assert true_peak_dbtp(out.mix) == pytest.approx(out.true_peak_db)


def test_bad_ducking_is_refused() -> None:
    with pytest.raises(ValueError, match="ducking depth 50"):
        mix_score(_sine(1.0), None, SR, [], DuckSettings(depth_db=50), -14.0, keep_original=False)


def test_beat_scores_known_answers() -> None:
    hits = [1.0, 2.0, 3.0, 4.0]
    beats = np.array([0.98, 2.3, 3.05, 5.0, 9.0])  # 9.0 is past the clip
    scores = beat_scores(hits, beats, duration=6.0, tolerance=0.1)
    assert scores == {"bcs": 4 / 4, "bhs": 2 / 4}
    assert beat_scores([], beats, 6.0) == {"bcs": None, "bhs": None}
    assert beat_scores(hits, np.zeros(0), 6.0) == {"bcs": 0.0, "bhs": 0.0}
