"""Exact edits measured on synthetic signals: durations, pitch, seams, loudness, sample positions, plan order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from media.edits import (
    EditPlan,
    change_tempo,
    fade,
    gain,
    loop,
    mix,
    parse_trim,
    shift_pitch,
    trim,
)
from media.levelling import loudness

SR = 22_050


def tone(freq: float = 440.0, seconds: float = 2.0, phase: float = 0.3, harmonics: int = 1) -> np.ndarray:
    """A sine (or a harmonic tone with 1/k partials) at modest level."""
    t = np.arange(round(seconds * SR)) / SR
    wave = sum(0.4 / k * np.sin(2 * np.pi * freq * k * t + phase * k) for k in range(1, harmonics + 1))
    return np.asarray(wave, dtype=np.float32)


def noise(seconds: float = 2.0, scale: float = 0.2, seed: int = 0) -> np.ndarray:
    """White Gaussian noise."""
    return (scale * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def f0(wav: np.ndarray, expected: float) -> float:
    """Strongest spectral peak within +-20% of `expected`, refined by parabolic interpolation on log magnitude."""
    middle = wav[len(wav) // 4 : 3 * len(wav) // 4].astype(np.float64)
    size = 8 * len(middle)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), size))
    freqs = np.fft.rfftfreq(size, 1 / SR)
    band = (freqs > 0.8 * expected) & (freqs < 1.2 * expected)
    i = int(np.argmax(np.where(band, spectrum, 0.0)))
    a, b, c = np.log(spectrum[i - 1 : i + 2])
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * SR / size


def max_step(wav: np.ndarray) -> float:
    """Largest sample-to-sample jump."""
    return float(np.abs(np.diff(wav)).max())


SIGNALS = {"sine440": (tone(), 440.0), "harmonic220": (tone(220.0, harmonics=6), 220.0)}


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("rate", [1.25, 0.8, 2.0])
def test_tempo_changes_duration_not_pitch(name: str, rate: float) -> None:
    wav, freq = SIGNALS[name]
    out = change_tempo(wav, SR, rate)
    assert out.dtype == np.float32
    assert abs(len(out) / (len(wav) / rate) - 1) < 0.02
    assert abs(f0(out, freq) / freq - 1) < 0.01


def test_tempo_keeps_channels_and_level() -> None:
    stereo = np.stack([tone(), tone(330.0)])
    out = change_tempo(stereo, SR, 1.25)
    assert out.shape == (2, round(stereo.shape[1] / 1.25))
    middle = out[:, SR // 4 : -SR // 4]
    assert np.allclose(np.sqrt((middle**2).mean(axis=1)), np.sqrt((stereo**2).mean(axis=1)), rtol=0.05)
    assert np.array_equal(change_tempo(stereo, SR, 1.0), stereo)
    with pytest.raises(ValueError, match=r"rate=5.*\[0.25, 4\]"):
        change_tempo(stereo, SR, 5.0)


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("semitones", [2, -3, 7])
def test_pitch_shift_scales_f0_keeps_duration(name: str, semitones: int) -> None:
    wav, freq = SIGNALS[name]
    out = shift_pitch(wav, SR, semitones)
    expected = freq * 2 ** (semitones / 12)
    assert abs(len(out) / len(wav) - 1) < 0.01
    assert abs(f0(out, expected) / expected - 1) < 0.01


def test_pitch_shift_range() -> None:
    with pytest.raises(ValueError, match=r"semitones=30.*\[-24, 24\]"):
        shift_pitch(tone(), SR, 30)


@pytest.mark.parametrize(
    "wav",
    [tone(440.0, 1.2371, phase=0.7), tone(55.0, 1.2371, phase=2.0), tone(110.0, 1.3, harmonics=5), noise(1.1)],
    ids=["sine440", "sine55", "harmonic110", "noise"],
)
def test_loop_seams_do_not_click(wav: np.ndarray) -> None:
    out = loop(wav, SR, 4)
    assert max_step(out) <= max_step(wav) + 1e-6
    period = (len(out) - len(wav)) // 3
    assert len(out) == 3 * period + len(wav)
    assert len(wav) - round(0.03 * SR) <= period <= len(wav) - round(0.01 * SR)
    # The first repetition keeps the original start and the last one the original end.
    assert np.array_equal(out[:period], wav[:period])
    assert np.array_equal(out[-(len(wav) - round(0.01 * SR)) :], wav[round(0.01 * SR) :])


def test_plain_tiling_would_click() -> None:
    wav = tone(55.0, 1.2371, phase=2.0)
    assert max_step(np.tile(wav, 2)) > 5 * max_step(wav)


def test_loop_options() -> None:
    wav = tone(seconds=0.5)
    assert np.array_equal(loop(wav, SR, 1), wav)
    assert loop(np.stack([wav, wav]), SR, 3).shape[0] == 2
    assert len(loop(wav, SR, 3, search=0.0)) == 3 * len(wav) - 2 * round(0.01 * SR)
    with pytest.raises(ValueError, match=r"loop=65.*\[1, 64\]"):
        loop(wav, SR, 65)
    with pytest.raises(ValueError, match="twice as long"):
        loop(wav[:100], SR, 2)


def test_short_clips_are_measured() -> None:
    short = tone(seconds=0.05)
    assert loudness(short, SR) == pytest.approx(loudness(tone(), SR), abs=0.5)


def test_gain() -> None:
    assert np.allclose(gain(tone(), 20 * math.log10(2)), 2 * tone(), atol=1e-6)


def test_trim_exact_positions() -> None:
    wav = np.arange(4 * SR, dtype=np.float32)
    assert np.array_equal(trim(wav, SR, 0.5, 1.0), wav[SR // 2 : SR])
    assert np.array_equal(trim(wav, SR, -1.0), wav[3 * SR :])
    assert np.array_equal(trim(wav, SR, 1.0, -2.0), wav[SR : 2 * SR])
    assert np.array_equal(trim(wav, SR, 0.0, None), wav)
    assert trim(np.stack([wav, wav]), SR, 1.0, 2.0).shape == (2, SR)
    for start, end in [(3.0, 5.0), (-5.0, None), (2.0, 1.0), (1.0, 1.0)]:
        with pytest.raises(ValueError, match=r"4\.000 s clip"):
            trim(wav, SR, start, end)


def test_fade_exact_positions() -> None:
    wav = np.ones(SR, dtype=np.float32)
    out = fade(wav, SR, fade_in=0.1, fade_out=0.2)
    n_in, n_out = round(0.1 * SR), round(0.2 * SR)
    assert out[0] == 0.0 and out[-1] == 0.0
    assert np.all(np.diff(out[:n_in]) > 0) and np.all(np.diff(out[-n_out:]) < 0)
    assert np.array_equal(out[n_in : SR - n_out], wav[n_in : SR - n_out])
    assert out[n_in // 2] == pytest.approx(math.sqrt(0.5), abs=1e-3)  # equal power: -3 dB halfway
    with pytest.raises(ValueError, match="fade_in"):
        fade(wav, SR, fade_in=2.0)


def test_mix_aligns_resamples_and_avoids_clipping() -> None:
    base = np.zeros(SR, dtype=np.float32)
    click = np.zeros(100, dtype=np.float32)
    click[0] = 0.5
    out = mix(base, SR, click, SR, offset=0.25)
    assert len(out) == SR and int(np.argmax(out)) == round(0.25 * SR)
    layer = tone(440.0, 2.0)  # longer than the base: cut to the base length
    out = mix(base, SR, np.interp(np.arange(2 * 32_000) / 32_000, np.arange(len(layer)) / SR, layer), 32_000)
    assert len(out) == SR and abs(f0(out, 440.0) - 440.0) < 2.0
    loud = mix(np.full(SR, 0.8, np.float32), SR, np.full(SR, 0.8, np.float32), SR, layer_db=6.0)
    assert np.abs(loud).max() <= 1.0
    assert mix(np.stack([base, base]), SR, click, SR).shape == (2, SR)
    with pytest.raises(ValueError, match="offset"):
        mix(base, SR, click, SR, offset=2.0)


def test_plan_order_trim_before_tempo_and_fade_after_loop() -> None:
    wav = tone(seconds=4.0)
    out = EditPlan(trim_start=1.0, trim_end=3.0, tempo=2.0).apply(wav, SR)
    assert len(out) == SR  # 2 s kept, then played twice as fast (tempo first would have left 1 s to trim 1..3 from)
    looped = EditPlan(loop=3, fade_out=0.1).apply(tone(seconds=1.0), SR)
    assert looped[-1] == 0.0 and len(looped) > 2.9 * SR
    quiet = EditPlan(gain_db=-15.0, loudness_lufs=-16.0).apply(wav, SR)
    assert loudness(quiet, SR) == pytest.approx(-16.0, abs=0.1)  # loudness is last, so it wins over gain
    shifted = EditPlan(tempo=1.25, semitones=2).apply(wav, SR)
    assert abs(f0(shifted, 440 * 2 ** (2 / 12)) / (440 * 2 ** (2 / 12)) - 1) < 0.01
    assert len(shifted) == round(len(wav) / 1.25)
    assert np.array_equal(EditPlan().apply(wav, SR), wav)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tempo": 5.0}, r"tempo=5.0.*\[0.25, 4\]"),
        ({"tempo": float("nan")}, "tempo"),
        ({"semitones": -25}, r"semitones=-25.*\[-24, 24\]"),
        ({"loop": 0}, r"loop=0.*\[1, 64\]"),
        ({"loop": 2.5}, "loop=2.5 must be an integer"),
        ({"fade_in": -1.0}, "fade_in"),
        ({"gain_db": 40.0}, "gain_db"),
        ({"loudness_lufs": 3.0}, "loudness_lufs"),
        ({"trim_end": float("inf")}, "trim_end"),
    ],
)
def test_plan_range_errors_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EditPlan(**options)


def test_plan_errors_at_apply_time() -> None:
    with pytest.raises(ValueError, match="fade_out"):
        EditPlan(fade_out=5.0).apply(tone(seconds=1.0), SR)
    with pytest.raises(ValueError, match=r"1\.000 s clip"):
        EditPlan(trim_start=2.0).apply(tone(seconds=1.0), SR)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5:", (1.5, None)),
        (":10", (0.0, 10.0)),
        ("2:-1", (2.0, -1.0)),
        ("-5:", (-5.0, None)),
        ("0:05:1:30", (5.0, 90.0)),
        ("1:30:", (90.0, None)),
        ("1:1:30.5", (1.0, 90.5)),
    ],
)
def test_parse_trim(text: str, expected: tuple[float, float | None]) -> None:
    assert parse_trim(text) == expected


@pytest.mark.parametrize(("text", "message"), [("1:30:45", "ambiguous"), ("abc", "START:END"), ("5", "START:END")])
def test_parse_trim_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trim(text)
