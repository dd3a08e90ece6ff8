"""Melody from stems: remove drums and bass (Demucs) before MusicGen-Melody's chroma.

MusicGen-Melody was trained on the chroma of the mix without drums and bass: audiocraft's ChromaStemConditioner runs
Demucs (htdemucs) and keeps its 'vocals' and 'other' stems. From a full mix, bass and kick tend to win the chroma
argmax. This module does the same with the `demucs` package (4.1, which loads its weights from the Hugging Face Hub
as safetensors and needs no torchaudio). `demucs` is optional: without it the chroma comes from the full mix and
load_separator says so in a note the decoder passes on to the reply.

A separator source is a Demucs model name ('htdemucs', fetched from the Hub like every other model), a local folder
in the Hub layout (NAME.yaml listing its models, one SIG.safetensors per model), or TINY, the tiny random HTDemucs
below (tests). Random-init decoders get no trained separator, so they take the full mix and say so.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch

log = logging.getLogger(__name__)

MELODY_STEMS = ("vocals", "other")  # what audiocraft's ChromaStemConditioner keeps
INSTALL_HINT = "pip install demucs==4.1.0"
TINY = "tiny-random-htdemucs"
# A random HTDemucs small enough for tests and the tiny profile (the real one is channels 48, depth 4, nfft 4096,
# 5 transformer layers at 44.1 kHz), in the same class and source order as htdemucs.
TINY_DEMUCS_ARCH: dict[str, Any] = {
    "sources": ["drums", "bass", "other", "vocals"], "audio_channels": 2, "channels": 4, "depth": 2, "nfft": 256,
    "t_layers": 1, "t_heads": 2, "t_hidden_scale": 1.0, "samplerate": 8000, "segment": 2, "dconv_comp": 2,
    "t_cape_augment": False,
}


def demucs_installed() -> bool:
    """Whether the optional `demucs` package can be imported."""
    return importlib.util.find_spec("demucs") is not None


class StemSeparator:
    """Any Demucs-API model (sources, samplerate, audio_channels, segment; forward (B, C, T) -> (B, S, C, T)) that
    returns the melodic part of a mono track: the sum of its MELODY_STEMS."""

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        missing = [stem for stem in MELODY_STEMS if stem not in model.sources]
        if missing:
            raise ValueError(f"separator {name!r} has no {missing} stems (it separates {list(model.sources)})")
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.stems = [model.sources.index(stem) for stem in MELODY_STEMS]

    def melody(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono `wav` at `sample_rate` -> its vocals + other stems, mono, same rate and length."""
        from demucs.apply import apply_model

        model = self.model
        x = wav if sample_rate == model.samplerate else librosa.resample(
            wav, orig_sr=sample_rate, target_sr=model.samplerate)
        mix = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
        mix = mix.expand(1, model.audio_channels, -1).to(next(model.parameters()).device)
        with torch.inference_mode():
            # shifts=0: the random time shifts of the default would make a seeded generation irreproducible
            stems = apply_model(model, mix, shifts=0, split=True, overlap=0.25)
        out = stems[0, self.stems].sum(dim=0).mean(dim=0).float().cpu().numpy()
        if sample_rate != model.samplerate:
            out = librosa.resample(out, orig_sr=model.samplerate, target_sr=sample_rate)
        out = out[: len(wav)]
        return np.pad(out, (0, len(wav) - len(out))).astype(np.float32)


def _load_folder(folder: Path) -> torch.nn.Module:
    """A Demucs bag saved in the Hub layout (as demucs.hf.get_hf_model reads it), from a local folder."""
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model

    bags = sorted(folder.glob("*.yaml"))
    if len(bags) != 1:
        raise ValueError(f"separator folder {str(folder)!r} must hold exactly one NAME.yaml, found {len(bags)}")
    bag = yaml.safe_load(bags[0].read_text())
    models = [load_safetensors_model(folder / f"{sig}.safetensors") for sig in bag["models"]]
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))


def load_separator(source: str | None, pretrained: bool,
                   device: str | torch.device | None = None) -> tuple[StemSeparator | None, str | None]:
    """(separator, None), or (None, note) when melody chroma will come from the full mix, saying why.

    pretrained False (a random-init decoder) loads no trained separator; TINY is built in any case.
    """
    full_mix = "melody chroma taken from the full mix (drums and bass included)"
    if source is None:
        return None, f"{full_mix}: no stem separator is configured"
    if not demucs_installed():
        return None, f"{full_mix}: the stem separator needs the optional demucs package ({INSTALL_HINT})"
    if source == TINY:
        from demucs.htdemucs import HTDemucs

        model = HTDemucs(**TINY_DEMUCS_ARCH)
    elif not pretrained:
        return None, f"{full_mix}: a random-init decoder gets no trained stem separator"
    elif Path(source).is_dir():
        model = _load_folder(Path(source))
    else:
        from demucs.hf import get_hf_model

        try:
            model = get_hf_model(source)
        except OSError as error:  # offline without a cached copy, or no such repository
            log.warning("stem separator %r could not be loaded: %s", source, error)
            return None, f"{full_mix}: the stem separator {source!r} could not be loaded ({type(error).__name__})"
    return StemSeparator(model.to(device or "cpu"), source), None
