"""Size presets: `tiny` and `full` are small builder functions over one general builder (torchtune style)."""

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
from adapters.mert import MERT_V1_330M_ARCH, TINY_MERT_ARCH
from adapters.vision import TINY_VIT_ARCH, TINY_VIVIT_ARCH, VIT_B16_ARCH, VIVIT_B16X2_ARCH
from checkpoints.sources import resolve_source
from generation.audioldm2 import AUDIOLDM2_MUSIC_ARCH, TINY_AUDIOLDM2_ARCH
from generation.musicgen import MUSICGEN_ARCHS, MUSICGEN_PRESETS, TINY_ARCHS
from media.limits import MediaLimits
from mumu.config import (
    DecoderConfig,
    InjectionConfig,
    LLMConfig,
    MuMuConfig,
    ProjectorConfig,
    ProjectorStream,
    TrainableConfig,
)

DECODER_KINDS = ("musicgen", "musicgen_melody", "audioldm2")

LLAMA2_7B_ARCH: dict[str, Any] = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2,
)
# initializer_range: Llama's 0.02 is sized for 4096-wide layers; at width 64 it leaves attention uniform, so context
# barely reaches later positions and the tiny model cannot learn from what it reads (bench/learning_probe.py).
TINY_LLAMA_ARCH: dict[str, Any] = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=7, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2,
)

# Conditioning each decoder reads, as projector streams (name, tokens, width, masked).
FULL_STREAMS: dict[str, list[tuple[str, int, int, bool]]] = {
    "musicgen": [("encoder_hidden_states", 128, 768, True)],
    "musicgen_melody": [("encoder_hidden_states", 128, 768, True)],
    "audioldm2": [("prompt_embeds", 128, 1024, True), ("generated_prompt_embeds", 8, 768, False)],
}
MUSICGEN_SIZES = ("small", "medium", "large")
TINY_TOKENIZER = "builtin:tiny-tokenizer"


def full_decoder(kind: str, musicgen_size: str = "medium") -> DecoderConfig:
    """The published decoder checkpoint for a kind (MusicGen in small/medium/large), with its arch for counting."""
    if kind == "audioldm2":
        return DecoderConfig(kind=kind, source="cvssp/audioldm2-music", arch=AUDIOLDM2_MUSIC_ARCH)
    preset = "melody" if kind == "musicgen_melody" else musicgen_size
    if preset not in MUSICGEN_ARCHS:
        raise ValueError(f"unknown MusicGen size {musicgen_size!r}; choose one of {', '.join(MUSICGEN_SIZES)}")
    return DecoderConfig(kind=kind, source=MUSICGEN_PRESETS[preset], arch=MUSICGEN_ARCHS[preset])


def tiny_decoder(kind: str) -> DecoderConfig:
    """The tiny random-init decoder for a kind, captioning with the repo's tiny tokenizer."""
    arch = TINY_AUDIOLDM2_ARCH if kind == "audioldm2" else TINY_ARCHS[kind]
    return DecoderConfig(kind=kind, tokenizer=TINY_TOKENIZER, arch=arch)


def sibling_decoder(config: MuMuConfig, kind: str) -> DecoderConfig:
    """Another decoder kind from the same family as config's model (tiny ones for tiny, published ones otherwise).

    The model's own kind gives its own config (a MusicGen model keeps its size). MusicGen for a MusicGen-Melody or
    AudioLDM2 model is medium: the full profile's default and the 1.5B class of MusicGen-Melody. The length limits
    are the model's own, so one duration range holds whichever decoder a turn picks.
    """
    _check_decoder(kind)
    own = config.decoder
    if kind == own.kind:
        return own
    cfg = tiny_decoder(kind) if config.profile == "tiny" else full_decoder(kind, "medium")
    return replace(cfg, max_duration=own.max_duration, window_seconds=own.window_seconds,
                   overlap_seconds=own.overlap_seconds)


