"""Understanding adapters: frozen-encoder features in, K tokens at the LLM width out (one adapter per modality)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from adapters.config import AdapterConfig, AdapterRnn
from choices import check_choice

_RNNS: dict[AdapterRnn, type[nn.RNNBase]] = {"gru": nn.GRU, "rnn": nn.RNN, "lstm": nn.LSTM}


class SwiGLUBlock(nn.Module):
    """Pre-norm residual SwiGLU block: x + down(silu(gate(n)) * up(n)), n = RMSNorm(x)."""

    def __init__(self, width: int, ffn_width: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(width, eps=eps)
        self.gate = nn.Linear(width, ffn_width, bias=False)
        self.up = nn.Linear(width, ffn_width, bias=False)
        self.down = nn.Linear(ffn_width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        h = self.norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LLMProjection(nn.Module):
    """Linear projection to the LLM width followed by residual SwiGLU dense blocks."""

    def __init__(self, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(in_width, cfg.llm_width)
        ffn = cfg.ffn_width or cfg.llm_width
        self.blocks = nn.ModuleList(SwiGLUBlock(cfg.llm_width, ffn, cfg.norm_eps) for _ in range(cfg.num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_width) -> (..., llm_width)."""
        x = self.proj(x)
        for block in self.blocks:
            x = block(x)
        return x


class TemporalAttentionPool(nn.Module):
    """RNN over time, then K learned attention-pooling heads over the (masked) time axis."""

    def __init__(self, width: int, num_tokens: int, rnn: AdapterRnn) -> None:
        super().__init__()
        self.rnn = _RNNS[check_choice(rnn, AdapterRnn, "adapter rnn")](width, width, batch_first=True)
        self.score = nn.Linear(width, num_tokens)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) with per-row valid lengths -> (B, K, D)."""
        total = x.shape[1]
        # Packing keeps padded steps out of the recurrence, so a row's result is independent of batch padding.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        valid = torch.arange(total, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        scores = self.score(out).transpose(1, 2).masked_fill(~valid[:, None, :], float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(out.dtype) @ out


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    # Parameter-free RMS normalisation: encoders differ wildly in scale, the RNN and projection want unit scale.
    return F.rms_norm(x, (x.shape[-1],))


def pad_steps(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-clip music features (L, T_i, D) into (B, L, T_max, D) plus lengths (B,)."""
    lengths = torch.tensor([f.shape[1] for f in features], dtype=torch.long)
    layers, width = features[0].shape[0], features[0].shape[2]
    out = features[0].new_zeros(len(features), layers, int(lengths.max()), width)
    for i, f in enumerate(features):
        out[i, :, : f.shape[1]] = f
    return out, lengths


class MusicAdapter(nn.Module):
    """MERT layers x frames -> Conv1d layer aggregation -> RNN + attention pooling -> K LLM-width tokens."""

    def __init__(self, num_layers: int, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.aggregate = nn.Conv1d(num_layers, 1, kernel_size=1)
        self.pool = TemporalAttentionPool(in_width, cfg.num_tokens, cfg.rnn)
        self.project = LLMProjection(in_width, cfg)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """List of (L, T_i, D) clips -> (B, K, llm_width)."""
        dtype = self.aggregate.weight.dtype
        x, lengths = pad_steps([f.to(dtype) for f in features])
        b, layers, steps, width = x.shape
        frames = self.aggregate(x.permute(0, 2, 1, 3).reshape(b * steps, layers, width)).view(b, steps, width)
        return self.project(_unit_rms(self.pool(_unit_rms(frames), lengths)))


class ImageAdapter(nn.Module):
    """ViT tokens -> Conv1d token aggregation to K tokens -> K LLM-width tokens."""

    def __init__(self, num_tokens_in: int, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.aggregate = nn.Conv1d(num_tokens_in, cfg.num_tokens, kernel_size=1)
        self.project = LLMProjection(in_width, cfg)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, K, llm_width)."""
        x = features.to(self.aggregate.weight.dtype)
        return self.project(_unit_rms(self.aggregate(x)))


class VideoAdapter(nn.Module):
    """ViViT tokens -> per-time-step Conv1d spatial aggregation -> RNN + attention pooling -> K tokens."""

    def __init__(self, temporal: int, spatial: int, in_width: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.temporal, self.spatial = temporal, spatial
        self.aggregate = nn.Conv1d(spatial, 1, kernel_size=1)
        self.pool = TemporalAttentionPool(in_width, cfg.num_tokens, cfg.rnn)
        self.project = LLMProjection(in_width, cfg)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1 + T*S, D) with the CLS token first -> (B, K, llm_width)."""
        b, n, width = features.shape
        if n != 1 + self.temporal * self.spatial:
            raise ValueError(f"video features have {n} tokens, expected 1 + {self.temporal} x {self.spatial}")
        x = features[:, 1:].to(self.aggregate.weight.dtype).reshape(b * self.temporal, self.spatial, width)
        steps = _unit_rms(self.aggregate(x).view(b, self.temporal, width))
        lengths = torch.full((b,), self.temporal, dtype=torch.long)
        return self.project(_unit_rms(self.pool(steps, lengths)))
