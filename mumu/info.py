"""Parameter counts and weight-memory estimates per component, computed on the meta device (no downloads)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from generation.interface import MusicDecoder
from generation.registry import build_decoder
from mumu.builder import build_model
from mumu.config import MuMuConfig
from mumu.modeling import MuMuModel

BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
QUANTIZED_BYTES = {"8bit": "int8", "4bit": "int4"}  # --quantize -> bytes per quantized weight
GIB = 2**30
# Not computed from the config: the CUDA context and allocator slack, plus the encoders' and the decoder's
# transient activations (small next to the LLM's KV cache at these sizes). Stated as an allowance in the report.
RUNTIME_ALLOWANCE_GIB = 1.0


def _count(params: Iterable[nn.Parameter]) -> dict[str, Any]:
    params = list(params)
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    memory = {k: round(total * b / GIB, 3) for k, b in BYTES_PER_PARAM.items()}
    return {"params": total, "trainable": trainable, "memory_gib": memory}


def _llm_parts(model: MuMuModel) -> dict[str, list[nn.Parameter]]:
    parts: dict[str, list[nn.Parameter]] = {"base": [], "lora": [], "norms": [], "audio_tokens": []}
    for name, param in model.llm.named_parameters():
        if "lora_" in name:
            key = "lora"
        elif "trainable_tokens_" in name:
            key = "audio_tokens"
        else:
            key = "norms" if name.endswith("norm.weight") else "base"
        parts[key].append(param)
    return parts


def model_report(model: MuMuModel, decoder: MusicDecoder | None = None) -> dict[str, Any]:
    """The component tree with parameter counts (total, trainable) and fp32/bf16/int8/int4 weight memory."""
    cfg = model.config
    tree: dict[str, Any] = {
        "encoders": {
            "music": {"source": cfg.music_encoder.source, **_count(model.music_encoder.parameters())},
            "image": {"source": cfg.image_encoder.source, **_count(model.image_encoder.parameters())},
            "video": {"source": cfg.video_encoder.source, **_count(model.video_encoder.parameters())},
        },
        "adapters": {
            "music": _count(model.music_adapter.parameters()),
            "image": _count(model.image_adapter.parameters()),
            "video": _count(model.video_adapter.parameters()),
        },
        "llm": {"source": cfg.llm.source, **{k: _count(v) for k, v in _llm_parts(model).items()}},
        "injection": _count(model.injection.parameters()),
        "projector": _count(model.projector.parameters()),
    }
    every = list(model.parameters())
    if decoder is not None:
        parts = decoder.components
        tree["decoder"] = {"kind": cfg.decoder.kind, "source": cfg.decoder.source,
                           **{name: _count(module.parameters()) for name, module in parts.items()}}
        every += [p for module in parts.values() for p in module.parameters()]
    return {
        "profile": cfg.profile,
        "decoder": {"kind": cfg.decoder.kind, "source": cfg.decoder.source},
        "components": tree,
        "total": _count(every),
        "note": "memory_gib counts weights only; add activations and the KV cache",
    }


def report(config: MuMuConfig, precision: str = "bf16") -> dict[str, Any]:
    """Build the config's model and music decoder on the meta device and report them, with the memory estimate
    for loading in `precision` (fp32 or bf16; the base LLM as config.llm.quantize says)."""
    model = build_model(config, weights=False)
    decoder = build_decoder(config.decoder, device="meta", weights=False)
    return {**model_report(model, decoder), "estimate": memory_estimate(model, decoder, precision)}


def _quantizable(model: MuMuModel) -> list[nn.Parameter]:
    """The base LLM's decoder-layer Linear weights: what bitsandbytes quantizes (not embeddings, LM head, norms)."""
    return [module.weight for name, module in model.decoder_layers.named_modules()
            if isinstance(module, nn.Linear) and "lora_" not in name]


def memory_estimate(model: MuMuModel, decoder: MusicDecoder, precision: str = "bf16") -> dict[str, Any]:
    """Memory to serve one request: every weight in `precision` (quantized base-LLM Linears at int8/int4), the
    LLM's KV cache and prefill transients at the full context, the prefix cache when full, and a fixed runtime
    allowance."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    cfg = model.config
    size = BYTES_PER_PARAM[precision]
    every = [*model.parameters(), *(p for m in decoder.components.values() for p in m.parameters())]
    weights = sum(p.numel() for p in every) * size
    quantize = cfg.llm.quantize
    if quantize is not None:
        quantized = sum(p.numel() for p in _quantizable(model))
        weights -= quantized * (size - BYTES_PER_PARAM[QUANTIZED_BYTES[quantize]])
    llm = model.llm.get_base_model().config
    context = cfg.pipeline.max_context_tokens
    head_dim = llm.hidden_size // llm.num_attention_heads
    kv_per_token = 2 * llm.num_hidden_layers * llm.num_key_value_heads * head_dim * size
    kv_cache = kv_per_token * context
    prefix_cache = kv_per_token * cfg.pipeline.prefix_cache_tokens
    # Prefill over the whole context: fp32 logits for every position, and one layer's MLP (gate, up, product).
    prefill = context * llm.vocab_size * 4 + 3 * context * llm.intermediate_size * size
    gib = {"weights": weights / GIB, "kv_cache": kv_cache / GIB, "prefill": prefill / GIB,
           "prefix_cache": prefix_cache / GIB, "allowance": RUNTIME_ALLOWANCE_GIB}
    return {"precision": precision, "quantize": quantize, "context_tokens": context,
            **{k: round(v, 3) for k, v in gib.items()}, "total_gib": round(sum(gib.values()), 3)}


def format_report(data: dict[str, Any]) -> str:
    """A human-readable table of the report."""
    lines = [f"profile {data['profile']}  decoder {data['decoder']['kind']}",
             f"{'component':<26}{'params':>16}{'trainable':>16}{'bf16 GiB':>10}{'int4 GiB':>10}"]

    def walk(node: dict[str, Any], path: str) -> None:
        if "params" in node:
            mem = node["memory_gib"]
            lines.append(f"{path:<26}{node['params']:>16,}{node['trainable']:>16,}{mem['bf16']:>10.3f}"
                         f"{mem['int4']:>10.3f}")
        for key, value in node.items():
            if isinstance(value, dict) and key != "memory_gib":
                walk(value, f"{path}.{key}" if path else key)

    walk(data["components"], "")
    walk({"total": data["total"]}, "")
    lines.append(data["note"])
    est = data["estimate"]
    weights = f"weights {est['weights']:.2f} ({est['precision']}" + (f", LLM {est['quantize']})" if est["quantize"]
                                                                       else ")")
    lines.append(f"to serve: {weights} + KV cache {est['kv_cache']:.2f} + prefill {est['prefill']:.2f} "
                 f"({est['context_tokens']} tokens) + prefix cache {est['prefix_cache']:.2f} + allowance "
                 f"{est['allowance']:.2f} = {est['total_gib']:.2f} GiB")
    return "\n".join(lines)
