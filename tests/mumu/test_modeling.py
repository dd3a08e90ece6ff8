"""The assembled model: injection semantics, losses, the [AUD] state gathering and the trainable set."""

from __future__ import annotations

import pytest
import torch

from mumu.builder import SeedOffset, seeded
from mumu.llm import add_audio_rows, load_base_llm
from mumu.modeling import MediaFeatures
from tests.mumu.conftest import make_model, media_for, open_gates, prompt_ids


def _ids(model, rows=1):
    return torch.tensor([prompt_ids(model)] * rows)


def _logits(model, media, rows=1):
    with torch.no_grad():
        return model(_ids(model, rows), media=media).logits


def test_zero_gates_reproduce_the_plain_llm_exactly():
    model = make_model(injection__gate_init=0.0)  # the paper's zero-init (the tiny profile opens them)
    cfg = model.config
    with seeded(cfg.seed + SeedOffset.BASE_LLM):
        plain = load_base_llm(cfg.llm)
    add_audio_rows(plain, list(model.ids.audio))
    with torch.no_grad():
        expected = plain(_ids(model)).logits
    got = _logits(model, media_for(model, seed=1))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("modality", ["music", "image", "video"])
def test_open_gates_make_logits_depend_on_each_modality(model, modality):
    open_gates(model)
    base = media_for(model, seed=1)
    other = media_for(model, seed=2)
    changed = MediaFeatures(**{m: getattr(other if m == modality else base, m) for m in ("music", "image", "video")})
    assert not torch.allclose(_logits(model, base), _logits(model, changed))


def test_an_absent_modality_changes_nothing(model):
    open_gates(model)
    with_music = media_for(model, seed=1, image=False, video=False)
    only_music = MediaFeatures(music=with_music.music)
    torch.testing.assert_close(_logits(model, with_music), _logits(model, only_music), rtol=0, atol=0)
    # Row 1 lacks an image: swapping row 0's image must leave row 1 untouched.
    a = media_for(model, seed=3, rows=2)
    a.image[1] = None
    b = MediaFeatures(music=a.music, image=[media_for(model, seed=4).image[0], None], video=a.video)
    la, lb = _logits(model, a, rows=2), _logits(model, b, rows=2)
    assert not torch.allclose(la[0], lb[0])
    assert torch.equal(la[1], lb[1])


def test_each_modality_reaches_only_its_layer_group(model):
    layers = model.config.llm.arch["num_hidden_layers"]
    group = model.config.injection.group_size
    assert [model.injection.layer_modality(i) for i in range(layers)] == (
        [None] * (layers - 3 * group) + ["music"] * group + ["image"] * group + ["video"] * group
    )
    with torch.no_grad():
        model.injection.gates.zero_()
        model.injection.gates[:group] = 1.0  # music group only
    base = media_for(model, seed=1)
    new_image = MediaFeatures(music=base.music, image=media_for(model, seed=2).image, video=base.video)
    assert torch.equal(_logits(model, base), _logits(model, new_image))


def test_k_tokens_per_modality():
    model = make_model(adapter__num_tokens=3)
    assert model.injection.prefix.shape[1] == 3
    open_gates(model)
    a, b = media_for(model, seed=1), media_for(model, seed=2)
    assert not torch.allclose(_logits(model, a), _logits(model, b))


def test_text_loss_ignores_masked_labels(model):
    ids = _ids(model)
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(ids, labels=labels, media=media_for(model, seed=1))
    manual = torch.nn.functional.cross_entropy(out.logits[0, 2:-1], ids[0, 3:])
    torch.testing.assert_close(out.ce_loss, manual)
    assert out.mse_loss is None and torch.equal(out.loss, out.ce_loss)


def _music_batch(model):
    reply = model.tokenizer(" calm piano", add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids(model) + reply + list(model.ids.audio) + [model.ids.eos]])
    labels = ids.clone()
    labels[:, : len(prompt_ids(model))] = -100
    (stream,) = model.config.projector.streams
    target = torch.randn(1, 5, stream.width)
    return ids, labels, {stream.name: target}, {stream.name: torch.ones(1, 5)}


