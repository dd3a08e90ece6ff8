"""Gated injection of modality features into the LLM's top layers (per head, zero-initialised, trainable).

For every layer of a modality's group, the attention output (before o_proj) of every position gets
    tanh(gate[layer, head]) * value(feature + prefix[layer])
where value is the layer's own (LoRA-adapted) v_proj, or its base v_proj with base_value (as published). In the
"summed" mode (the older published layout) the top group_size layers all get the sum of the present modalities'
features, each layer with its own prefix. With K > 1 feature tokens each position attends
over the K tokens with its own query (k_proj on the tokens), which reduces to the plain add when K == 1.
The added term depends only on the position's own query, so it is identical with and without a KV cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig

from mumu.config import InjectionConfig

SUMMED = "summed"


@dataclass
class ModalityInput:
    """Adapter tokens for one modality: (B, K, H) features and which rows actually have the modality."""

    tokens: torch.Tensor
    present: torch.Tensor


class GatedInjection(nn.Module):
    """Owns the per-head gates and learned prefix queries, and the hooks that apply them."""

    def __init__(self, llm_config: LlamaConfig, cfg: InjectionConfig, num_tokens: int) -> None:
        super().__init__()
        layers = llm_config.num_hidden_layers
        groups = 1 if cfg.mode == SUMMED else len(cfg.modalities)
        span = cfg.group_size * groups
        if cfg.group_size < 1 or span > layers:
            raise ValueError(f"{groups} groups of {cfg.group_size} layers need {span} layers, the LLM has {layers}")
        self.mode = cfg.mode
        self.base_value = cfg.base_value
        self.modalities = tuple(cfg.modalities)
        self.first_layer = layers - span
        self.group_size = cfg.group_size
        self.num_heads = llm_config.num_attention_heads
        self.num_kv_heads = llm_config.num_key_value_heads or self.num_heads
        self.head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // self.num_heads
        self.gates = nn.Parameter(torch.full((span, self.num_heads), float(cfg.gate_init)))
        self.num_tokens = num_tokens
        self.prefix = nn.Parameter(torch.randn(span, num_tokens, llm_config.hidden_size) * cfg.prefix_init_std)
        self._state = threading.local()
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def layer_modality(self, layer: int) -> str | None:
        """Which modality group a decoder layer belongs to (None below the groups, "summed" in the summed mode)."""
        if layer < self.first_layer:
            return None
        if self.mode == SUMMED:
            return SUMMED
        return self.modalities[(layer - self.first_layer) // self.group_size]

    def attach(self, decoder_layers: nn.ModuleList) -> None:
        """Register the hooks on the injected layers' attention (idempotent per layer list)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        for index in range(self.first_layer, len(decoder_layers)):
            attn = decoder_layers[index].self_attn
            slot = index - self.first_layer
            if self.num_tokens > 1:  # only cross-attention over several tokens needs the position's query
                self._hooks.append(attn.q_proj.register_forward_hook(self._remember_query))
            self._hooks.append(attn.o_proj.register_forward_pre_hook(self._make_hook(attn, slot)))

    @contextmanager
    def inject(self, inputs: dict[str, ModalityInput | None], batch: int) -> Iterator[None]:
        """While active, LLM forwards in this thread receive the given modality features (prefix alone if absent)."""
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {self.modalities}")
        previous = getattr(self._state, "inputs", None), getattr(self._state, "projected", None)
        self._state.inputs = ({m: inputs.get(m) for m in self.modalities}, batch)
        # Within one context the tokens and weights are fixed, so without grad each layer's projections of them
        # are computed once, not at every decoding step.
        self._state.projected = {}
        try:
            yield
        finally:
            self._state.inputs, self._state.projected = previous
            self._state.query = None

    def _remember_query(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if getattr(self._state, "inputs", None) is not None:
            self._state.query = output

    def _make_hook(self, attn: nn.Module, slot: int):
        modality = self.layer_modality(self.first_layer + slot)

        def hook(module: nn.Module, args: tuple) -> tuple | None:
            active = getattr(self._state, "inputs", None)
            if active is None:
                return None
            hidden = args[0]
            values, keys, gate = self._projected(attn, slot, modality, active, hidden.dtype)
            added = self._attend(values, keys, hidden.shape[1]) * gate[None, None, :, None]
            return (hidden + added.reshape(hidden.shape), *args[1:])

        return hook

    def _projected(self, attn: nn.Module, slot: int, modality: str, active: tuple, dtype: torch.dtype):
        cache = None if torch.is_grad_enabled() else self._state.projected
        if cache is not None and slot in cache:
            return cache[slot]
        inputs, batch = active
        items = [inputs[m] for m in self.modalities] if modality == SUMMED else [inputs[modality]]
        tokens = self._tokens(items, slot, batch).to(dtype)
        # peft wraps v_proj; its base_layer is the frozen projection without the LoRA update.
        v_proj = getattr(attn.v_proj, "base_layer", attn.v_proj) if self.base_value else attn.v_proj
        values = self._heads(v_proj(tokens))
        keys = self._heads(attn.k_proj(tokens)) if self.num_tokens > 1 else None
        result = values, keys, torch.tanh(self.gates[slot]).to(dtype)
        if cache is not None:
            cache[slot] = result
        return result

    def _tokens(self, items: list[ModalityInput | None], slot: int, batch: int) -> torch.Tensor:
        prefix = self.prefix[slot]
        out = prefix.expand(batch, *prefix.shape)
        for item in items:
            if item is not None:
                present = item.present.to(prefix.device)[:, None, None]
                out = out + torch.where(present, item.tokens.to(prefix.dtype), 0.0)
        return out

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, k, _ = x.shape
        x = x.view(b, k, self.num_kv_heads, self.head_dim)
        return x.repeat_interleave(self.num_heads // self.num_kv_heads, dim=2)

    def _attend(self, values: torch.Tensor, keys: torch.Tensor | None, length: int) -> torch.Tensor:
        b = values.shape[0]
        if keys is None:
            return values.expand(b, length, self.num_heads, self.head_dim)
        query = self._state.query.view(b, length, self.num_heads, self.head_dim)
        scores = torch.einsum("btnd,bknd->bntk", query, keys) * self.head_dim**-0.5
        weights = torch.softmax(scores.float(), dim=-1).to(values.dtype)
        return torch.einsum("bntk,bknd->btnd", weights, values)
