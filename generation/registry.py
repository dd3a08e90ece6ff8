"""The one registry of decoder kinds: kind -> decoder class, imported on first use.

The CLI's --decoder choices, the config check of DecoderConfig.kind, the profiles and every "unknown decoder"
message read DECODER_KINDS, i.e. the DecoderKind Literal; `DECODERS` must name a class for each of them.
"""

from __future__ import annotations

import importlib

import torch

from choices import check_choice, options
from generation.config import DecoderConfig, DecoderKind
from generation.interface import EditMode, MusicDecoder

DECODER_KINDS: tuple[str, ...] = options(DecoderKind)
# Module paths, not classes: diffusers takes seconds to import and a MusicGen user never needs it.
DECODERS: dict[DecoderKind, str] = {
    "musicgen": "generation.musicgen:MusicGenDecoder",
    "musicgen_melody": "generation.musicgen:MusicGenDecoder",
    "audioldm2": "generation.audioldm2:AudioLDM2Decoder",
}

# A capability of each kind, known without building it: how it edits a source track (None: it cannot).
EDIT_MODES: dict[DecoderKind, EditMode | None] = {
    "musicgen": "continue",  # the source is the start of the new music
    "musicgen_melody": "melody",  # the new music follows the source's chroma
    "audioldm2": None,  # the stock pipeline has no audio-conditioned editing
}


def check_kind(kind: str) -> str:
    """Return kind if it names a registered decoder, else raise naming the kinds there are."""
    return check_choice(kind, DecoderKind, "decoder")


def edit_mode(kind: str) -> EditMode | None:
    """How decoders of `kind` edit a source track, or None when they cannot edit."""
    return EDIT_MODES[check_kind(kind)]


def decoder_class(kind: str) -> type[MusicDecoder]:
    """The MusicDecoder subclass that serves a kind (its module imported now)."""
    module, name = DECODERS[check_kind(kind)].split(":")
    return getattr(importlib.import_module(module), name)


def build_decoder(
    cfg: DecoderConfig, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
    weights: bool = True,
) -> MusicDecoder:
    """The decoder for cfg.kind, from its source or (source None / weights False) from its arch."""
    return decoder_class(cfg.kind).from_config(cfg, device=device, dtype=dtype, weights=weights)