def test_projector_loss_is_reported_separately_and_masked(model):
    ids, labels, targets, masks = _music_batch(model)
    out = model(ids, labels=labels, media=media_for(model, seed=1), decoder_targets=targets,
                decoder_target_masks=masks)
    assert out.ce_loss is not None and out.mse_loss is not None and out.mask_loss is not None
    torch.testing.assert_close(out.loss, out.ce_loss + out.mse_loss + out.mask_loss)
    name = next(iter(targets))
    padded = {name: torch.cat([targets[name], torch.full((1, 3, targets[name].shape[-1]), 99.0)], dim=1)}
    padded_mask = {name: torch.cat([masks[name], torch.zeros(1, 3)], dim=1)}
    again = model(ids, labels=labels, media=media_for(model, seed=1), decoder_targets=padded,
                  decoder_target_masks=padded_mask)
    torch.testing.assert_close(again.mse_loss, out.mse_loss)


def test_mse_covers_only_the_rows_that_make_music(model):
    ids, labels, targets, masks = _music_batch(model)
    text_only = torch.tensor([[*prompt_ids(model, "Who plays?"), model.ids.eos]])
    width = ids.shape[1]
    batch = torch.cat([torch.nn.functional.pad(text_only, (0, width - text_only.shape[1])), ids])
    batch_labels = torch.cat([torch.full((1, width), -100), labels])
    attention = (torch.arange(width)[None] < torch.tensor([[text_only.shape[1]], [width]])).long()
    mixed = model(batch, attention_mask=attention, labels=batch_labels, decoder_targets=targets,
                  decoder_target_masks=masks, target_rows=[1])
    alone = model(ids, labels=labels, decoder_targets=targets, decoder_target_masks=masks)
    torch.testing.assert_close(mixed.mse_loss, alone.mse_loss)
    torch.testing.assert_close(mixed.mask_loss, alone.mask_loss)


def test_audio_hidden_is_the_state_before_each_aud_token(model):
    ids, labels, _, _ = _music_batch(model)
    hidden = torch.randn(1, ids.shape[1], 64)
    got = model.audio_hidden(ids, hidden, labels)
    start = ids[0].tolist().index(model.ids.audio[0])
    assert torch.equal(got[0], hidden[0, start - 1 : start + 7])
    broken = ids.clone()
    broken[0, start + 2] = model.ids.audio[5]
    with pytest.raises(ValueError, match="consecutively and in order"):
        model.audio_hidden(broken, hidden)
    with pytest.raises(ValueError, match="no \\[AUD0\\] token"):
        model.audio_hidden(_ids(model), torch.randn(1, _ids(model).shape[1], 64))


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _expected(model, adapters=True, injection=True, lora=True, norms=True, audio_tokens=True, projector=True):
    names = set()
    for name, _ in model.named_parameters():
        top = name.split(".")[0]
        if (top.endswith("_adapter") and adapters) or (top == "injection" and injection) or (
            top == "projector" and projector) or ("lora_" in name and lora) or (
            "trainable_tokens_" in name and audio_tokens) or (top == "llm" and name.endswith("norm.weight") and norms):
            names.add(name)
    return names


def test_trainable_set_is_exactly_what_the_config_says(model):
    assert _trainable(model) == _expected(model)
    assert any("lora_A" in n for n in _trainable(model)) and any("trainable_tokens_" in n for n in _trainable(model))
    for part in ("music_encoder", "image_encoder", "video_encoder"):
        assert not any(p.requires_grad for p in getattr(model, part).parameters())
    for flag in ("adapters", "injection", "lora", "norms", "audio_tokens", "projector"):
        setattr(model.config.trainable, flag, False)
        model.set_trainable()
        assert _trainable(model) == _expected(model, **{flag: False}), flag
        setattr(model.config.trainable, flag, True)


def test_audio_token_rows_start_at_the_mean_embedding(model):
    from mumu.llm import load_base_llm as base_loader

    with seeded(model.config.seed + SeedOffset.BASE_LLM):
        plain = base_loader(model.config.llm)
    mean = plain.get_input_embeddings().weight.mean(0)
    rows = model.llm.get_input_embeddings()(model.audio_ids)
    torch.testing.assert_close(rows, mean.expand_as(rows))


def test_gradients_reach_gates_adapters_lora_tokens_and_projector(model):
    ids, labels, targets, masks = _music_batch(model)
    model.train()
    model(ids, labels=labels, media=media_for(model, seed=1), decoder_targets=targets,
          decoder_target_masks=masks).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads["injection.gates"].abs().sum() > 0
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("projector."))
    # lora_B starts at zero, so on the first step only lora_B (not lora_A) can receive gradient.
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "trainable_tokens_" in n)
    assert not model.music_encoder.training and not model.image_encoder.training
