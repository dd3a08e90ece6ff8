"""Configuration dataclasses for the frozen encoders and the understanding adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from choices import check_fields

# "mumu": our adapters (K tokens, RMS-normalised, RNN + attention pooling of music and video); "m2ugen": the
# published M2UGen adapters (one token per modality, L2-normalised Conv1d aggregation); "m2ugen_rnn": the same with
# MuMu-LLaMA's RNN + attention pooling of the music frames.
AdapterStyle = Literal["mumu", "m2ugen", "m2ugen_rnn"]
AdapterRnn = Literal["gru", "rnn", "lstm"]


@dataclass
class MusicEncoderConfig:
    """MERT-v1 run through transformers' HubertModel (no remote code)."""

    source: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 24_000
    window_seconds: float = 60.0
    frames_per_step: int = 15


@dataclass
class ImageEncoderConfig:
    """ViT image encoder (ViT-B/16 at 224 px gives 197 tokens)."""

    source: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoEncoderConfig:
    """ViViT video encoder (ViViT-B/16x2 on 32 frames gives 3137 tokens)."""

    source: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterConfig:
    """Understanding adapters: aggregate encoder tokens, pool over time, project to the LLM width (style: see above)."""

    llm_width: int = 4096
    num_tokens: int = 1
    num_blocks: int = 3
    ffn_width: int | None = None
    rnn: AdapterRnn = "gru"
    norm_eps: float = 1e-6
    style: AdapterStyle = "mumu"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.style != "mumu" and self.num_tokens != 1:
            raise ValueError(f"adapter style {self.style!r} gives one token per modality; num_tokens={self.num_tokens}")
