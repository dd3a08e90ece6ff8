"""Fitting a known-tempo track to known hit points: downbeats land, lengths are exact, seams and ends are clean."""

from __future__ import annotations

import numpy as np
import pytest

from bench.video_scoring import SR, click_track, downbeat_onsets
from media.fit_music import FitSettings, fit_to_picture, loop_bars
from media.music_analysis import analyze_music

BPM = 120.0  # a bar every 2 s
HITS = [2.12, 4.04, 5.0]  # 2.12 and 4.04 are within 8 % of a bar from the previous anchor; 5.0 is not


@pytest.fixture(scope="module")
def track() -> tuple[np.ndarray, np.ndarray]:
    return click_track(BPM, 9.0)


@pytest.fixture(scope="module")
def analysis(track):
    return analyze_music(track[0], SR)


def test_analysis_finds_tempo_and_downbeats(track, analysis) -> None:
    assert analysis.tempo == pytest.approx(BPM, rel=0.01)
    truth = track[1]
    assert len(analysis.downbeats) >= 3
    assert all(np.abs(truth - d).min() < 0.015 for d in analysis.downbeats)
    assert analysis.key.endswith(("major", "minor"))
    assert len(analysis.level_times) == len(analysis.level_db)


def test_downbeats_land_on_reachable_hits_and_length_is_exact(track, analysis) -> None:
    duration = 7.0
    fitted = fit_to_picture(track[0], SR, analysis, HITS, duration)
    assert len(fitted.waveform) == round(duration * SR)
    assert sorted(fitted.hits) == [2.12, 4.04]
    assert fitted.missed == [5.0]
    onsets = downbeat_onsets(fitted.waveform, SR)  # measured in the output, not taken from the map
    for hit in fitted.hits:
        assert np.abs(onsets - hit).min() <= 0.05, (hit, onsets)
    rates = np.diff(np.array(fitted.anchors), axis=0)
    assert np.all(np.abs(rates[:, 1] / rates[:, 0] - 1) <= 0.08 + 1e-9)
    # A musical ending: a downbeat, then a tail that fades to silence on the last sample.
    assert fitted.ending == "downbeat"
    assert fitted.waveform[-1] == 0.0
    tail_start = fitted.anchors[-2][0]
    assert 0.5 <= duration - tail_start <= 4.0
    assert np.abs(onsets - tail_start).min() <= 0.05


def test_no_hit_points_still_fits_length_and_ends_on_a_downbeat(track, analysis) -> None:
    fitted = fit_to_picture(track[0], SR, analysis, [], 5.3)
    assert len(fitted.waveform) == round(5.3 * SR)
    assert fitted.hits == {} and fitted.missed == []
    assert fitted.ending == "downbeat"


def test_bar_loop_seam_is_click_free_and_keeps_the_bar_grid(track, analysis) -> None:
    wav = track[0]
    looped, _, downbeats, loops = loop_bars(wav, SR, analysis, 30.0)
    assert len(looped) >= 30.0 * SR and loops >= 1
    assert np.abs(np.diff(looped)).max() <= np.abs(np.diff(wav)).max() + 1e-6
    # The looped downbeats stay a bar apart, and a thump starts at each of them.
    assert np.allclose(np.diff(downbeats), 2.0, atol=0.02)
    onsets = downbeat_onsets(looped, SR)
    assert all(np.abs(onsets - d).min() <= 0.02 for d in downbeats)


def test_settings_are_checked(track, analysis) -> None:
    with pytest.raises(ValueError, match="max_tempo_change"):
        fit_to_picture(track[0], SR, analysis, [], 5.0, FitSettings(max_tempo_change=0.2))
    with pytest.raises(ValueError, match="mono"):
        fit_to_picture(np.stack([track[0]] * 2), SR, analysis, [], 5.0)
