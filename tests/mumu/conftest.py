"""Shared fixtures: a fresh tiny model per test and real encoder features from random media."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mumu.builder import build_model
from mumu.feature_cache import encode
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.profiles import tiny


def make_model(**overrides) -> MuMuModel:
    """A tiny model; keyword overrides are dotted config paths, e.g. adapter__num_tokens=2."""
    cfg = tiny()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return build_model(cfg)


def open_gates(model: MuMuModel, value: float = 1.0) -> None:
    """Make injection visible (gates start at zero)."""
    with torch.no_grad():
        model.injection.gates.fill_(value)


def media_for(model: MuMuModel, seed: int, rows: int = 1, music=True, image=True, video=True) -> MediaFeatures:
    """Encode random audio / image / video through the model's real frozen encoders."""
    rng = np.random.default_rng(seed)
    media = MediaFeatures()
    for _ in range(rows):
        wav = rng.standard_normal(int(24000 * 1.5)).astype(np.float32) * 0.1
        pixels = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
        frames = (rng.random((model.video_encoder.num_frames, 36, 48, 3)) * 255).astype(np.uint8)
        media.music.append(encode(model, "music", wav) if music else None)
        media.image.append(encode(model, "image", Image.fromarray(pixels)) if image else None)
        media.video.append(encode(model, "video", frames) if video else None)
    return media


def prompt_ids(model: MuMuModel, text: str = "Describe the music in detail") -> list[int]:
    """BOS + encoded text."""
    return [model.ids.bos, *model.tokenizer(text, add_special_tokens=False).input_ids]


@pytest.fixture
def model() -> MuMuModel:
    """A fresh tiny model (seeded, so every test sees the same weights)."""
    return make_model()
