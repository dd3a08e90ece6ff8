"""The reference models generation is judged with, each loaded through its library's `from_pretrained`.

- CLAP (transformers ClapModel; default laion/larger_clap_music): one L2-normalised embedding per 10 s window of
  48 kHz audio for FAD-CLAP, and the text-audio cosine (CLAP score) of a prompt and its music.
- MERT (through adapters.mert, transformers' HubertModel; default m-a-p/MERT-v1-95M): the last layer's 75 Hz
  frames, every frame an element of the FAD-MERT set (as fadtk does for its MERT embeddings).
- AST (transformers ASTForAudioClassification; default MIT/ast-finetuned-audioset-10-10-0.4593): AudioSet class
  logits of 16 kHz audio, averaged over 10.24 s windows, for KL.
Each model loads on first use, so a run that needs only some of them never loads the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoTokenizer,
    ClapFeatureExtractor,
    ClapModel,
)

from adapters.config import MusicEncoderConfig
from adapters.mert import MusicEncoder
from checkpoints.sources import resolve_source
from media.audio_io import load_audio
from media.limits import MediaLimits

CLAP_WINDOW_SECONDS = 10.0


@dataclass
class ReferenceModels:
    """Model ids or directories; `embeddings` picks the FAD embedding sets ('clap', 'mert')."""

    clap: str
    mert: str
    tagger: str
    embeddings: tuple[str, ...] = ("clap",)
    device: str = "cpu"
    limits: MediaLimits = field(default_factory=MediaLimits)
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.embeddings) - {"clap", "mert"})
        if unknown or not self.embeddings:
            raise ValueError(f"unknown FAD embeddings {unknown}; choose from clap, mert")

    def _load(self, name: str) -> Any:
        if name not in self._loaded:
            if name == "clap":
                source = resolve_source(self.clap)
                model = ClapModel.from_pretrained(source).to(self.device).eval()
                self._loaded[name] = (model, ClapFeatureExtractor.from_pretrained(source),
                                      AutoTokenizer.from_pretrained(source))
            elif name == "mert":
                cfg = MusicEncoderConfig(source=resolve_source(self.mert), frames_per_step=1)
                self._loaded[name] = MusicEncoder.from_config(cfg, device=self.device)
            else:
                source = resolve_source(self.tagger)
                self._loaded[name] = (ASTForAudioClassification.from_pretrained(source).to(self.device).eval(),
                                      ASTFeatureExtractor.from_pretrained(source))
        return self._loaded[name]

    def _audio(self, path: str | Path, rate: int) -> np.ndarray:
        return load_audio(path, rate, self.limits)

    @torch.no_grad()
    def clap_audio(self, path: str | Path) -> np.ndarray:
        """(windows, d) normalised CLAP audio embeddings of a file."""
        model, extractor, _ = self._load("clap")
        wave = self._audio(path, extractor.sampling_rate)
        step = int(CLAP_WINDOW_SECONDS * extractor.sampling_rate)
        windows = [wave[i:i + step] for i in range(0, max(len(wave), 1), step)]
        inputs = extractor(windows, sampling_rate=extractor.sampling_rate, return_tensors="pt").to(self.device)
        return model.get_audio_features(**inputs).pooler_output.float().cpu().numpy()

    @torch.no_grad()
    def clap_text(self, text: str) -> np.ndarray:
        """(d,) normalised CLAP text embedding."""
        model, _, tokenizer = self._load("clap")
        inputs = tokenizer([text], truncation=True, return_tensors="pt").to(self.device)
        return model.get_text_features(**inputs).pooler_output.float().cpu().numpy()[0]

    def mert_frames(self, path: str | Path) -> np.ndarray:
        """(frames, d) last-layer MERT frames of a file."""
        encoder: MusicEncoder = self._load("mert")
        return encoder(self._audio(path, encoder.cfg.sample_rate))[-1].float().cpu().numpy()

    def embeddings_of(self, path: str | Path) -> dict[str, np.ndarray]:
        """The selected FAD embedding sets of one file."""
        return {name: self.clap_audio(path) if name == "clap" else self.mert_frames(path) for name in self.embeddings}

    @torch.no_grad()
    def tagger_logits(self, path: str | Path) -> np.ndarray:
        """(classes,) AudioSet logits, averaged over the tagger's windows."""
        model, extractor = self._load("tagger")
        wave = self._audio(path, extractor.sampling_rate)
        step = int(extractor.max_length * 0.01 * extractor.sampling_rate)  # frames of 10 ms
        windows = [wave[i:i + step] for i in range(0, max(len(wave), 1), step)]
        inputs = extractor(windows, sampling_rate=extractor.sampling_rate, return_tensors="pt").to(self.device)
        return model(**inputs).logits.float().mean(dim=0).cpu().numpy()
