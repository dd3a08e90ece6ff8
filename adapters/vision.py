"""Frozen image (ViT) and video (ViViT) encoders returning every output token."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import (
    PreTrainedModel,
    ViTConfig,
    ViTImageProcessorPil,
    ViTModel,
    VivitConfig,
    VivitImageProcessor,
    VivitModel,
)

from adapters.config import ImageEncoderConfig, VideoEncoderConfig


def _load(model_class: type[PreTrainedModel], source: str, dtype: torch.dtype | None) -> PreTrainedModel:
    model, info = model_class.from_pretrained(
        source, add_pooling_layer=False, dtype=dtype, output_loading_info=True
    )
    if info["missing_keys"]:
        # A frozen encoder with silently random tensors would give plausible-looking garbage.
        raise ValueError(f"{source}: checkpoint lacks weights {sorted(info['missing_keys'])[:8]}")
    return model


class _FrozenEncoder(nn.Module):
    """A pretrained transformers model that never trains: eval mode, no gradients."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.model.requires_grad_(False)
        self.train(False)

    @property
    def width(self) -> int:
        """Hidden size of every output token."""
        return self.model.config.hidden_size

    def train(self, mode: bool = True) -> _FrozenEncoder:
        """Stay in eval mode whatever is asked: the encoder is frozen and must not apply dropout."""
        return super().train(False)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.model.embeddings.patch_embeddings.projection.weight
        pixel_values = pixel_values.to(device=weight.device, dtype=weight.dtype)
        return self.model(pixel_values=pixel_values).last_hidden_state


class ImageEncoder(_FrozenEncoder):
    """ViT: a batch of PIL images -> (B, 1 + (S/P)^2, hidden) tokens, CLS first."""

    def __init__(self, model: ViTModel, processor: ViTImageProcessorPil) -> None:
        super().__init__(model)
        self.processor = processor

    @classmethod
    def from_config(
        cls,
        cfg: ImageEncoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weights: bool = True,
    ) -> ImageEncoder:
        """Load ViT from `cfg.source`, else build `cfg.arch` at random (so too if weights=False)."""
        # ViTImageProcessorPil is what ViTImageProcessor falls back to without torchvision; naming it keeps
        # the preprocessing (and its numbers) the same whether or not torchvision gets installed.
        if cfg.source is None or not weights:
            config = ViTConfig(**cfg.arch)
            model = ViTModel(config, add_pooling_layer=False)
            side = config.image_size
            processor = ViTImageProcessorPil(
                size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3
            )
        else:
            model = _load(ViTModel, cfg.source, dtype)
            processor = ViTImageProcessorPil.from_pretrained(cfg.source)
        return cls(model, processor).to(device=device, dtype=dtype)

    @property
    def num_tokens(self) -> int:
        """Output tokens per image: CLS plus one per patch."""
        config = self.model.config
        return 1 + (config.image_size // config.patch_size) ** 2

    @torch.no_grad()
    def forward(self, images: list[Image.Image]) -> torch.Tensor:
        """Encode a non-empty list of PIL images into (B, num_tokens, width)."""
        if not images or not all(isinstance(image, Image.Image) for image in images):
            raise ValueError("expected a non-empty list of PIL images")
        rgb = [image.convert("RGB") for image in images]
        # PIL images hold 0-255 values, so they must always be rescaled (upstream passed [0, 1] tensors with
        # do_rescale=False; a saved config with do_rescale=false must not silently feed 0-255 to the model).
        pixel_values = self.processor(images=rgb, do_rescale=True, return_tensors="pt").pixel_values
        return self._run(pixel_values)


class VideoEncoder(_FrozenEncoder):
    """ViViT: a batch of (F, H, W, 3) uint8 clips -> (B, 1 + T * S, hidden) tokens, CLS first, time-major."""

    def __init__(self, model: VivitModel, processor: VivitImageProcessor) -> None:
        super().__init__(model)
        self.processor = processor

    @classmethod
    def from_config(
        cls,
        cfg: VideoEncoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weights: bool = True,
    ) -> VideoEncoder:
        """Load ViViT from `cfg.source`, else build `cfg.arch` at random (so too if weights=False)."""
        if cfg.source is None or not weights:
            config = VivitConfig(**cfg.arch)
            model = VivitModel(config, add_pooling_layer=False)
            side = config.image_size
            # Rescaling keeps the ViViT-B defaults (x / 127.5 - 1, then mean/std 0.5, so values lie in
            # [-3, 1]): that is how the published Kinetics checkpoints were fed.
            processor = VivitImageProcessor(
                size={"shortest_edge": side},
                crop_size={"height": side, "width": side},
                rescale_factor=1 / 127.5,
                offset=True,
            )
        else:
            model = _load(VivitModel, cfg.source, dtype)
            processor = VivitImageProcessor.from_pretrained(cfg.source)
        return cls(model, processor).to(device=device, dtype=dtype)

    @property
    def num_frames(self) -> int:
        """Frames every clip must have."""
        return self.model.config.num_frames

    @property
    def temporal_tokens(self) -> int:
        """Tubelet groups along time (16 for ViViT-B/16x2)."""
        return self.num_frames // self.model.config.tubelet_size[0]

    @property
    def spatial_tokens(self) -> int:
        """Tokens per tubelet group (196 for ViViT-B/16x2): tokens 1 + t*S .. (t+1)*S belong to group t."""
        config = self.model.config
        return (config.image_size // config.tubelet_size[1]) * (config.image_size // config.tubelet_size[2])

    @property
    def num_tokens(self) -> int:
        """Output tokens per clip: CLS plus temporal_tokens * spatial_tokens."""
        return 1 + self.temporal_tokens * self.spatial_tokens

    @torch.no_grad()
    def forward(self, videos: list[np.ndarray]) -> torch.Tensor:
        """Encode a non-empty list of (num_frames, H, W, 3) uint8 clips into (B, num_tokens, width)."""
        if not videos:
            raise ValueError("expected a non-empty list of videos")
        for index, video in enumerate(videos):
            if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
                raise ValueError(f"video {index}: expected a uint8 numpy array of shape (F, H, W, 3)")
            if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] != self.num_frames:
                raise ValueError(
                    f"video {index}: expected shape ({self.num_frames}, H, W, 3), got {tuple(video.shape)}"
                )
        pixel_values = self.processor([list(video) for video in videos], return_tensors="pt").pixel_values
        return self._run(pixel_values)
