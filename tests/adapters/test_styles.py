"""Adapter styles: one builder per AdapterStyle value, each giving (B, K, llm_width) tokens from real encoder shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adapters.config import AdapterConfig, AdapterStyle, ImageEncoderConfig, MusicEncoderConfig, VideoEncoderConfig
from adapters.m2ugen import M2UGenMusicAdapter
from adapters.mert import MusicEncoder
from adapters.styles import ADAPTER_STYLES, build_adapters
from adapters.understanding import MusicAdapter
from adapters.vision import ImageEncoder, VideoEncoder
from choices import options
from mumu.presets import TINY_MERT_ARCH, TINY_VIT_ARCH, TINY_VIVIT_ARCH


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return (MusicEncoder.from_config(MusicEncoderConfig(arch=TINY_MERT_ARCH, window_seconds=4.0, frames_per_step=4)),
            ImageEncoder.from_config(ImageEncoderConfig(arch=TINY_VIT_ARCH)),
            VideoEncoder.from_config(VideoEncoderConfig(arch=TINY_VIVIT_ARCH)))


def test_every_style_of_the_literal_has_a_builder():
    assert tuple(ADAPTER_STYLES) == options(AdapterStyle)


@pytest.mark.parametrize(("style", "tokens", "music_class"), [
    ("mumu", 3, MusicAdapter), ("m2ugen", 1, M2UGenMusicAdapter), ("m2ugen_rnn", 1, M2UGenMusicAdapter),
])
def test_each_style_reads_the_encoders_outputs(encoders, style, tokens, music_class):
    music_enc, image_enc, video_enc = encoders
    cfg = AdapterConfig(llm_width=24, num_tokens=tokens, num_blocks=1, style=style)
    music, image, video = build_adapters(cfg, music_enc, image_enc, video_enc)
    assert isinstance(music, music_class)
    assert (music.pool is not None) == (style != "m2ugen")  # only the plain published style averages over time
    rng = np.random.default_rng(0)
    with torch.no_grad():
        clip = music_enc(rng.standard_normal(24_000).astype(np.float32))
        picture = image_enc([Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8))])
        frames = video_enc([(rng.random((video_enc.num_frames, 20, 20, 3)) * 255).astype(np.uint8)])
        outputs = (music([clip]), image(picture), video(frames))
    assert [tuple(out.shape) for out in outputs] == [(1, tokens, 24)] * 3
