"""AdamW with weight decay only on weight matrices, and linear warmup into a cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

# Name parts of tensors that are embeddings, gates or scales rather than weight matrices: decaying them pulls
# gates back to zero, prefix queries and [AUD] rows towards nothing, and norms off their scale.
NO_DECAY_PARTS = ("norm", "bias", "gates", "prefix", "queries", "trainable_tokens", "embed")


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies to a trainable tensor."""
    return param.ndim >= 2 and not any(part in name for part in NO_DECAY_PARTS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable tensors: decayed weight matrices and everything else undecayed."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else keep).append(param)
    if not decay and not keep:
        raise ValueError("nothing to train: every parameter is frozen")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the published betas (0.9, 0.95)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float) -> LambdaLR:
    """Linear warmup over `warmup` steps, then a half cosine from the base lr down to min_ratio x lr at `total`."""
    if total < 1 or not 0 <= warmup <= total or not 0 <= min_ratio <= 1:
        raise ValueError(f"need 0 <= warmup ({warmup}) <= total ({total}), total >= 1 and 0 <= min_ratio <= 1")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
