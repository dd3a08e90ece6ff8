"""Build the configured music decoder."""

from __future__ import annotations

import torch

from generation.config import DecoderConfig
from generation.interface import MusicDecoder


def build_decoder(
    cfg: DecoderConfig, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
    weights: bool = True,
) -> MusicDecoder:
    """The decoder for cfg.kind, from its source or (source None / weights False) from its arch."""
    # Imported on demand: diffusers takes seconds to import and a MusicGen user never needs it.
    if cfg.kind in ("musicgen", "musicgen_melody"):
        from generation.musicgen import MusicGenDecoder

        return MusicGenDecoder.from_config(cfg, device=device, dtype=dtype, weights=weights)
    if cfg.kind == "audioldm2":
        from generation.audioldm2 import AudioLDM2Decoder

        return AudioLDM2Decoder.from_config(cfg, device=device, dtype=dtype, weights=weights)
    raise ValueError(f"unknown decoder kind {cfg.kind!r}; choose musicgen, musicgen_melody or audioldm2")
