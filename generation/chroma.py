"""Melody conditioning for MusicGen-Melody: the chroma MusicgenMelodyFeatureExtractor computes, without torchaudio.

The extractor (transformers 5.23) needs torchaudio only for its spectrogram, so this redoes it with librosa:
power STFT (periodic Hann, win = n_fft, center with reflect padding, scaled by 1/sum(window^2) as torchaudio's
normalized=True does), librosa's chroma filter bank with tuning 0 (the same matrix transformers' chroma_filter_bank
builds), each frame divided by its max (eps 1e-6), then one-hot at the argmax. Inputs shorter than n_fft are zero
padded to n_fft first, split evenly as the extractor does.
"""

from __future__ import annotations

import librosa
import numpy as np

# MusicgenMelodyFeatureExtractor defaults, the values facebook/musicgen-melody ships with.
SAMPLING_RATE = 32000
N_FFT = 16384
HOP_LENGTH = 4096
NUM_CHROMA = 12
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def stft_params(sample_rate: int) -> tuple[int, int]:
    """n_fft and hop for a rate: the extractor's 16384/4096 at 32 kHz, scaled so frames keep the same duration."""
    scale = sample_rate / SAMPLING_RATE
    return max(16, round(N_FFT * scale)), max(1, round(HOP_LENGTH * scale))


def chroma_features(
    wav: np.ndarray,
    sample_rate: int,
    n_fft: int | None = None,
    hop_length: int | None = None,
    num_chroma: int = NUM_CHROMA,
    one_hot: bool = True,
) -> np.ndarray:
    """(frames, num_chroma) float32 chroma of mono audio; frames = 1 + len // hop (C first, like the extractor)."""
    default_fft, default_hop = stft_params(sample_rate)
    n_fft, hop_length = n_fft or default_fft, hop_length or default_hop
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"chroma needs non-empty mono audio, got shape {x.shape}")
    if len(x) < n_fft:
        pad = n_fft - len(x)
        x = np.pad(x, (pad // 2, pad - pad // 2))
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    spec = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=True, pad_mode="reflect"))
    power = spec.astype(np.float64) ** 2 / np.sum(window**2)
    filters = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, tuning=0.0, n_chroma=num_chroma)
    raw = (filters @ power).T  # (frames, chroma)
    norm = raw / np.maximum(np.abs(raw).max(axis=1, keepdims=True), 1e-6)
    if not one_hot:
        return norm.astype(np.float32)
    out = np.zeros_like(norm, dtype=np.float32)
    out[np.arange(len(out)), norm.argmax(axis=1)] = 1.0
    return out
