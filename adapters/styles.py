"""Adapter styles: AdapterConfig.style -> the builder of the three understanding adapters (music, image, video)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from adapters.config import AdapterConfig, AdapterStyle
from adapters.m2ugen import M2UGenMusicAdapter, M2UGenTokenAdapter
from adapters.mert import MusicEncoder
from adapters.understanding import ImageAdapter, MusicAdapter, VideoAdapter
from adapters.vision import ImageEncoder, VideoEncoder


@dataclass
class Encoders:
    """The frozen encoders whose output shapes size the adapters."""

    music: MusicEncoder
    image: ImageEncoder
    video: VideoEncoder


def _mumu(enc: Encoders, cfg: AdapterConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    return (MusicAdapter(enc.music.num_layers_out, enc.music.width, cfg),
            ImageAdapter(enc.image.num_tokens, enc.image.width, cfg),
            VideoAdapter(enc.video.temporal_tokens, enc.video.spatial_tokens, enc.video.width, cfg))


def _m2ugen(enc: Encoders, cfg: AdapterConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    # "m2ugen_rnn" differs only inside the music adapter, which reads cfg.style itself.
    return (M2UGenMusicAdapter(enc.music.num_layers_out, enc.music.width, cfg),
            M2UGenTokenAdapter(enc.image.num_tokens, enc.image.width, cfg),
            M2UGenTokenAdapter(enc.video.num_tokens, enc.video.width, cfg))


ADAPTER_STYLES: dict[AdapterStyle, Callable[[Encoders, AdapterConfig], tuple[nn.Module, nn.Module, nn.Module]]] = {
    "mumu": _mumu,
    "m2ugen": _m2ugen,
    "m2ugen_rnn": _m2ugen,
}


def build_adapters(
    cfg: AdapterConfig, music: MusicEncoder, image: ImageEncoder, video: VideoEncoder
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(music, image, video) adapters of cfg.style, sized by the encoders' outputs (cfg is checked when made)."""
    return ADAPTER_STYLES[cfg.style](Encoders(music, image, video), cfg)
