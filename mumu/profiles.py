"""Profiles: `tiny` and `full` are small builder functions over one general builder (torchtune style); the
architectures they use live in mumu/presets.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from adapters.config import (
    AdapterConfig,
    ImageEncoderConfig,
    MusicEncoderConfig,
    VideoEncoderConfig,
)
from checkpoints.sources import TINY_TOKENIZER, resolve_source
from generation.registry import check_kind
from media.limits import MediaLimits
from mumu import presets
from mumu.config import (
    DecoderConfig,
    InjectionConfig,
    LLMConfig,
    MuMuConfig,
    ProjectorConfig,
    ProjectorStream,
    TrainableConfig,
)

# Conditioning tokens the projector predicts per text stream: the published T5 length (full), a tiny one (tiny).
FULL_TEXT_TOKENS = 128
TINY_TEXT_TOKENS = 16
_TINY_DECODER_ARCHS = {"musicgen": presets.TINY_MUSICGEN_ARCH, "musicgen_melody": presets.TINY_MUSICGEN_MELODY_ARCH,
                       "audioldm2": presets.TINY_AUDIOLDM2_ARCH}


def full_decoder(kind: str, musicgen_size: str = "medium") -> DecoderConfig:
    """The published decoder checkpoint for a kind (MusicGen in small/medium/large), with its arch for counting."""
    check_kind(kind)
    if kind == "audioldm2":
        return DecoderConfig(kind=kind, source=presets.AUDIOLDM2_MUSIC, arch=presets.AUDIOLDM2_MUSIC_ARCH)
    if musicgen_size not in presets.MUSICGEN_SIZES:
        raise ValueError(f"unknown MusicGen size {musicgen_size!r}; choose one of {', '.join(presets.MUSICGEN_SIZES)}")
    preset = "melody" if kind == "musicgen_melody" else musicgen_size
    return DecoderConfig(kind=kind, source=presets.MUSICGEN_CHECKPOINTS[preset], arch=presets.MUSICGEN_ARCHS[preset])


def tiny_decoder(kind: str) -> DecoderConfig:
    """The tiny random-init decoder for a kind, captioning with the repo's tiny tokenizer."""
    return DecoderConfig(kind=check_kind(kind), tokenizer=TINY_TOKENIZER, arch=_TINY_DECODER_ARCHS[kind])


def decoder_streams(decoder: DecoderConfig, text_tokens: int) -> list[ProjectorStream]:
    """The projector streams a decoder reads, sized from its arch: text-encoder states (text_tokens of them, with a
    keep-mask) and, for AudioLDM2, its GPT-2's generated states."""
    arch = decoder.arch
    if decoder.kind == "audioldm2":
        return [ProjectorStream("prompt_embeds", text_tokens, arch["t5"]["d_model"], masked=True),
                ProjectorStream("generated_prompt_embeds", arch["lm_tokens"], arch["gpt2"]["n_embd"], masked=False)]
    return [ProjectorStream("encoder_hidden_states", text_tokens, arch["text_encoder"]["d_model"], masked=True)]


def sibling_decoder(config: MuMuConfig, kind: str) -> DecoderConfig:
    """Another decoder kind from the same family as config's model (tiny ones for tiny, published ones otherwise).

    The model's own kind gives its own config (a MusicGen model keeps its size). MusicGen for a MusicGen-Melody or
    AudioLDM2 model is medium: the full profile's default and the 1.5B class of MusicGen-Melody. The length limits
    are the model's own, so one duration range holds whichever decoder a turn picks.
    """
    check_kind(kind)
    own = config.decoder
    if kind == own.kind:
        return own
    cfg = tiny_decoder(kind) if config.profile == "tiny" else full_decoder(kind, "medium")
    return replace(cfg, max_duration=own.max_duration, window_seconds=own.window_seconds,
                   overlap_seconds=own.overlap_seconds)