TINY_DECODERS: dict[str, list[tuple[str, int, int, bool]]] = {
    "musicgen": [("encoder_hidden_states", 16, 32, True)],
    "musicgen_melody": [("encoder_hidden_states", 16, 32, True)],
    "audioldm2": [("prompt_embeds", 16, 32, True), ("generated_prompt_embeds", 8, 16, False)],
}


def build_config(
    *,
    profile: str,
    llm: LLMConfig,
    music_encoder: MusicEncoderConfig,
    image_encoder: ImageEncoderConfig,
    video_encoder: VideoEncoderConfig,
    decoder: DecoderConfig,
    streams: list[tuple[str, int, int, bool]],
    adapter_blocks: int = 3,
    adapter_tokens: int = 1,
    group_size: int = 6,
    gate_init: float = 0.0,
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
        adapter=AdapterConfig(llm_width=width, num_tokens=adapter_tokens, num_blocks=adapter_blocks),
        llm=llm,
        injection=InjectionConfig(group_size=group_size, gate_init=gate_init),
        projector=ProjectorConfig(
            streams=[ProjectorStream(name, n, w, masked) for name, n, w, masked in streams], **(projector or {})
        ),
        decoder=decoder,
        trainable=TrainableConfig(),
    )
    return MuMuConfig.from_dict(config.to_dict())


def _check_decoder(decoder: str) -> None:
    if decoder not in DECODER_KINDS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODER_KINDS)}")


def tiny(decoder: str = "musicgen", seed: int = 0) -> MuMuConfig:
    """Every component small and random-init from configs in the repo: builds offline in seconds."""
    _check_decoder(decoder)
    return build_config(
        profile="tiny",
        seed=seed,
        llm=LLMConfig(tokenizer=TINY_TOKENIZER, arch=dict(TINY_LLAMA_ARCH), lora_rank=4,
                      lora_alpha=8.0, lora_dropout=0.0),
        music_encoder=MusicEncoderConfig(arch=dict(TINY_MERT_ARCH), window_seconds=4.0, frames_per_step=4),
        image_encoder=ImageEncoderConfig(arch=dict(TINY_VIT_ARCH)),
        video_encoder=VideoEncoderConfig(arch=dict(TINY_VIVIT_ARCH)),
        decoder=tiny_decoder(decoder),
        streams=TINY_DECODERS[decoder],
        adapter_blocks=2,
        group_size=2,
        gate_init=1.0,  # a random LLM has nothing to protect; zero gates never opened (docs/training.md)
        projector=dict(width=32, heads=2, encoder_layers=1, decoder_layers=1, ffn_width=64),
    )


def full(
    decoder: str = "musicgen", llm_source: str = "meta-llama/Llama-2-7b-hf", musicgen_size: str = "medium"
) -> MuMuConfig:
    """The published components: MERT-v1-330M, ViT-B/16, ViViT-B/16x2, a Llama-2-7B-class LLM, MusicGen/AudioLDM2."""
    _check_decoder(decoder)
    return build_config(
        profile="full",
        llm=LLMConfig(source=llm_source, arch=dict(LLAMA2_7B_ARCH)),
        music_encoder=MusicEncoderConfig(source="m-a-p/MERT-v1-330M", arch=dict(MERT_V1_330M_ARCH)),
        image_encoder=ImageEncoderConfig(source="google/vit-base-patch16-224", arch=dict(VIT_B16_ARCH)),
        video_encoder=VideoEncoderConfig(source="google/vivit-b-16x2-kinetics400", arch=dict(VIVIT_B16X2_ARCH)),
        decoder=full_decoder(decoder, musicgen_size),
        streams=FULL_STREAMS[decoder],
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


def resolve_profile(name: str, decoder: str = "musicgen") -> tuple[MuMuConfig, str | None]:
    """A config for tiny/full/auto; auto falls back to tiny with a reason when full weights are not local."""
    if name != "auto":
        return get_profile(name, decoder=decoder), None
    config = full(decoder=decoder)
    missing = missing_sources(config)
    if not missing:
        return config, None
    reason = (f"full-profile weights not found locally ({', '.join(missing)}); running the tiny profile, "
              "whose random weights give gibberish text and noise music")
    return tiny(decoder=decoder), reason
