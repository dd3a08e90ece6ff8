"""A tiny published M2UGen model in every layout the loaders meet: its checkpoint.pth, and each component (MERT, ViT,
ViViT, the base Llama, the MusicGen decoder) as a Hugging Face directory, ready to host on tests/local_hub.py under
the published ids or to convert from local paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generation.registry import build_decoder
from mumu.builder import seeded
from mumu.profiles import tiny_decoder
from mumu.upstream.convert import convert
from tests.mumu.upstream.published import Spec, published_state, save_encoders, save_llm, save_published

LAYERS = 18


@dataclass
class TinyPublished:
    """Where each part lies; `hub_repos` maps the ids the published model names to those directories."""

    checkpoint: Path
    llm: Path
    encoders: dict[str, Path]
    decoder: Path

    def hub_repos(self, published_id: str) -> dict[str, dict[str, Path] | Path]:
        """Repos as the real Hub serves them for a published MusicGen-small id and its components."""
        return {published_id: {"checkpoint.pth": self.checkpoint}, "meta-llama/Llama-2-7b-hf": self.llm,
                "m-a-p/MERT-v1-330M": self.encoders["mert"], "google/vit-base-patch16-224": self.encoders["vit"],
                "google/vivit-b-16x2-kinetics400": self.encoders["vivit"], "facebook/musicgen-small": self.decoder}


def save_decoder(directory: Path) -> Path:
    """The tiny MusicGen (text width 32, as the tiny published projector emits) saved with its tokenizer."""
    with seeded(7):
        decoder = build_decoder(tiny_decoder("musicgen"))
    decoder.model.save_pretrained(directory)
    decoder.tokenizer.save_pretrained(directory)
    return directory


def build_tiny_published(root: Path) -> TinyPublished:
    """Every part of a tiny published MusicGen model under root."""
    encoders = save_encoders(root / "encoders")
    llm = save_llm(root / "llm", LAYERS)
    state = published_state(llm, Spec(layers=LAYERS, prefix_rows=18), encoders)
    checkpoint = save_published(root / "checkpoint.pth", state, module_prefix=True)
    return TinyPublished(checkpoint, root / "llm", encoders, save_decoder(root / "musicgen"))


def convert_tiny_published(root: Path) -> Path:
    """The tiny published model converted from local paths: a MuMu checkpoint directory that app.py can serve."""
    parts = build_tiny_published(root)
    out = root / "converted"
    convert(parts.checkpoint, str(parts.llm), out, mert=str(parts.encoders["mert"]), vit=str(parts.encoders["vit"]),
            vivit=str(parts.encoders["vivit"]), decoder=str(parts.decoder))
    return out