def build_config(
    *,
    profile: str,
    llm: LLMConfig,
    music_encoder: MusicEncoderConfig,
    image_encoder: ImageEncoderConfig,
    video_encoder: VideoEncoderConfig,
    decoder: DecoderConfig,
    text_tokens: int,
    adapter_blocks: int = 3,
    adapter_tokens: int = 1,
    group_size: int = 6,
    gate_init: float = 0.0,
    standardize: bool = False,
    projector: dict[str, Any] | None = None,
    seed: int = 0,
) -> MuMuConfig:
    """The one general builder every preset goes through (returned in JSON-canonical form: lists, not tuples)."""
    width = llm.arch["hidden_size"]
    config = MuMuConfig(
        profile=profile,
        seed=seed,
        limits=MediaLimits(),
        music_encoder=music_encoder,
        image_encoder=image_encoder,
        video_encoder=video_encoder,
        adapter=AdapterConfig(llm_width=width, num_tokens=adapter_tokens, num_blocks=adapter_blocks,
                              standardize=standardize),
        llm=llm,
        injection=InjectionConfig(group_size=group_size, gate_init=gate_init),
        projector=ProjectorConfig(streams=decoder_streams(decoder, text_tokens), **(projector or {})),
        decoder=decoder,
        trainable=TrainableConfig(),
    )
    return MuMuConfig.from_dict(config.to_dict())


def tiny(decoder: str = "musicgen", seed: int = 0) -> MuMuConfig:
    """Every component small and random-init from configs in the repo: builds offline in seconds."""
    return build_config(
        profile="tiny",
        seed=seed,
        llm=LLMConfig(tokenizer=TINY_TOKENIZER, arch=dict(presets.TINY_LLAMA_ARCH), lora_rank=4,
                      lora_alpha=8.0, lora_dropout=0.0),
        music_encoder=MusicEncoderConfig(arch=dict(presets.TINY_MERT_ARCH), window_seconds=4.0, frames_per_step=4),
        image_encoder=ImageEncoderConfig(arch=dict(presets.TINY_VIT_ARCH)),
        video_encoder=VideoEncoderConfig(arch=dict(presets.TINY_VIVIT_ARCH)),
        decoder=tiny_decoder(decoder),
        text_tokens=TINY_TEXT_TOKENS,
        adapter_blocks=2,
        group_size=2,
        gate_init=1.0,  # a random LLM has nothing to protect; zero gates never opened (docs/training.md)
        standardize=True,  # encoder channels at unit scale: weak attributes are learned (docs/training.md)
        projector=dict(width=32, heads=2, encoder_layers=1, decoder_layers=1, ffn_width=64),
    )


def full(decoder: str = "musicgen", llm_source: str = presets.LLAMA2_7B, musicgen_size: str = "medium") -> MuMuConfig:
    """The published components: MERT-v1-330M, ViT-B/16, ViViT-B/16x2, a Llama-2-7B-class LLM, MusicGen/AudioLDM2."""
    return build_config(
        profile="full",
        llm=LLMConfig(source=llm_source, arch=dict(presets.LLAMA2_7B_ARCH)),
        music_encoder=MusicEncoderConfig(source=presets.MERT_V1_330M, arch=dict(presets.MERT_V1_330M_ARCH)),
        image_encoder=ImageEncoderConfig(source=presets.VIT_B16, arch=dict(presets.VIT_B16_ARCH)),
        video_encoder=VideoEncoderConfig(source=presets.VIVIT_B16X2, arch=dict(presets.VIVIT_B16X2_ARCH)),
        decoder=full_decoder(decoder, musicgen_size),
        text_tokens=FULL_TEXT_TOKENS,
    )


PROFILES = {"tiny": tiny, "full": full}


def get_profile(name: str, **kwargs: Any) -> MuMuConfig:
    """Config for a named profile."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name](**kwargs)


def component_sources(config: MuMuConfig) -> dict[str, str | None]:
    """Where each pretrained component comes from (None: random init from its arch)."""
    return {
        "music_encoder": config.music_encoder.source,
        "image_encoder": config.image_encoder.source,
        "video_encoder": config.video_encoder.source,
        "llm": config.llm.source,
        "decoder": config.decoder.source,
    }


def missing_sources(config: MuMuConfig) -> list[str]:
    """Sources that are neither a local directory nor already in the Hugging Face cache (checked offline)."""
    missing = []
    for name, source in component_sources(config).items():
        if source is None or Path(resolve_source(source)).is_dir():
            continue
        if not isinstance(try_to_load_from_cache(source, "config.json"), str):
            missing.append(f"{name} ({source})")
    return missing

