"""Configuration dataclasses for the frozen encoders and the understanding adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# Which frames of a video ViViT sees (media.video_io.frame_indices): spread evenly over the clip, or consecutive
# ones from its middle (the published code took num_frames consecutive frames at a random place).
from media.video_io import FrameSampling

# Which part of a clip MERT encodes: every window of it, or only the first window (the published M2UGen /
# MuMu-LLaMA code, whose 60 s chunk loop only ever ran its first chunk).
MusicSpan = Literal["whole", "first_window"]
# How the frames become steps: means of frames_per_step frames ("blocks"), or one step, the mean of every
# encoded frame (the published M2UGen features).
MusicPooling = Literal["blocks", "mean"]


def check_choice(value: str, choices: Any, name: str) -> str:
    """Return value if it is one of the Literal's choices, else raise naming them."""
    options = get_args(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


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
        check_choice(self.span, MusicSpan, "music_encoder.span")
        check_choice(self.pooling, MusicPooling, "music_encoder.pooling")
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
        check_choice(self.frame_sampling, FrameSampling, "video_encoder.frame_sampling")


@dataclass
class AdapterConfig:
    """Understanding adapters: aggregate encoder tokens, pool over time, project to the LLM width.

    style "m2ugen": the published M2UGen adapters (one token per modality, L2-normalised Conv1d aggregation);
    "m2ugen_rnn": the same with MuMu-LLaMA's RNN + attention pooling of the music frames.
    """

    llm_width: int = 4096
    num_tokens: int = 1
    num_blocks: int = 3
    ffn_width: int | None = None
    rnn: str = "gru"
    norm_eps: float = 1e-6
    style: str = "mumu"
