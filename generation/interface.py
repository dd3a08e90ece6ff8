"""The one decoder interface the pipeline uses: conditioning + settings (+ optional source audio) -> waveform."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from generation.config import ConditioningMode, DecoderConfig, SamplingSettings


@dataclass
class Conditioning:
    """What the music should be: projector embeddings (batch 1, per stream) with keep-masks, a caption, or both.

    embeds: stream name -> (1, N, W) float tensor on the decoder's own scale.
    masks: stream name -> (1, N) bool tensor (True = attend), for masked streams.
    caption: text for the decoder's own text encoder (caption mode, or alongside embeddings where supported).
    ranking_text: what the music should match, for decoders that rank several candidates (AudioLDM2's CLAP scorer)
    in any mode: the reply text or the request. Conditions nothing; without it the caption ranks, if there is one.
    """

    embeds: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    caption: str | None = None
    ranking_text: str | None = None

    @property
    def mode(self) -> ConditioningMode:
        """What a decoder conditions on: the embeddings if there are any (they win over a caption), else the caption."""
        return "embeddings" if self.embeds else "caption"

    def check(self) -> Conditioning:
        """Reject empty conditioning with a clear message."""
        if not self.embeds and not (self.caption and self.caption.strip()):
            raise ValueError("conditioning needs projector embeddings or a non-empty caption")
        return self


EditMode = Literal["melody", "continue"]
"""How a decoder edits a source track: follow its melody/harmony (chroma), or continue it."""


@dataclass
class EditSource:
    """Audio an edit starts from: 'melody' keeps its melody/harmony (chroma), 'continue' extends it."""

    audio: np.ndarray
    sample_rate: int
    mode: EditMode = "melody"


@dataclass
class DecodedAudio:
    """A mono float32 waveform with its sample rate, and what produced it.

    Nominally within [-1, 1] but never clipped: a decoder's overshoot is left for delivery levelling
    (media.levelling), whose limiter handles it without flat-topping the waveform.
    """

    waveform: np.ndarray
    sample_rate: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.waveform) / self.sample_rate


class MusicDecoder(abc.ABC):
    """A music decoder. Implementations: MusicGen, MusicGen-Melody, AudioLDM2."""

    config: DecoderConfig

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, cfg: DecoderConfig, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
        weights: bool = True,
    ) -> MusicDecoder:
        """Load cfg.source or, with no source or weights=False, build cfg.arch with random weights."""

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""

    @property
    @abc.abstractmethod
    def streams(self) -> dict[str, tuple[int | None, int]]:
        """Conditioning streams it reads: name -> (max tokens or None for any, width)."""

    @property
    @abc.abstractmethod
    def components(self) -> dict[str, torch.nn.Module]:
        """The decoder's modules by role (for parameter counts and device moves)."""

    @abc.abstractmethod
    def text_targets(self, captions: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """What the projector learns to predict for each caption: per stream (B, N, W) states and (B, N) bool masks.

        These are the decoder's own text-encoder outputs, i.e. exactly what caption mode would condition on.
        """

    @abc.abstractmethod
    def generate(
        self, cond: Conditioning, settings: SamplingSettings, source: EditSource | None = None
    ) -> DecodedAudio:
        """Make music. Same seed and inputs give the same audio bit for bit on CPU.

        Args:
            cond: what to play: projector embeddings per stream (with keep-masks), a caption for the decoder's own
                text encoder, or both (embeddings win where a decoder cannot use both).
            settings: duration, seed and sampling controls; checked against `config.max_duration` first. Settings a
                decoder does not use are ignored by it.
            source: audio to edit from: mode "melody" keeps its melody/harmony (decoders that read chroma), mode
                "continue" extends it; None makes new music.

        Returns:
            A mono float32 waveform in [-1, 1] at `sample_rate`, with `info` saying what produced it.

        Raises:
            ValueError: a setting out of range, empty conditioning, a stream or shape the decoder does not read,
                a missing tokenizer in caption mode, or an edit source this decoder cannot use.
        """

    def generate_batch(
        self, conds: Sequence[Conditioning], settings: Sequence[SamplingSettings],
        sources: Sequence[EditSource | None],
    ) -> list[DecodedAudio]:
        """Make music for several rows at once: row i is exactly `generate(conds[i], settings[i], sources[i])`.

        Decoders that can sample rows together bit for bit as each alone override this for the rows that may share a
        batch (generation.registry.batch_key: same kind, mode and settings but the seed); this default, and any row
        set that may not share a batch, makes them one by one.

        Raises:
            ValueError: as `generate`, for the first row it rejects.
        """
        return [self.generate(c, s, src) for c, s, src in zip(conds, settings, sources, strict=True)]
