"""Configuration dataclasses for the frozen encoders and the understanding adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from choices import check_fields
from media.video_io import FrameSampling  # which frames of a video ViViT sees (media.video_io.frame_indices)

# "mumu": our adapters (K tokens, RMS-normalised, RNN + attention pooling of music and video); "m2ugen": the
# published M2UGen adapters (one token per modality, L2-normalised Conv1d aggregation); "m2ugen_rnn": the same with
# MuMu-LLaMA's RNN + attention pooling of the music frames.
AdapterStyle = Literal["mumu", "m2ugen", "m2ugen_rnn"]
AdapterRnn = Literal["gru", "rnn", "lstm"]
# Which part of a clip MERT encodes: every window of it, or only the first window (the published M2UGen /
# MuMu-LLaMA code, whose 60 s chunk loop only ever ran its first chunk).
MusicSpan = Literal["whole", "first_window"]
# How the frames become steps: means of frames_per_step frames ("blocks"), or one step, the mean of every
# encoded frame (the published M2UGen features).
MusicPooling = Literal["blocks", "mean"]


@dataclass
class MusicEncoderConfig:
    """MERT-v1 run through transformers' HubertModel (no remote code)."""

    source: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 24_000
    window_seconds: float = 60.0
    frames_per_step: int = 15
    span: MusicSpan = "whole"
    pooling: MusicPooling = "blocks"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.window_seconds <= 0 or self.frames_per_step < 1:
            raise ValueError(f"music_encoder needs window_seconds > 0 and frames_per_step >= 1, got "
                             f"{self.window_seconds} and {self.frames_per_step}")


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
    frame_sampling: FrameSampling = "uniform"

    def __post_init__(self) -> None:
        check_fields(self)


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
    # Standardise each encoder channel with statistics of the training features before the adapters
    # (adapters/standardize.py), fitted when training starts and saved with the adapters. Off as published (and for
    # converted published weights, whose adapters learned without it); the tiny profile turns it on.
    standardize: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        if self.style != "mumu" and self.num_tokens != 1:
            raise ValueError(f"adapter style {self.style!r} gives one token per modality; num_tokens={self.num_tokens}")
