"""Levelling for delivery, measured on signals made here: gain cap, true peaks (checked by an independent band-limited
interpolation), loudness on target, the limiting cap, release time, and the whole chain (levelling -> PCM file ->
48 kHz AAC mux) never reaching full scale."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, resample, sosfiltfilt

from demo.make_examples import write_clip
from media.audio_out import write_audio
from media.levelling import Levelling, level, limit_true_peak, loudness, true_peak_dbtp
from media.mux import AAC_RATE, mux_music

SR = 32_000


def fft_true_peak(x: np.ndarray) -> float:
    """dBTP by ideal band-limited 4x interpolation (FFT), zero-padded so the wrap-around adds no jump."""
    padded = np.pad(np.atleast_2d(x).astype(np.float64), ((0, 0), (SR // 10, SR // 10)))
    return 20 * math.log10(np.abs(resample(padded, padded.shape[-1] * 4, axis=-1)).max())


def bright_loop(seconds: float = 4.0, sr: int = SR, level_scale: float = 1.0) -> np.ndarray:
    """Dense and bright: a saw lead with every partial up to 0.45 fs, band-passed hi-hats, a kick and a bass."""
    t = np.arange(round(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    lead = sum(np.sin(2 * np.pi * 660 * k * t) / k for k in range(1, int(0.45 * sr / 660) + 1))
    hats = sosfiltfilt(butter(8, [6000, 0.45 * sr], btype="band", fs=sr, output="sos"), rng.standard_normal(len(t)))
    hats *= np.exp(-(t % 0.125) * 60)
    kick = np.sin(2 * np.pi * 50 * t) * np.exp(-(t % 0.5) * 10)
    bass = sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 8))
    return (level_scale * (0.5 * lead + 1.2 * hats + kick + 0.3 * bass)).astype(np.float32)


def mellow(seconds: float = 4.0, lufs: float = -30.0) -> np.ndarray:
    """Soft chords with a low crest factor, scaled to `lufs`: reaching -14 LUFS needs no heavy limiting."""
    t = np.arange(round(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    x = x.astype(np.float32)
    return (x * 10 ** ((lufs - loudness(x, SR)) / 20)).astype(np.float32)


def test_independent_meter_agrees_with_the_levelling_meter() -> None:
    x = bright_loop()
    assert true_peak_dbtp(x) == pytest.approx(fft_true_peak(x), abs=0.05)
    assert true_peak_dbtp(x) > 20 * math.log10(np.abs(x).max()) + 0.1  # the loop has real inter-sample overs


def test_gain_is_capped_for_near_silence() -> None:
    hiss = (np.random.default_rng(1).standard_normal(5 * SR) * 10 ** (-62 / 20)).astype(np.float32)
    before = loudness(hiss, SR)
    out, report = level(hiss, SR)
    assert loudness(out, SR) == pytest.approx(before + 20.0, abs=0.05)  # +20 dB, not the +45 dB the target asks
    assert report.gain_db == pytest.approx(20.0) and not report.reached and report.held_back_by == "gain cap"
    assert "-14 LUFS" in report.note() and "+20.0 dB" in report.note()
    out, report = level(hiss, SR, Levelling(max_gain_db=6.0))
    assert loudness(out, SR) == pytest.approx(before + 6.0, abs=0.05)


@pytest.mark.parametrize("target", [-14.0, -23.0])
@pytest.mark.parametrize("channels", [1, 2])
def test_loudness_on_target_without_heavy_limiting(target: float, channels: int) -> None:
    x = mellow()
    x = x if channels == 1 else np.stack([x, 0.5 * x])
    out, report = level(x, SR, Levelling(target_lufs=target))
    assert loudness(out, SR) == pytest.approx(target, abs=0.1)
    assert report.reached and report.note() is None and report.output_lufs == pytest.approx(loudness(out, SR))
    assert fft_true_peak(out) <= -1.0 + 1e-3


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_true_peak_ceiling_on_a_dense_bright_loop(scale: float) -> None:
    x = bright_loop(level_scale=scale)
    out, report = level(x, SR)
    assert fft_true_peak(out) <= -1.0 + 1e-3
    assert report.true_peak_dbtp == pytest.approx(fft_true_peak(out), abs=0.05)
    assert report.limiting_db <= 3.0 + 0.05  # never more than the limiting cap


def test_target_needing_heavy_limiting_stops_at_the_cap_and_says_so() -> None:
    t = np.arange(4 * SR) / SR
    spiky = (0.02 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    spiky[:: SR // 4] = 0.9  # sparse clicks 30 dB over the tone: -14 LUFS would need ~20 dB of limiting
    out, report = level(spiky, SR)
    assert report.held_back_by == "limiting cap" and not report.reached
    assert report.limiting_db == pytest.approx(3.0, abs=0.1)
    assert loudness(out, SR) < -16.0 and "limiting" in report.note()
    assert fft_true_peak(out) <= -1.0 + 1e-3
    # the clicks, reduced by the cap, sit on the ceiling: expected gain = ceiling + 3 dB - their true peak
    assert report.gain_db == pytest.approx(-1.0 + 3.0 - true_peak_dbtp(spiky), abs=0.1)


def test_release_is_musical() -> None:
    tone = (0.2 * np.sin(2 * np.pi * 100 * np.arange(SR) / SR)).astype(np.float32)
    tone[SR // 4] = 2.0  # one click 9.6 dB over the ceiling
    settings = Levelling(target_lufs=None, release_s=0.1)
    out, reduction = limit_true_peak(tone, SR, settings)
    after = round(0.0525 * SR)  # 52.5 ms after the click, where the 100 Hz tone is at a crest
    sample = SR // 4 + after
    gain_db = 20 * math.log10(out[sample] / tone[sample])
    # 6 dB per 100 ms recovered, from the end of the hold (half the 5 ms look-ahead)
    assert -gain_db == pytest.approx(reduction - 6.0 * (0.0525 - 0.0025) / 0.1, abs=0.05)
    assert reduction == pytest.approx(true_peak_dbtp(tone) + 1.0, abs=0.1)
    crest = SR // 4 - 320 + 80  # a crest 7.5 ms before the click, before the 5 ms look-ahead starts
    assert out[crest] == pytest.approx(tone[crest], rel=1e-6)
    with pytest.raises(ValueError, match=r"release_s=0.01.*\[0.05, 2\]"):
        Levelling(release_s=0.01)


def test_silence_is_left_alone() -> None:
    out, report = level(np.zeros(SR, np.float32), SR)
    assert not out.any() and report.held_back_by == "silent" and report.input_lufs == -math.inf
    assert "silent" in report.note()


def test_no_sample_reaches_full_scale_anywhere_in_the_chain(tmp_path) -> None:
    overshoot = bright_loop(seconds=3.0, level_scale=2.5)  # a codec's overshoot far past +-1, unclipped
    written = write_audio(tmp_path / "track.wav", overshoot, SR)
    back, _ = sf.read(written.path, dtype="float32")
    assert np.abs(back).max() < 10 ** (-1 / 20) and fft_true_peak(back) <= -1.0 + 1e-3
    assert written.levelling is not None and written.levelling.true_peak_dbtp <= -1.0 + 1e-6
    clip = tmp_path / "clip.mp4"
    write_clip(clip, seconds=3)
    muxed = mux_music(clip, written.waveform, SR, tmp_path / "out.mp4")
    with av.open(str(muxed)) as container:
        assert container.streams.audio[0].sample_rate == AAC_RATE
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)[0]
    assert np.abs(sound).max() < 10 ** (-1 / 20)
    assert fft_true_peak(sound) <= -1.0  # resampled to 48 kHz, then limited, then AAC: still under the ceiling


@pytest.mark.parametrize(("field", "value"), [("ceiling_dbtp", 1.0), ("max_gain_db", -1.0), ("target_lufs", 5.0)])
def test_bad_settings_are_named(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Levelling(**{field: value})
