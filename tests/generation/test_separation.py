"""Melody from stems: Demucs (tiny random HTDemucs, and a frequency-split stand-in with the same API) before chroma."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import generation.separation as separation
from checkpoints.sources import TINY_TOKENIZER
from generation.chroma import PITCH_CLASSES, chroma_features
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, EditSource
from generation.musicgen import STREAM, MusicGenDecoder
from generation.separation import INSTALL_HINT, TINY, TINY_DEMUCS_ARCH, StemSeparator, load_separator
from mumu.presets import TINY_MUSICGEN_MELODY_ARCH as MELODY_ARCH

SR = 8000


class SplitByFrequency(torch.nn.Module):
    """A stand-in with Demucs' model API whose 'bass' is everything under 250 Hz and 'other' the rest (exact FFT
    masks), so what the separator keeps is known."""

    samplerate = SR
    audio_channels = 2
    segment = 4.0

    def __init__(self) -> None:
        super().__init__()
        self.sources = ["drums", "bass", "other", "vocals"]
        self.unused = torch.nn.Parameter(torch.zeros(1))  # apply_model reads the device off a parameter

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(mix, dim=-1)
        low = torch.fft.rfftfreq(mix.shape[-1], 1 / self.samplerate) < 250
        bass = torch.fft.irfft(spectrum * low, n=mix.shape[-1], dim=-1)
        zeros = torch.zeros_like(mix)
        return torch.stack([zeros, bass, mix - bass, zeros], dim=1)


def bass_and_melody(seconds: float = 3.0) -> np.ndarray:
    """A loud bass C2 under a quieter A4 melody: the full mix's chroma says C, the melody is A."""
    t = np.arange(round(seconds * SR)) / SR
    return (0.6 * np.sin(2 * np.pi * 65.41 * t) + 0.15 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def pitch_classes(wav: np.ndarray) -> set[str]:
    return {PITCH_CLASSES[i] for i in chroma_features(wav, SR)[1:-1].argmax(axis=1)}


def test_the_kept_stems_carry_the_melody_not_the_bass():
    mix = bass_and_melody()
    assert pitch_classes(mix) == {"C"}  # from the full mix the bass wins the argmax
    melody = StemSeparator(SplitByFrequency(), "split").melody(mix, SR)
    assert melody.shape == mix.shape and pitch_classes(melody) == {"A"}
    stereo_rate = StemSeparator(SplitByFrequency(), "split").melody(
        np.repeat(mix, 2)[: 2 * len(mix)], 2 * SR)  # resampled to the model's rate and back
    assert stereo_rate.shape == (2 * len(mix),)


def test_melody_decoder_conditions_on_the_separated_melody(monkeypatch):
    torch.manual_seed(0)
    cfg = DecoderConfig(kind="musicgen_melody", tokenizer=TINY_TOKENIZER, arch=MELODY_ARCH)
    decoder = MusicGenDecoder.from_config(cfg)
    assert decoder.separator is None and "random-init" in decoder.separator_note
    decoder.separator = StemSeparator(SplitByFrequency(), "split")
    seen = []
    chroma = decoder._chroma
    monkeypatch.setattr(decoder, "_chroma", lambda wav, start: seen.append(wav) or chroma(wav, start))
    cond = Conditioning(embeds={STREAM: torch.randn(1, 4, 32)})
    out = decoder.generate(cond, SamplingSettings(duration=0.3), EditSource(bass_and_melody(), SR, "melody"))
    assert pitch_classes(seen[0]) == {"A"}
    assert out.info["melody_from"] == "vocals+other stems (split)" and "notes" not in out.info


def test_tiny_separator_is_deterministic_and_loads_from_a_hub_layout_folder(tmp_path):
    torch.manual_seed(0)
    tiny, note = load_separator(TINY, pretrained=False)
    assert note is None and tiny.model.sources == TINY_DEMUCS_ARCH["sources"]
    wav = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    first = tiny.melody(wav, SR)
    np.testing.assert_array_equal(first, tiny.melody(wav, SR))
    # the layout demucs.hf reads from the Hub: NAME.yaml + one SIG.safetensors with class and arguments as metadata
    save_file(tiny.model.state_dict(), tmp_path / "tiny1234.safetensors", metadata={
        "klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(TINY_DEMUCS_ARCH)})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"models": ["tiny1234"]}))
    loaded, _ = load_separator(str(tmp_path), pretrained=True)
    np.testing.assert_allclose(loaded.melody(wav, SR), first, atol=1e-6)


def test_without_demucs_the_full_mix_is_used_and_said(monkeypatch):
    monkeypatch.setattr(separation, "demucs_installed", lambda: False)
    torch.manual_seed(0)
    decoder = MusicGenDecoder.from_config(
        DecoderConfig(kind="musicgen_melody", tokenizer=TINY_TOKENIZER, arch=MELODY_ARCH, separator=TINY))
    assert decoder.separator is None
    cond = Conditioning(embeds={STREAM: torch.randn(1, 4, 32)})
    out = decoder.generate(cond, SamplingSettings(duration=0.2), EditSource(bass_and_melody(1.0), SR, "melody"))
    assert out.info["melody_from"] == "full mix" and INSTALL_HINT in out.info["notes"][0]
    assert "notes" not in decoder.generate(cond, SamplingSettings(duration=0.2)).info  # no melody, nothing to say
    off = MusicGenDecoder.from_config(DecoderConfig(kind="musicgen_melody", arch=MELODY_ARCH, separator=None))
    assert off.separator is None and "no stem separator" in off.separator_note
    monkeypatch.setattr(separation, "demucs_installed", lambda: True)
    import demucs.hf

    def offline(name):
        raise FileNotFoundError(f"no cached copy of {name} and no network")  # what the Hub client raises offline

    monkeypatch.setattr(demucs.hf, "get_hf_model", offline)
    unreachable, note = load_separator("htdemucs", pretrained=True)
    assert unreachable is None and "'htdemucs' could not be loaded" in note


def test_a_configured_tiny_separator_runs_inside_the_decoder():
    torch.manual_seed(0)
    decoder = MusicGenDecoder.from_config(
        DecoderConfig(kind="musicgen_melody", tokenizer=TINY_TOKENIZER, arch=MELODY_ARCH, separator=TINY))
    cond = Conditioning(embeds={STREAM: torch.randn(1, 4, 32)})
    out = decoder.generate(cond, SamplingSettings(duration=0.2), EditSource(bass_and_melody(1.0), SR, "melody"))
    assert out.info["melody_from"] == f"vocals+other stems ({TINY})"


def test_a_separator_without_melodic_stems_is_refused():
    model = SplitByFrequency()
    model.sources = ["drums", "bass", "rest", "voice"]
    with pytest.raises(ValueError, match=r"no \['vocals', 'other'\] stems"):
        StemSeparator(model, "odd")
