"""Decoder configuration and the sampling settings users control, with range checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from choices import check_fields

DecoderKind = Literal["musicgen", "musicgen_melody", "audioldm2"]
ConditioningMode = Literal["embeddings", "caption"]
"""What a decoder is conditioned on: the output projector's embeddings, or a caption through its own text encoder."""


@dataclass
class DecoderConfig:
    """Which music decoder, where its weights come from (None: random init from arch), and its length limits.

    tokenizer: text tokenizer for caption mode when source is None (a dir, Hub id or 'builtin:NAME' resolved
    by checkpoints.sources.resolve_source); with a source, the checkpoint's own tokenizers are used.
    max_text_tokens: captions are cut to this many tokens for training targets (the published T5 length).
    separator: musicgen_melody only: the Demucs model that removes drums and bass before melody chroma, as
    MusicGen-Melody was trained ('htdemucs', a local folder, or None for the full mix; see generation.separation).
    Random-init builds use a tiny random stand-in; without the optional demucs package the full mix is used and the
    decoder's info says so.
    """

    kind: DecoderKind = "musicgen"
    source: str | None = None
    tokenizer: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    max_duration: float = 120.0
    window_seconds: float = 30.0
    overlap_seconds: float = 10.0
    max_text_tokens: int = 128
    separator: str | None = "htdemucs"

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class SamplingSettings:
    """What a user may set for one generation. Fields a decoder does not use are ignored by it."""

    duration: float = 10.0
    seed: int = 0
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    steps: int = 25
    negative_prompt: str = "Low quality."
    candidates: int = 1

    def validate(self, max_duration: float) -> SamplingSettings:
        """Raise ValueError naming the first out-of-range setting and its accepted range."""
        checks = [
            ("duration", 0 < self.duration <= max_duration, f"seconds in (0, {max_duration:g}]"),
            ("seed", 0 <= self.seed < 2**63, "an integer in [0, 2^63)"),
            ("guidance_scale", 1.0 <= self.guidance_scale <= 20.0, "in [1, 20] (1 = no guidance)"),
            ("temperature", 0.0 < self.temperature <= 5.0, "in (0, 5]"),
            ("top_k", 0 <= self.top_k <= 4096, "an integer in [0, 4096] (0 = off)"),
            ("top_p", 0.0 <= self.top_p <= 1.0, "in [0, 1] (0 = off)"),
            ("steps", 1 <= self.steps <= 1000, "an integer in [1, 1000]"),
            ("candidates", 1 <= self.candidates <= 8, "an integer in [1, 8]"),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range: expected {accepted}")
        return self
