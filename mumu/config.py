"""The MuMu-LLaMA config tree: one dataclass per component, saved as config.json beside the weights."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.config import (
    AdapterConfig,
    ImageEncoderConfig,
    MusicEncoderConfig,
    VideoEncoderConfig,
)
from generation.config import DecoderConfig
from media.limits import MediaLimits

CONFIG_NAME = "config.json"
CONFIG_VERSION = 1
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONDITIONING_MODES = ("embeddings", "caption")


@dataclass
class LLMConfig:
    """A Llama-architecture causal LM (HF format) with peft LoRA and the [AUD] output tokens."""

    source: str | None = None
    tokenizer: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    num_audio_tokens: int = 8
    # LlamaConfig fields set on top of the source's config.json (or arch), e.g. the published model's biases.
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class InjectionConfig:
    """Modality features enter the top 3 x group_size layers (music, image, video from bottom to top).

    mode "summed" (the older published M2UGen layout): the sum of all present modality features enters each of
    the top group_size layers. base_value: the injected value uses the base v_proj without LoRA (as published).
    gate_init: the gates' starting value (0: the paper's LLaMA-Adapter zero-init, which leaves a pretrained LLM
    untouched at step 0; a random tiny LLM has nothing to protect, and at 0 its gates never open, see
    docs/training.md).
    """

    group_size: int = 6
    modalities: tuple[str, ...] = ("music", "image", "video")
    prefix_init_std: float = 0.02
    mode: str = "grouped"
    base_value: bool = False
    gate_init: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.gate_init) or not -3.0 <= self.gate_init <= 3.0:
            raise ValueError(f"injection.gate_init must be a number in [-3, 3] (tanh saturates beyond), "
                             f"got {self.gate_init!r}")


@dataclass
class ProjectorStream:
    """One conditioning tensor the output projector predicts for the music decoder."""

    name: str
    num_tokens: int
    width: int
    masked: bool = False


@dataclass
class ProjectorConfig:
    """Output projector: Linear -> transformer with learned queries -> one linear head per stream."""

    width: int = 512
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    ffn_width: int = 2048
    dropout: float = 0.0
    target_scale: float = 10.0
    streams: list[ProjectorStream] = field(default_factory=list)
    # "tokens": learned queries, one per output token, one head per stream; "flat": one query and one head whose
    # output is cut into the streams in order (the published AudioLDM2 projector).
    layout: str = "tokens"
    # Which LLM state it reads: None = the final-norm output; k = decoder layer k's output (negative: from the top).
    llm_layer: int | None = None


@dataclass
class TrainableConfig:
    """Which MuMu-owned parts receive gradients; encoders and LLM base weights are always frozen."""

    adapters: bool = True
    injection: bool = True
    lora: bool = True
    norms: bool = True
    audio_tokens: bool = True
    projector: bool = True
    # Base-LLM parameters that are trained too (fnmatch patterns over the peft model's parameter names, e.g. the
    # published model's norms and biases): saved with the checkpoint and given gradients.
    llm_params: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """Conversation handling: prompt template, context budget, per-request limits and how music is conditioned.

    conditioning: "embeddings" (the output projector's prediction conditions the decoder) or "caption" (the
    assistant's reply text, [AUD] tokens stripped, goes through the decoder's own text encoder).
    """

    template: str = "alpaca"
    # "eos": stop on EOS; "m2ugen": the published rule for models that never learned EOS (stop on "\n###", keep
    # the reply's first line).
    stop_rule: str = "eos"
    system: str | None = None
    max_context_tokens: int = 2048
    max_new_tokens: int = 256
    max_text_chars: int = 4000
    max_turns: int = 64
    feature_cache_size: int = 64
    output_lufs: float | None = -14.0
    conditioning: str = "embeddings"

    def __post_init__(self) -> None:
        check_conditioning(self.conditioning, "pipeline.conditioning")


def check_conditioning(value: str, name: str = "conditioning") -> str:
    """Return value if it is a known conditioning mode, else raise a ValueError naming the choices."""
    if value not in CONDITIONING_MODES:
        raise ValueError(f"{name} must be one of {', '.join(CONDITIONING_MODES)}, got {value!r}")
    return value


@dataclass
class MuMuConfig:
    """The whole model: profile name, seed for random init, and every component's config."""

    profile: str = "custom"
    seed: int = 0
    limits: MediaLimits = field(default_factory=MediaLimits)
    music_encoder: MusicEncoderConfig = field(default_factory=MusicEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    video_encoder: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # The settings of the training run that produced these weights (written by `mumu train`; empty otherwise).
    training: dict[str, Any] = field(default_factory=dict)
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MuMuConfig:
        """Inverse of to_dict; unknown keys are an error so typos never pass silently."""
        version = data.get("version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise ValueError(f"config version {version} is newer than this code understands ({CONFIG_VERSION})")
        return _build(cls, data, "config")

    def save(self, directory: str | Path) -> Path:
        """Write config.json into directory."""
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> MuMuConfig:
        """Read config.json from directory."""
        path = Path(directory) / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        return cls.from_dict(data)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(names)})")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(options[0], value, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        return tuple(value)
    return value
