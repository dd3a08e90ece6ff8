"""Frozen MERT-v1 music encoder, run through transformers' HubertModel (no remote code)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AttentionInterface,
    AttentionMaskInterface,
    HubertConfig,
    HubertModel,
    PreTrainedConfig,
    Wav2Vec2FeatureExtractor,
)
from transformers.masking_utils import eager_mask
from transformers.models.hubert.modeling_hubert import HubertEncoderLayer

from adapters.config import MusicEncoderConfig

RELAX_ATTENTION = "mert_relax"

# Keys of a MERT config.json that describe the remote-code wrapper rather than the network.
_MERT_ONLY_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


def mert_hubert_config(arch_or_mert_config: dict[str, Any]) -> HubertConfig:
    """Map a MERT-v1 config.json dict (or one of our arch dicts) to an equivalent HubertConfig."""
    kwargs = dict(arch_or_mert_config)
    if kwargs.get("feature_extractor_cqt", False):
        raise ValueError(
            "MERT config has feature_extractor_cqt=true: CQT front-ends are unsupported (only the waveform "
            "convolution front-end of MERT-v1 maps onto HubertModel)"
        )
    for key in [k for k in kwargs if k.startswith("feature_extractor_cqt") or k in _MERT_ONLY_KEYS]:
        del kwargs[key]
    kwargs["deepnorm"] = bool(kwargs.get("deepnorm", False))
    kwargs["attention_relax"] = float(kwargs.get("attention_relax", -1.0))
    if kwargs["deepnorm"] and kwargs.get("do_stable_layer_norm", False):
        raise ValueError(
            "MERT config is invalid: deepnorm requires post-LN layers (do_stable_layer_norm=false)"
        )
    # mask_time_prob / mask_feature_prob pass through unchanged: MERT creates `masked_spec_embed` under the
    # same condition as HubertModel, so the checkpoint's key set matches and loads without warnings.
    return HubertConfig(**kwargs)


def mert_relax_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MERT's relaxed attention: softmax of (s/r - max(s/r)) * r, with s the scaled, masked logits."""
    relax = float(module.config.attention_relax)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    # Divide by r before the product (not after) so that half-precision logits cannot overflow.
    relaxed = torch.matmul(query * (scaling / relax), key.transpose(2, 3))
    if attention_mask is not None:
        relaxed = relaxed + attention_mask / relax
    logits = (relaxed - relaxed.amax(dim=-1, keepdim=True)) * relax
    weights = nn.functional.softmax(logits, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


AttentionInterface.register(RELAX_ATTENTION, mert_relax_attention)
# The relaxed attention takes the same additive float mask as eager attention.
AttentionMaskInterface.register(RELAX_ATTENTION, eager_mask)


class MertDeepNormEncoderLayer(HubertEncoderLayer):
    """Post-LN HuBERT layer with MERT's DeepNorm residual scaling; same parameters as HubertEncoderLayer."""

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Attention and feed-forward blocks with residuals scaled by (2 * num_layers) ** 0.25."""
        alpha = (2 * self.attention.config.num_hidden_layers) ** 0.25
        residual = hidden_states
        hidden_states, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.layer_norm(residual * alpha + hidden_states)
        return self.final_layer_norm(hidden_states * alpha + self.feed_forward(hidden_states))


def apply_mert_numerics(model: HubertModel) -> HubertModel:
    """Give a HubertModel MERT's DeepNorm layers and relaxed attention when its config asks for them."""
    config = model.config
    if config.do_stable_layer_norm or not getattr(config, "deepnorm", False):
        # MERT uses plain HuBERT encoders here; attention_relax only exists in its DeepNorm layers.
        return model
    for layer in model.encoder.layers:
        # A class swap keeps the parameter names (checkpoints load) and the output-recording hooks, which
        # transformers matches with isinstance(HubertEncoderLayer).
        layer.__class__ = MertDeepNormEncoderLayer
    if getattr(config, "attention_relax", -1.0) > 0:
        model.set_attn_implementation(RELAX_ATTENTION)
    return model


def receptive_field(config: HubertConfig) -> int:
    """Number of samples the convolutional front-end needs to produce one frame (400 for MERT-v1)."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def pool_time(frames: torch.Tensor, block: int) -> torch.Tensor:
    """Mean-pool (L, T, D) in time, `block` frames per step; the last step averages its actual frames."""
    layers, length, width = frames.shape
    steps = -(-length // block)
    padded = F.pad(frames.float(), (0, 0, 0, steps * block - length))
    sums = padded.view(layers, steps, block, width).sum(dim=2)
    counts = torch.full((steps,), float(block))
    counts[-1] = length - (steps - 1) * block
    return (sums / counts.to(frames.device)[None, :, None]).to(frames.dtype)


class MusicEncoder(nn.Module):
    """MERT-v1: one mono clip -> all hidden states, mean-pooled in time, shape (layers + 1, steps, width)."""

    def __init__(
        self, model: HubertModel, processor: Wav2Vec2FeatureExtractor, cfg: MusicEncoderConfig
    ) -> None:
        super().__init__()
        model_rate = getattr(model.config, "sample_rate", cfg.sample_rate)
        if not model_rate == processor.sampling_rate == cfg.sample_rate:
            raise ValueError(
                f"sample rates disagree: model {model_rate}, processor {processor.sampling_rate}, "
                f"config {cfg.sample_rate}"
            )
        self.model = apply_mert_numerics(model)
        self.model.requires_grad_(False)
        self.processor = processor
        self.cfg = cfg
        self.min_samples = receptive_field(model.config)
        self.window_samples = round(cfg.window_seconds * cfg.sample_rate)
        self.train(False)

    @classmethod
    def from_config(
        cls,
        cfg: MusicEncoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weights: bool = True,
    ) -> MusicEncoder:
        """Load MERT-v1 from `cfg.source`, else build `cfg.arch` at random (so too if weights=False)."""
        if cfg.source is None or not weights:
            model = HubertModel(mert_hubert_config(cfg.arch))
            processor = Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=cfg.sample_rate, padding_value=0.0, do_normalize=True
            )
        else:
            config_dict, _ = PreTrainedConfig.get_config_dict(cfg.source)
            model, info = HubertModel.from_pretrained(
                cfg.source, config=mert_hubert_config(config_dict), dtype=dtype, output_loading_info=True
            )
            if info["missing_keys"]:
                # A frozen encoder with silently random tensors would give plausible-looking garbage.
                raise ValueError(f"{cfg.source}: checkpoint lacks weights {sorted(info['missing_keys'])[:8]}")
            processor = Wav2Vec2FeatureExtractor.from_pretrained(cfg.source)
        return cls(model, processor, cfg).to(device=device, dtype=dtype)

    @property
    def num_layers_out(self) -> int:
        """Hidden states per step: the feature projection plus one per transformer layer."""
        return self.model.config.num_hidden_layers + 1

    @property
    def width(self) -> int:
        """Hidden size of every state."""
        return self.model.config.hidden_size

    @property
    def frame_rate(self) -> float:
        """Output steps per second with "blocks" pooling (5.0 for MERT-v1 at 75 Hz frames, 15 frames per step)."""
        return self.cfg.sample_rate / math.prod(self.model.config.conv_stride) / self.cfg.frames_per_step

    def train(self, mode: bool = True) -> MusicEncoder:
        """Stay in eval mode whatever is asked: the encoder is frozen and must not apply dropout."""
        return super().train(False)

    def windows(self, num_samples: int) -> list[int]:
        """Lengths of the equal windows (within one sample) that cover a clip of `num_samples` samples."""
        count = max(1, -(-num_samples // self.window_samples))
        base, extra = divmod(num_samples, count)
        return [base + 1] * extra + [base] * (count - extra)

    def _normalise(self, clip: torch.Tensor) -> torch.Tensor:
        # Same formula as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, done in torch (and in float64
        # for long clips) so that meta and accelerator tensors work too.
        if self.processor.do_normalize:
            wide = clip.double()
            clip = ((wide - wide.mean()) / torch.sqrt(wide.var(unbiased=False) + 1e-7)).float()
        if clip.shape[0] < self.min_samples:
            clip = F.pad(clip, (0, self.min_samples - clip.shape[0]))
        return clip

    def _encode_window(self, clip: torch.Tensor) -> torch.Tensor:
        # Not next(parameters()): HubertModel creates masked_spec_embed on the CPU even under a meta device.
        parameter = self.model.feature_projection.projection.weight
        values = self._normalise(clip).to(device=parameter.device, dtype=parameter.dtype)
        out = self.model(values[None], output_hidden_states=True)
        # transformers 5 records the stable-layer-norm stack's last state before the final LayerNorm; the
        # published (4.35) 25-state stack has it after, i.e. last_hidden_state.
        states = (*out.hidden_states[:-1], out.last_hidden_state)
        return torch.stack(states, dim=0)[:, 0]

    @torch.no_grad()
    def forward(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encode one mono clip at cfg.sample_rate into (num_layers_out, steps, width)."""
        clip = torch.as_tensor(waveform)
        if clip.dim() == 2 and clip.shape[0] == 1:
            clip = clip[0]
        if clip.dim() != 1 or clip.shape[0] == 0:
            raise ValueError(f"expected one non-empty mono clip of shape (samples,), got {tuple(clip.shape)}")
        clip = clip.float()
        if self.cfg.span == "first_window":
            clip = clip[: self.window_samples]
        if self.cfg.pooling == "mean":
            return self._mean_of_frames(clip)
        # Long audio is encoded window by window and the frames concatenated in time: nothing is cut.
        # Full blocks are pooled as they arrive (the remainder carries over to the next window), which
        # equals pooling the concatenation but never holds a whole song's 25-layer frames in memory.
        block = self.cfg.frames_per_step
        steps, carry = [], None
        for part in torch.split(clip, self.windows(clip.shape[0])):
            frames = self._encode_window(part)
            frames = frames if carry is None else torch.cat([carry, frames], dim=1)
            full = frames.shape[1] // block * block
            if full:
                steps.append(pool_time(frames[:, :full], block))
            carry = frames[:, full:]
        if carry.shape[1]:
            steps.append(pool_time(carry, block))
        return torch.cat(steps, dim=1)

    def _mean_of_frames(self, clip: torch.Tensor) -> torch.Tensor:
        """One step: every frame of every window weighs the same."""
        total, count = None, 0
        for part in torch.split(clip, self.windows(clip.shape[0])):
            frames = self._encode_window(part).float()
            total = frames.sum(dim=1) if total is None else total + frames.sum(dim=1)
            count += frames.shape[1]
        return (total / count)[:, None].to(frames.dtype)
