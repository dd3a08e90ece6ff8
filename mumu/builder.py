"""Build a MuMuModel from a config: every component from its source, or seeded random init from its arch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import IntEnum

import torch

from adapters.mert import MusicEncoder
from adapters.vision import ImageEncoder, VideoEncoder
from mumu.config import MuMuConfig
from mumu.llm import add_audio_rows, attach_lora, audio_token_ids, is_placed, load_base_llm
from mumu.modeling import MuMuModel
from mumu.tokens import SpecialIds, load_tokenizer, special_ids


class SeedOffset(IntEnum):
    """Offsets from config.seed: every randomly initialised part draws from its own stream, the same in every build."""

    MUSIC_ENCODER = 0
    IMAGE_ENCODER = 1
    VIDEO_ENCODER = 2
    BASE_LLM = 3
    LORA = 4  # LoRA matrices and the trainable [AUD] rows
    MUMU = 5  # adapters, injection and projector
    DECODERS = 1000  # + the kind's index in DECODER_KINDS: the decoders a pipeline loads


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random init inside, the caller's RNG state untouched outside."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class FrozenEncoders:
    """The frozen media encoders without the LLM: all that computing a dataset's features needs."""

    config: MuMuConfig
    music_encoder: MusicEncoder
    image_encoder: ImageEncoder
    video_encoder: VideoEncoder


def _encoders(config: MuMuConfig, dtype: torch.dtype | None, weights: bool) -> tuple:
    seed = config.seed
    with seeded(seed + SeedOffset.MUSIC_ENCODER):
        music = MusicEncoder.from_config(config.music_encoder, dtype=dtype, weights=weights)
    with seeded(seed + SeedOffset.IMAGE_ENCODER):
        image = ImageEncoder.from_config(config.image_encoder, dtype=dtype, weights=weights)
    with seeded(seed + SeedOffset.VIDEO_ENCODER):
        video = VideoEncoder.from_config(config.video_encoder, dtype=dtype, weights=weights)
    return music, image, video


def build_encoders(
    config: MuMuConfig, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> FrozenEncoders:
    """The same frozen encoders build_model makes (same sources, same seeded random init), on `device`."""
    music, image, video = _encoders(config, dtype, weights=True)
    return FrozenEncoders(config, music.to(device).eval(), image.to(device).eval(), video.to(device).eval())


def build_model(
    config: MuMuConfig, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
    weights: bool = True,
) -> MuMuModel:
    """Assemble the model: frozen encoders, the LoRA Llama with its [AUD] rows, adapters, injection and projector.

    Every part with a source loads it; every part without one is initialised at random from its arch, seeded from
    `config.seed` plus the part's SeedOffset, so two builds of one config are identical and the caller's RNG state is
    left as it was.

    Args:
        config: the whole model (see mumu.config); its fields were checked when it was made or loaded.
        device: where the built model lives; pretrained weights load on the CPU and move there once.
        dtype: dtype of the frozen pretrained parts (None: as stored).
        weights: False builds on the meta device from the archs only: no downloads, no memory, no tokenizer
            (parameter counts and reports).

    Returns:
        The model in eval mode, with requires_grad as `config.trainable` says.

    Raises:
        ValueError: the parts do not fit together (adapter width vs LLM width, more injection layers than the LLM
            has, a trainable.llm_params pattern that matches nothing), a tokenizer that lacks the [AUD] tokens or
            puts them elsewhere than appended to the vocabulary, or a checkpoint that lacks weights.
        OSError: a source that is neither a local directory nor a downloadable (or cached) Hub id.
    """
    seed = config.seed
    # Pretrained weights load on the CPU and move once; the meta context only serves weightless builds.
    with nullcontext() if weights else torch.device("meta"):
        music, image, video = _encoders(config, dtype, weights)
        with seeded(seed + SeedOffset.BASE_LLM):
            base = load_base_llm(config.llm, dtype=dtype, weights=weights)
        tokenizer = load_tokenizer(config.llm) if weights else None
        if tokenizer is not None:
            ids = special_ids(tokenizer, config.llm.num_audio_tokens)
            expected = audio_token_ids(config.llm, len(tokenizer) - config.llm.num_audio_tokens)
            if list(ids.audio) != expected:
                raise ValueError(f"[AUD] tokens got ids {ids.audio}, expected them appended at {expected}")
        else:
            llm_cfg = base.config
            audio = audio_token_ids(config.llm, llm_cfg.vocab_size)
            ids = SpecialIds(llm_cfg.bos_token_id, llm_cfg.eos_token_id, llm_cfg.pad_token_id or 0, tuple(audio))
        add_audio_rows(base, list(ids.audio))
        with seeded(seed + SeedOffset.LORA):
            llm = attach_lora(base, config.llm, list(ids.audio), config.trainable.audio_tokens)
        with seeded(seed + SeedOffset.MUMU):
            model = MuMuModel(config, ids, music, image, video, llm, tokenizer=tokenizer)
    model.set_trainable()
    if weights:
        _place(model, device)
    return model.eval()


def _place(model: MuMuModel, device: str | torch.device) -> None:
    """Move the model to device; a quantized / device-mapped LLM stays where loading put it (bitsandbytes and
    accelerate's offload hooks do not survive a move), and everything else goes to device."""
    if not is_placed(model.config.llm):
        model.to(device)
        return
    for name, child in model.named_children():
        if name != "llm":
            child.to(device)
