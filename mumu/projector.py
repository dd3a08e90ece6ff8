"""Output projector: the hidden states that predicted [AUD0..7] -> music-decoder conditioning tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mumu.config import ProjectorConfig


@dataclass
class ProjectorOutput:
    """Per stream: embeddings on the decoder's own scale, and for masked streams a keep-mask and its logits."""

    embeds: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    mask_logits: dict[str, torch.Tensor]
    raw: dict[str, torch.Tensor]


class OutputProjector(nn.Module):
    """Linear from the LLM width, a transformer whose decoder reads learned queries, one linear head per stream."""

    def __init__(self, llm_width: int, cfg: ProjectorConfig) -> None:
        super().__init__()
        if not cfg.streams:
            raise ValueError("projector config has no output streams")
        flat = cfg.layout == "flat"
        self.cfg = cfg
        self.inp = nn.Linear(llm_width, cfg.width)
        self.transformer = nn.Transformer(
            d_model=cfg.width, nhead=cfg.heads, num_encoder_layers=cfg.encoder_layers,
            num_decoder_layers=cfg.decoder_layers, dim_feedforward=cfg.ffn_width, dropout=cfg.dropout,
            batch_first=True,
        )
        total = 1 if flat else sum(s.num_tokens for s in cfg.streams)
        self.queries = nn.Parameter(torch.randn(total, cfg.width) * 0.02)
        if flat:
            # One query whose head emits every stream's values at once, cut in stream order (published AudioLDM2).
            self.flat = nn.Linear(cfg.width, sum(s.num_tokens * s.width for s in cfg.streams))
        self.heads = nn.ModuleDict({} if flat else {s.name: nn.Linear(cfg.width, s.width) for s in cfg.streams})
        self.mask_heads = nn.ModuleDict({s.name: nn.Linear(cfg.width, 1) for s in cfg.streams if s.masked})

    def forward(self, hidden: torch.Tensor) -> ProjectorOutput:
        """(B, n_aud, llm_width) -> conditioning tensors for each stream."""
        src = self.inp(hidden.to(self.inp.weight.dtype))
        tgt = self.queries.expand(src.shape[0], *self.queries.shape)
        out = self.transformer(src, tgt)
        embeds, masks, logits, raw = {}, {}, {}, {}
        start = 0
        values = self.flat(out[:, 0]) if self.cfg.layout == "flat" else None
        for stream in self.cfg.streams:
            if values is not None:
                size = stream.num_tokens * stream.width
                raw[stream.name] = values[:, start : start + size].reshape(-1, stream.num_tokens, stream.width)
                start += size
                embeds[stream.name] = raw[stream.name] / self.cfg.target_scale
                continue
            chunk = out[:, start : start + stream.num_tokens]
            start += stream.num_tokens
            raw[stream.name] = self.heads[stream.name](chunk)
            embeds[stream.name] = raw[stream.name] / self.cfg.target_scale
            if stream.masked:
                logits[stream.name] = self.mask_heads[stream.name](chunk).squeeze(-1)
                keep = logits[stream.name] > 0
                keep[:, 0] = True  # a decoder needs at least one conditioning token
                masks[stream.name] = keep
        return ProjectorOutput(embeds, masks, logits, raw)

    def loss(
        self, out: ProjectorOutput, targets: dict[str, torch.Tensor], target_masks: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked MSE against scaled targets, and BCE for the keep-masks; both averaged over streams."""
        mse, bce = [], []
        for stream in self.cfg.streams:
            if stream.name not in targets:
                raise ValueError(f"decoder targets lack stream {stream.name!r} (have {sorted(targets)})")
            pred = out.raw[stream.name]
            target, valid = _pad_to(targets[stream.name], target_masks.get(stream.name), stream.num_tokens)
            target, valid = target.to(pred.device, pred.dtype), valid.to(pred.device)
            err = (pred - target * self.cfg.target_scale).pow(2).mean(-1)
            mse.append((err * valid).sum() / valid.sum().clamp_min(1))
            if stream.masked:
                bce.append(F.binary_cross_entropy_with_logits(out.mask_logits[stream.name], valid.to(pred.dtype)))
        zero = mse[0].new_zeros(())
        return torch.stack(mse).mean(), torch.stack(bce).mean() if bce else zero


def _pad_to(target: torch.Tensor, mask: torch.Tensor | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Decoder text encoders emit as many tokens as the caption has; the projector always emits `length`.
    b, n, _ = target.shape
    valid = torch.ones(b, n, device=target.device) if mask is None else mask.float()
    if n > length:
        return target[:, :length], valid[:, :length]
    pad = length - n
    return F.pad(target, (0, 0, 0, pad)), F.pad(valid, (0, pad))


def check_streams(cfg: ProjectorConfig, decoder_streams: dict[str, tuple[int | None, int]], kind: str) -> None:
    """Raise if the projector does not predict exactly what the decoder reads (names, widths, token counts)."""
    ours = {s.name: s for s in cfg.streams}
    if set(ours) != set(decoder_streams):
        raise ValueError(f"projector predicts {sorted(ours)} but the {kind} decoder reads {sorted(decoder_streams)}")
    for name, (max_tokens, width) in decoder_streams.items():
        stream = ours[name]
        if stream.width != width:
            raise ValueError(f"projector stream {name!r} is {stream.width} wide, the {kind} decoder expects {width}")
        if max_tokens is not None and stream.num_tokens != max_tokens:
            raise ValueError(f"projector stream {name!r} has {stream.num_tokens} tokens, {kind} reads {max_tokens}")
