"""The one registry of decoder kinds: kind -> decoder class, imported on first use.

The CLI's --decoder choices, the config check of DecoderConfig.kind, the profiles and every "unknown decoder"
message read DECODER_KINDS, i.e. the DecoderKind Literal; `DECODERS` must name a class for each of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Hashable

import torch

from choices import check_choice, options
from generation.config import ConditioningMode, DecoderConfig, DecoderKind, SamplingSettings
from generation.interface import Conditioning, EditMode, EditSource, MusicDecoder

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


# Which conditioning modes of each kind sample several new tracks as one batch, each row bit for bit what it is alone
# (MusicDecoder.generate_batch). Edits never share a batch: their sources differ in length and content.
BATCH_MODES: dict[DecoderKind, tuple[ConditioningMode, ...]] = {
    "musicgen": ("embeddings", "caption"),  # cross-attention masks the padding of shorter captions
    # The text is a prefix the decoder attends to without a mask, so captions of other lengths would change each
    # other's rows; the projector's embeddings all have one length.
    "musicgen_melody": ("embeddings",),
    # Made one by one: a turn's candidates are drawn from its one generator as one latent tensor and a call seeds
    # numpy's global RNG (generation.audioldm2), so rows of one pipeline call cannot each keep their own streams.
    "audioldm2": (),
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


def batch_key(kind: str, cond: Conditioning, settings: SamplingSettings, source: EditSource | None) -> Hashable | None:
    """What rows must share to be sampled as one batch: kind, mode, embedding shapes and every setting but the seed.

    None when the row cannot share a batch (its kind does not batch its mode, or it edits a source).
    """
    if source is not None or cond.mode not in BATCH_MODES[check_kind(kind)]:
        return None
    shapes = tuple(sorted((name, tuple(t.shape)) for name, t in cond.embeds.items()))
    return kind, cond.mode, shapes, dataclasses.astuple(dataclasses.replace(settings, seed=0))
