"""Gated injection on a bare Llama: the added term against a hand computation, zero gates, K tokens, summed mode."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mumu.config import InjectionConfig
from mumu.injection import GatedInjection, ModalityInput

WIDTH, HEADS, KV_HEADS, LAYERS = 32, 4, 2, 7
HEAD_DIM = WIDTH // HEADS


def _llm() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, attn_implementation="eager")
    return LlamaForCausalLM(config).eval()


def _injection(llm: LlamaForCausalLM, tokens: int = 1, **cfg) -> GatedInjection:
    torch.manual_seed(1)
    injection = GatedInjection(llm.config, InjectionConfig(**{"group_size": 2, **cfg}), tokens)
    with torch.no_grad():
        injection.gates.normal_()  # open every head by a different amount
    return injection


def _features(batch: int, tokens: int = 1, present: list[bool] | None = None, seed: int = 2) -> ModalityInput:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor(present if present is not None else [True] * batch)
    return ModalityInput(torch.randn(batch, tokens, WIDTH, generator=g), mask)


def _o_proj_inputs(llm: LlamaForCausalLM, injection: GatedInjection, inputs: dict, ids: torch.Tensor):
    """(before, after) the injection hook: o_proj inputs of every decoder layer in one injected forward."""
    layers = llm.model.layers
    before: dict[int, torch.Tensor] = {}
    after: dict[int, torch.Tensor] = {}
    handles = [layer.self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, i=i: before.__setitem__(i, a[0].clone())) for i, layer in enumerate(layers)]
    injection.attach(layers)  # registered between the two captures, so it runs between them
    handles += [layer.self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, i=i: after.__setitem__(i, a[0].clone())) for i, layer in enumerate(layers)]
    with torch.no_grad(), injection.inject(inputs, ids.shape[0]):
        llm(input_ids=ids)
    for handle in handles:
        handle.remove()
    return before, after


def _by_hand(llm: LlamaForCausalLM, injection: GatedInjection, layer: int, tokens: torch.Tensor) -> torch.Tensor:
    """tanh(gate[head]) * v_proj(tokens) per head, the K == 1 formula, as a (B, 1, WIDTH) row for every position."""
    slot = layer - injection.first_layer
    values = llm.model.layers[layer].self_attn.v_proj(tokens + injection.prefix[slot])  # (B, 1, kv * hd)
    values = values.view(-1, KV_HEADS, HEAD_DIM).repeat_interleave(HEADS // KV_HEADS, dim=1)  # GQA: (B, heads, hd)
    return (torch.tanh(injection.gates[slot])[None, :, None] * values).reshape(-1, 1, WIDTH)


def test_one_token_adds_exactly_the_gated_value_of_each_modality():
    llm = _llm()
    injection = _injection(llm)
    music, image = _features(2, seed=3), _features(2, present=[True, False], seed=4)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(5))
    before, after = _o_proj_inputs(llm, injection, {"music": music, "image": image, "video": None}, ids)
    assert injection.first_layer == LAYERS - 6
    for layer in range(LAYERS):
        modality = injection.layer_modality(layer)
        if modality is None:
            assert torch.equal(before[layer], after[layer])
            continue
        feature = {"music": music, "image": image}.get(modality)
        tokens = torch.zeros(2, 1, WIDTH) if feature is None else feature.tokens * feature.present[:, None, None]
        with torch.no_grad():
            expected = _by_hand(llm, injection, layer, tokens).expand(-1, ids.shape[1], -1)
        torch.testing.assert_close(after[layer] - before[layer], expected, rtol=1e-5, atol=1e-6)


def test_zero_gates_leave_the_llm_output_unchanged():
    llm = _llm()
    injection = GatedInjection(llm.config, InjectionConfig(group_size=2), 1)
    assert not injection.gates.any()  # zero-initialised
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        plain = llm(input_ids=ids).logits
        injection.attach(llm.model.layers)
        inputs = {"music": _features(2, seed=7), "image": _features(2, seed=8), "video": _features(2, seed=9)}
        with injection.inject(inputs, 2):
            injected = llm(input_ids=ids).logits
    assert torch.equal(injected, plain)


def test_k_identical_tokens_reduce_to_the_one_token_formula():
    llm = _llm()
    many, one = _injection(llm, tokens=3), _injection(llm, tokens=1)
    with torch.no_grad():
        many.prefix.zero_()
        one.prefix.zero_()
        many.gates.copy_(one.gates)
    single = _features(1, seed=10)
    repeated = ModalityInput(single.tokens.expand(-1, 3, -1), single.present)
    ids = torch.randint(0, 64, (1, 4), generator=torch.Generator().manual_seed(11))
    layer = LAYERS - 1  # the top (video) group
    before, after = _o_proj_inputs(llm, many, {"video": repeated}, ids)
    added_many = after[layer] - before[layer]
    for handle in many._hooks:
        handle.remove()
    before, after = _o_proj_inputs(llm, one, {"video": single}, ids)
    torch.testing.assert_close(added_many, after[layer] - before[layer], rtol=1e-5, atol=1e-6)


def test_summed_mode_adds_the_sum_of_present_modalities_to_the_top_layers():
    llm = _llm()
    injection = _injection(llm, mode="summed", group_size=3)
    music, video = _features(1, seed=12), _features(1, seed=13)
    ids = torch.randint(0, 64, (1, 3), generator=torch.Generator().manual_seed(14))
    before, after = _o_proj_inputs(llm, injection, {"music": music, "video": video}, ids)
    assert [injection.layer_modality(i) for i in range(LAYERS)] == [None] * 4 + ["summed"] * 3
    for layer in range(4, LAYERS):
        with torch.no_grad():
            expected = _by_hand(llm, injection, layer, music.tokens + video.tokens).expand(-1, 3, -1)
        torch.testing.assert_close(after[layer] - before[layer], expected, rtol=1e-5, atol=1e-6)


def test_bad_layouts_and_inputs_are_refused():
    llm = _llm()
    with pytest.raises(ValueError, match="3 groups of 3 layers need 9 layers, the LLM has 7"):
        GatedInjection(llm.config, InjectionConfig(group_size=3), 1)
    with pytest.raises(ValueError, match=r"InjectionConfig\.mode must be one of grouped, summed, got 'sum'"):
        InjectionConfig(mode="sum")
    with pytest.raises(ValueError, match=r"InjectionConfig\.modalities\[1\] must be one of music, image, video"):
        InjectionConfig(modalities=("music", "images", "video"))
    injection = GatedInjection(llm.config, InjectionConfig(group_size=2), 1)
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\]"), injection.inject({"audio": None}, 1):
        pass
