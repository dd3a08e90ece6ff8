"""The LLM bridge: HF LlamaForCausalLM, [AUD] token rows initialised from the mean embedding, peft LoRA."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from checkpoints.sources import resolve_source
from mumu.config import LLMConfig


def llama_config(cfg: LLMConfig, from_source: bool = True) -> LlamaConfig:
    """The architecture config: the checkpoint's own when a source is set (and asked for), else cfg.arch."""
    if cfg.source is not None and from_source:
        return LlamaConfig.from_pretrained(resolve_source(cfg.source), **cfg.overrides)
    return LlamaConfig(**{**cfg.arch, **cfg.overrides})


def audio_token_ids(cfg: LLMConfig, base_vocab: int) -> list[int]:
    """Ids the [AUD] tokens get when appended to a tokenizer of base_vocab entries."""
    return list(range(base_vocab, base_vocab + cfg.num_audio_tokens))


def check_quantize(quantize: str | None) -> None:
    """A clear error when this machine cannot load a quantized LLM (bitsandbytes needs CUDA)."""
    if quantize is None:
        return
    if not torch.cuda.is_available():
        raise ValueError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this machine has none. "
                         "On CPU, leave --quantize out")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"--quantize {quantize} needs bitsandbytes, which is not installed: pip install bitsandbytes")


def placement(cfg: LLMConfig) -> dict[str, Any]:
    """from_pretrained arguments for cfg.quantize / cfg.device_map; a clear error where they cannot work.

    Quantized weights live on the GPU (bitsandbytes), so a quantized LLM without a device map goes whole onto the
    current CUDA device. The [AUD] rows and LM head stay unquantized (transformers skips lm_head by default).
    """
    if cfg.quantize is None and cfg.device_map is None:
        return {}
    if cfg.source is None:
        raise ValueError("--quantize / --device-map apply to pretrained LLM weights; this config has no llm.source")
    if cfg.quantize is None:
        return {"device_map": cfg.device_map}
    check_quantize(cfg.quantize)
    return {"quantization_config": quantization_config(cfg.quantize),
            "device_map": cfg.device_map or {"": torch.cuda.current_device()}}


def quantization_config(mode: str) -> BitsAndBytesConfig:
    """bitsandbytes settings for --quantize: 4-bit NF4 with double quantization and bf16 compute (QLoRA's), or
    LLM.int8()."""
    if mode == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def is_placed(cfg: LLMConfig) -> bool:
    """Whether the base LLM is placed at load time (quantized or device-mapped), so it must not be moved after."""
    return cfg.quantize is not None or cfg.device_map is not None


def load_base_llm(cfg: LLMConfig, dtype: torch.dtype | None = None, weights: bool = True) -> LlamaForCausalLM:
    """Build the frozen base LLM: pretrained from cfg.source (quantized / device-mapped as cfg says), or random-init
    (seeded by the caller)."""
    placed = placement(cfg) if weights else {}  # a weightless build only counts: nothing to place
    if cfg.source is not None and weights:
        # Parameters the overrides add (e.g. biases) are absent from the source; their values come with the
        # MuMu checkpoint's trained tensors.
        model = LlamaForCausalLM.from_pretrained(resolve_source(cfg.source), dtype=dtype, **placed, **cfg.overrides)
    else:
        model = LlamaForCausalLM(llama_config(cfg, from_source=weights))
        if dtype is not None:
            model.to(dtype)
    model.requires_grad_(False)
    return model


def add_audio_rows(model: LlamaForCausalLM, audio_ids: list[int]) -> None:
    """Grow the vocabulary to hold audio_ids and set their input and output rows to the mean row."""
    old = model.get_input_embeddings().weight.shape[0]
    new = max(old, max(audio_ids) + 1)
    if new != old:
        # transformers fills the new rows at random before they are set below: keep that draw off the caller's RNG
        with torch.random.fork_rng(devices=[]):
            model.resize_token_embeddings(new, mean_resizing=False)
    known = min(min(audio_ids), old)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            weight = layer.weight
            if weight.is_meta:
                continue
            weight[audio_ids] = weight[:known].float().mean(0).to(weight.dtype)


def attach_lora(model: LlamaForCausalLM, cfg: LLMConfig, audio_ids: list[int], train_tokens: bool) -> PeftModel:
    """Wrap the LLM with peft: LoRA on cfg.lora_targets and trainable [AUD] rows (input and output)."""
    if model.config.tie_word_embeddings:
        raise ValueError("tied input/output embeddings are not supported: the [AUD] output rows must train alone")
    token_rows = {"embed_tokens": audio_ids, "lm_head": audio_ids} if train_tokens else None
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        trainable_token_indices=token_rows,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers API deprecated in 5.x; nothing a user can act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)
