"""The MuMu-LLaMA config tree: one dataclass per component, saved as config.json beside the weights."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adapters.config import (
    AdapterConfig,
    ImageEncoderConfig,
    MusicEncoderConfig,
    VideoEncoderConfig,
)
from checkpoints.sources import anchor
from choices import ChoiceError, check_choice, check_fields, options
from generation.config import ConditioningMode, DecoderConfig
from media.limits import MediaLimits

CONFIG_NAME = "config.json"
CONFIG_VERSION = 1
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Modality = Literal["music", "image", "video"]
InjectionMode = Literal["grouped", "summed"]
# "tokens": learned queries, one per output token, one head per stream; "flat": one query and one head whose output
# is cut into the streams in order (the published AudioLDM2 projector).
ProjectorLayout = Literal["tokens", "flat"]
PromptTemplate = Literal["alpaca", "chat", "m2ugen"]
# "eos": stop on EOS; "m2ugen": the published rule for models that never learned EOS (stop on "\n###", keep the
# reply's first line).
StopRule = Literal["eos", "m2ugen"]
MODALITIES = options(Modality)
# ConditioningMode: "embeddings", the output projector's prediction conditions the decoder; "caption", the assistant's
# reply text, [AUD] tokens stripped, goes through the decoder's own text encoder.
CONDITIONING_MODES = options(ConditioningMode)
QuantizeMode = Literal["8bit", "4bit"]  # bitsandbytes on CUDA, for the frozen base LLM only
DeviceMap = Literal["auto"]  # accelerate's placement over GPU, CPU RAM and disk
QUANTIZE_MODES = options(QuantizeMode)
DEVICE_MAPS = options(DeviceMap)


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
    # How the frozen base weights load (the trained tensors keep their dtype): quantized by bitsandbytes, and/or
    # placed by accelerate over the GPU, CPU RAM and disk. Machine choices, so `--quantize` / `--device-map` set them.
    quantize: QuantizeMode | None = None
    device_map: DeviceMap | None = None

    def __post_init__(self) -> None:
        check_fields(self)


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
    modalities: tuple[Modality, ...] = MODALITIES
    prefix_init_std: float = 0.02
    mode: InjectionMode = "grouped"
    base_value: bool = False
    gate_init: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
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
    layout: ProjectorLayout = "tokens"
    # Which LLM state it reads: None = the final-norm output; k = decoder layer k's output (negative: from the top).
    llm_layer: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.layout == "flat" and any(s.masked for s in self.streams):
            raise ValueError("the flat projector layout predicts no keep-masks: set masked=false on every stream")


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
    """Conversation handling: prompt template, context budget, per-request limits and how music is conditioned."""

    template: PromptTemplate = "alpaca"
    stop_rule: StopRule = "eos"
    system: str | None = None
    max_context_tokens: int = 2048
    max_new_tokens: int = 256
    max_text_chars: int = 4000
    max_turns: int = 64
    feature_cache_size: int = 64
    output_lufs: float | None = -14.0
    conditioning: ConditioningMode = "embeddings"
    # The turn scheduler (mumu/scheduler.py): turns arriving within batch_window_ms of the oldest waiting one share
    # one decoding batch of at most max_batch rows; with max_queue turns waiting, more are refused as busy.
    # continuous_batching: turns arriving while a batch decodes join it at its next step (else they wait for the next
    # batch).
    batch_window_ms: float = 20.0
    max_batch: int = 8
    max_queue: int = 32
    continuous_batching: bool = True
    # Prefix caching (mumu/prefix_cache.py): the keys and values of earlier prompts and replies, at most this many
    # tokens' worth (counted in the memory estimate; 0.5 GiB for a 7B LLM in bf16), reused by prompts that begin alike
    # (the template's preamble, a conversation's earlier turns); 0 turns it off.
    prefix_cache_tokens: int = 1024

    def __post_init__(self) -> None:
        check_fields(self)
        for name, ok, accepted in (("batch_window_ms", 0 <= self.batch_window_ms <= 1000, "in [0, 1000] ms"),
                                   ("max_batch", 1 <= self.max_batch <= 256, "an integer in [1, 256]"),
                                   ("max_queue", 1 <= self.max_queue <= 10000, "an integer in [1, 10000]"),
                                   ("prefix_cache_tokens", 0 <= self.prefix_cache_tokens <= 1 << 20,
                                    "an integer in [0, 1048576]")):
            if not ok:
                raise ValueError(f"pipeline.{name}={getattr(self, name)!r} is out of range: expected {accepted}")


def check_conditioning(value: str) -> str:
    """A conditioning mode that arrives per request (chat option, CLI flag), checked like the config field."""
    return check_choice(value, ConditioningMode, "conditioning")


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
        config = cls.from_dict(data)
        for section in (config.music_encoder, config.image_encoder, config.video_encoder, config.decoder):
            section.source = anchor(section.source, path.parent)  # './' sources sit beside config.json
        return config


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(names)})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ChoiceError as e:  # name the field by its path in the file, not by its class
        raise ChoiceError(f"{where}.{e.name.split('.', 1)[1]}", e.value, e.accepted) from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


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
