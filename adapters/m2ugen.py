"""Understanding adapters in the published M2UGen / MuMu-LLaMA style: one L2-normalised vector per modality.

Same interfaces as adapters.understanding (so a model can use either style), numerics of the published code:
- music: each MERT layer averaged over time -> Conv1d(layers -> 1) -> L2 normalise; or, with MuMu-LLaMA's RNN,
  Conv1d per frame -> L2 normalise -> RNN -> softmax attention over time;
- image: Conv1d(tokens -> 1) over all ViT tokens -> L2 normalise;
- video: Conv1d(tokens -> 1) over all ViViT tokens, CLS included -> L2 normalise;
then Linear to the LLM width and residual SwiGLU blocks, giving (B, 1, llm_width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapters.config import AdapterConfig
from adapters.understanding import LLMProjection, TemporalAttentionPool, pad_steps


class M2UGenMusicAdapter(nn.Module):
    """MERT (layers, steps, width) clips -> (B, 1, llm_width), mean over time or RNN + attention pooling."""

    def __init__(self, num_layers: int, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.aggregate = nn.Conv1d(num_layers, 1, kernel_size=1)
        self.pool = TemporalAttentionPool(in_width, 1, "rnn") if cfg.style == "m2ugen_rnn" else None
        self.project = LLMProjection(in_width, cfg)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """List of (L, T_i, D) clips -> (B, 1, llm_width)."""
        dtype = self.aggregate.weight.dtype
        if self.pool is None:
            means = torch.stack([f.to(dtype).mean(dim=1) for f in features])  # (B, L, D)
            return self.project(F.normalize(self.aggregate(means), dim=-1))
        x, lengths = pad_steps([f.to(dtype) for f in features])
        b, layers, steps, width = x.shape
        frames = self.aggregate(x.permute(0, 2, 1, 3).reshape(b * steps, layers, width)).view(b, steps, width)
        return self.project(self.pool(F.normalize(frames, dim=-1), lengths))


class M2UGenTokenAdapter(nn.Module):
    """(B, N, D) encoder tokens -> Conv1d(N -> 1) -> L2 normalise -> (B, 1, llm_width); image and video alike."""

    def __init__(self, num_tokens_in: int, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.num_tokens_in = num_tokens_in
        self.aggregate = nn.Conv1d(num_tokens_in, 1, kernel_size=1)
        self.project = LLMProjection(in_width, cfg)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, 1, llm_width)."""
        if features.shape[1] != self.num_tokens_in:
            raise ValueError(f"features have {features.shape[1]} tokens, this adapter reads {self.num_tokens_in}")
        x = features.to(self.aggregate.weight.dtype)
        return self.project(F.normalize(self.aggregate(x), dim=-1))
