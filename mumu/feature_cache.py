"""Encoder features of media files: computing them, and a bounded thread-safe LRU keyed by file content."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from media.audio_io import load_audio
from media.image_io import load_image
from media.limits import MediaLimits
from media.video_io import load_video_frames

if TYPE_CHECKING:
    from mumu.builder import FrozenEncoders
    from mumu.modeling import MuMuModel


def file_digest(path: str | Path, chunk: int = 2**20) -> str:
    """SHA-256 of a file's bytes: the same content under another name or upload path hits the cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def encode(model: MuMuModel | FrozenEncoders, modality: str, data: np.ndarray | Image.Image) -> torch.Tensor:
    """Run the frozen encoder of `modality` on one decoded input.

    music: a mono waveform at the encoder's rate -> (layers, steps, width); image: an RGB image -> (tokens, width);
    video: (frames, H, W, 3) uint8 -> (tokens, width).
    """
    if modality == "music":
        return model.music_encoder(data)
    if modality == "image":
        return model.image_encoder([data])[0]
    if modality == "video":
        return model.video_encoder([data])[0]
    raise ValueError(f"unknown modality {modality!r}; expected music, image or video")


def encode_file(
    model: MuMuModel | FrozenEncoders, modality: str, path: str | Path, limits: MediaLimits
) -> torch.Tensor:
    """Load one media file (checked against limits) as its encoder expects it, and encode it."""
    if modality == "music":
        data = load_audio(path, model.config.music_encoder.sample_rate, limits)
    elif modality == "image":
        data = load_image(path, limits)
    elif modality == "video":
        sampling = model.config.video_encoder.frame_sampling
        data = load_video_frames(path, model.video_encoder.num_frames, limits, sampling)
    else:
        raise ValueError(f"unknown modality {modality!r}; expected music, image or video")
    return encode(model, modality, data)


class FeatureCache:
    """Least-recently-used mapping from (modality, digest) to encoder features, holding at most `size` entries."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"feature cache size must be >= 0, got {size}")
        self.size = size
        self._items: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The cached features (marking them recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        """Store features, evicting the least recently used entries beyond the size."""
        if self.size == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
