"""Per-channel standardisation of frozen-encoder features with statistics of the training data (CMVN).

Encoder features carry large offsets shared by every input (a random tiny MERT's clips differ by a quarter of the
norm of their common mean; pretrained MERT has its outlier channels): what tells two clips apart is a small part
of each vector, which the adapters' unit-RMS normalisation keeps small and gradient descent then learns slowly
(docs/training.md, issue 13: register 0.52 -> 0.68 held-out with stage 3 alone, 0.50 -> 0.82 after stage 1 -> 3).
Subtracting each channel's mean over the training features and dividing by its standard deviation, as speech
front-ends do (cepstral mean and variance normalisation), puts that variation at unit scale.

The statistics are buffers fitted once, before the first training step of a model that has none (`mumu train`),
and saved with the adapters; an unfitted standardiser (mean 0, std 1) is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

# Standard deviations below this are treated as this (a channel that never varies is only centred).
MIN_STD = 1e-4


class FeatureStandardizer(nn.Module):
    """x -> (x - mean) / std per channel. Music clips (layers, steps, width): per layer and channel, over steps;
    image and video tokens (tokens, width): per channel, over tokens."""

    def __init__(self, layers: int | None, width: int) -> None:
        super().__init__()
        self.layers, self.width = layers, width
        shape = (width,) if layers is None else (layers, 1, width)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # feature vectors the statistics came from

    @property
    def fitted(self) -> bool:
        """Whether statistics were fitted (otherwise this is the identity)."""
        return bool(self.count > 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise one clip's (layers, steps, width) or a batch of (..., tokens, width) features."""
        return ((x.float() - self.mean) / self.std).to(x.dtype)

    @torch.no_grad()
    def fit(self, features: Iterable[torch.Tensor]) -> int:
        """Set the statistics from training features (each shaped as forward takes one); returns the vectors seen.

        Raises:
            ValueError: no features, or features whose shape does not match the encoder's.
        """
        total = squares = None
        count = 0
        for x in features:
            x = self._rows(x.detach().to(self.mean.device, torch.float64))
            total = x.sum(-2) if total is None else total + x.sum(-2)
            squares = x.square().sum(-2) if squares is None else squares + x.square().sum(-2)
            count += x.shape[-2]
        if count < 2:
            raise ValueError(f"fitting feature statistics needs at least 2 feature vectors, got {count}")
        mean = total / count
        var = (squares / count - mean.square()).clamp_min(0.0)
        self.mean.copy_(mean.view(self.mean.shape))
        self.std.copy_(var.sqrt().clamp_min(MIN_STD).view(self.std.shape))
        self.count.fill_(count)
        return count

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """The features checked against the encoder's layout; the axis the statistics run over is -2."""
        if self.layers is None:
            ok, layout = x.ndim == 2 and x.shape[1] == self.width, f"(tokens, {self.width})"
        else:
            ok = x.ndim == 3 and x.shape[0] == self.layers and x.shape[2] == self.width
            layout = f"({self.layers}, steps, {self.width})"
        if not ok:
            raise ValueError(f"features shaped {tuple(x.shape)} do not match the encoder's {layout}")
        return x
