"""Published M2UGen tensor names -> MuMu trained-tensor names, with the Meta -> HF RoPE row permutation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mumu.upstream.loading import ADAPTER_PREFIXES, Layout

LLM = "llm.base_model.model."  # our trained_state_dict prefix of the peft-wrapped LlamaForCausalLM
ATTENTION = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
FFN = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
AUDIO_TOKENS = 8  # [AUD0..7]: the published vocabulary is the base one plus these rows
# The published run trained every LLaMA norm and bias (norms/biases/LoRA in all stages).
NORM_AND_BIAS_PARAMS = ["*.input_layernorm.weight", "*.post_attention_layernorm.weight", "*model.norm.weight",
                        "*_proj.base_layer.bias"]


def rope_permute(rows: torch.Tensor, heads: int) -> torch.Tensor:
    """Meta's interleaved rotary pairs -> HF's rotate_half halves, per head, on dim 0 (weights, biases, LoRA B)."""
    # As transformers' convert_llama_weights_to_hf.py: written here because it is a private helper of a script.
    n = rows.shape[0]
    return rows.reshape(heads, n // heads // 2, 2, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def identity(t: torch.Tensor) -> torch.Tensor:
    """The tensor unchanged."""
    return t


@dataclass(frozen=True)
class Source:
    """Where one of our tensors comes from: a published key and how to transform it."""

    key: str
    transform: Callable[[torch.Tensor], torch.Tensor] = identity


def _adapter_names(layout: Layout) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for prefix, modality in ADAPTER_PREFIXES.items():
        ours = f"{modality}_adapter"
        for part in ("weight", "bias"):
            out[f"{ours}.aggregate.{part}"] = Source(f"{prefix}_agg.{part}")
            out[f"{ours}.project.proj.{part}"] = Source(f"{prefix}_proj.{part}")
        for k in range(1, layout.adapter_blocks + 1):
            block = f"{ours}.project.blocks.{k - 1}"
            out[f"{block}.norm.weight"] = Source(f"{prefix}_norm_{k}.weight")
            for theirs, name in (("f1", "gate"), ("f3", "up"), ("f2", "down")):
                out[f"{block}.{name}.weight"] = Source(f"{prefix}_{theirs}_{k}.weight")
    if layout.music_rnn:
        for part in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            out[f"music_adapter.pool.rnn.{part}"] = Source(f"mu_mert_rnn.{part}")
        for part in ("weight", "bias"):
            out[f"music_adapter.pool.score.{part}"] = Source(f"mu_mert_attention.{part}")
    return out


def _llm_names(layout: Layout) -> dict[str, Source]:
    heads = layout.heads

    def permuted(t: torch.Tensor) -> torch.Tensor:
        return rope_permute(t, heads)

    out: dict[str, Source] = {}
    for i in range(layout.layers):
        theirs, ours = f"llama.layers.{i}", f"{LLM}model.layers.{i}"
        for w, proj in ATTENTION.items():
            rope = permuted if w in ("wq", "wk") else identity
            base = f"{ours}.self_attn.{proj}"
            out[f"{base}.lora_A.default.weight"] = Source(f"{theirs}.attention.lora_{w}_l1.weight")
            out[f"{base}.lora_B.default.weight"] = Source(f"{theirs}.attention.lora_{w}_l2.weight", rope)
        out[f"{ours}.self_attn.q_proj.base_layer.bias"] = Source(f"{theirs}.attention.wq.bias", permuted)
        out[f"{ours}.self_attn.o_proj.base_layer.bias"] = Source(f"{theirs}.attention.wo.bias")
        for w, proj in FFN.items():
            base = f"{ours}.mlp.{proj}"
            out[f"{base}.lora_A.default.weight"] = Source(f"{theirs}.feed_forward.lora_{w}_l1.weight")
            out[f"{base}.lora_B.default.weight"] = Source(f"{theirs}.feed_forward.lora_{w}_l2.weight")
            out[f"{base}.base_layer.bias"] = Source(f"{theirs}.feed_forward.{w}.bias")
        out[f"{ours}.input_layernorm.weight"] = Source(f"{theirs}.attention_norm.weight")
        out[f"{ours}.post_attention_layernorm.weight"] = Source(f"{theirs}.ffn_norm.weight")
    out[f"{LLM}model.norm.weight"] = Source("llama.norm.weight")
    base_vocab = layout.vocab - AUDIO_TOKENS
    out[f"{LLM}model.embed_tokens.token_adapter.trainable_tokens_delta.default"] = Source(
        "llama.tok_embeddings.weight", lambda t: t[base_vocab:].clone())
    out[f"{LLM}lm_head.token_adapter.trainable_tokens_delta.default"] = Source(
        "llama.output.weight", lambda t: t[base_vocab:].clone())
    return out


def gather_gates(state: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
    """(span, heads) tanh-gate logits of the injected layers, from the per-layer (1, heads, 1, 1) gates."""
    first = layout.layers - layout.prefix_rows
    return torch.stack([state[f"llama.layers.{i}.attention.gate"].reshape(-1)
                        for i in range(first, layout.layers)])


def _projector_names(layout: Layout, keys: list[str], flat: bool, stream: str | None) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for key in keys:
        if key.startswith("output_projector.tfm."):
            out["projector.transformer." + key[len("output_projector.tfm."):]] = Source(key)
    for part in ("weight", "bias"):
        out[f"projector.inp.{part}"] = Source(f"output_projector.fc.{part}")
        head = "projector.flat" if flat else f"projector.heads.{stream}"
        out[f"{head}.{part}"] = Source(f"output_projector.model.{part}")
    out["projector.queries"] = Source("output_projector.query_embs", lambda t: t[0])
    return out


def trained_sources(layout: Layout, keys: list[str], flat: bool, stream: str | None) -> dict[str, Source]:
    """Our trained tensor name -> its published source, for everything except the injection gates."""
    names = {**_adapter_names(layout), **_llm_names(layout), **_projector_names(layout, keys, flat, stream)}
    names["injection.prefix"] = Source("prefix_query.weight", lambda t: t[:, None, :])
    return names


def base_sources(layout: Layout) -> dict[str, tuple[str, Source]]:
    """Base-LLM tensors the published file also holds: HF LlamaForCausalLM name -> (our peft name, source)."""
    heads = layout.heads
    out: dict[str, tuple[str, Source]] = {}
    for i in range(layout.layers):
        for w, proj in ATTENTION.items():
            rope = (lambda t: rope_permute(t, heads)) if w in ("wq", "wk") else identity
            hf = f"model.layers.{i}.self_attn.{proj}.weight"
            out[hf] = (f"{LLM}model.layers.{i}.self_attn.{proj}.base_layer.weight",
                       Source(f"llama.layers.{i}.attention.{w}.weight", rope))
        for w, proj in FFN.items():
            hf = f"model.layers.{i}.mlp.{proj}.weight"
            out[hf] = (f"{LLM}model.layers.{i}.mlp.{proj}.base_layer.weight",
                       Source(f"llama.layers.{i}.feed_forward.{w}.weight"))
    out["model.embed_tokens.weight"] = (f"{LLM}model.embed_tokens.token_adapter.base_layer.weight",
                                        Source("llama.tok_embeddings.weight"))
    out["lm_head.weight"] = (f"{LLM}lm_head.token_adapter.base_layer.weight", Source("llama.output.weight"))
    return out
