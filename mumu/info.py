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
GIB = 2**30


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


def report(config: MuMuConfig) -> dict[str, Any]:
    """Build the config's model and music decoder on the meta device and report them."""
    return model_report(build_model(config, weights=False), build_decoder(config.decoder, device="meta", weights=False))


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
    return "\n".join(lines)
