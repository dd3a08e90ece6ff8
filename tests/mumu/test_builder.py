"""build_model / build_encoders: seeded random init, one stream per part, weightless meta builds, part mismatches."""

from __future__ import annotations

import pytest
import torch

from adapters.mert import MusicEncoder
from adapters.vision import ImageEncoder, VideoEncoder
from mumu.builder import SeedOffset, build_encoders, build_model, seeded
from mumu.profiles import tiny


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def model():
    return build_model(tiny())


def test_two_builds_are_identical_and_leave_the_callers_rng_alone(model):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = build_model(tiny())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _same(model.state_dict(), again.state_dict())


def test_each_part_draws_from_its_named_seed_offset(model):
    config = model.config
    parts = [(SeedOffset.MUSIC_ENCODER, MusicEncoder, config.music_encoder, model.music_encoder),
             (SeedOffset.IMAGE_ENCODER, ImageEncoder, config.image_encoder, model.image_encoder),
             (SeedOffset.VIDEO_ENCODER, VideoEncoder, config.video_encoder, model.video_encoder)]
    for offset, cls, part_config, built in parts:
        with seeded(config.seed + offset):
            alone = cls.from_config(part_config)
        assert _same(alone.state_dict(), built.state_dict()), offset.name


def test_another_seed_changes_every_random_part(model):
    other = build_model(tiny(seed=1))
    for name in ("music_encoder", "image_encoder", "video_encoder", "music_adapter", "injection", "projector"):
        assert not _same(getattr(model, name).state_dict(), getattr(other, name).state_dict()), name
    embed = "llm.base_model.model.model.embed_tokens.token_adapter.base_layer.weight"  # the base LLM's own
    assert not torch.equal(model.state_dict()[embed], other.state_dict()[embed])


def test_build_encoders_gives_the_models_frozen_encoders(model):
    encoders = build_encoders(model.config)
    for name in ("music_encoder", "image_encoder", "video_encoder"):
        assert _same(getattr(encoders, name).state_dict(), getattr(model, name).state_dict()), name
        assert not getattr(encoders, name).training


def test_weightless_build_is_the_same_model_on_the_meta_device(model):
    meta = build_model(tiny(), weights=False)
    assert meta.tokenizer is None and meta.ids.audio == model.ids.audio
    assert all(p.is_meta for p in meta.parameters())
    shapes = {name: (p.shape, p.requires_grad) for name, p in model.named_parameters()}
    assert {name: (p.shape, p.requires_grad) for name, p in meta.named_parameters()} == shapes


def test_parts_that_do_not_fit_are_refused():
    config = tiny()
    config.adapter.llm_width = 48
    with pytest.raises(ValueError, match=r"adapter\.llm_width=48 but the LLM is 64 wide"):
        build_model(config, weights=False)
    config = tiny()
    config.trainable.llm_params = ["*.no_such_bias"]
    with pytest.raises(ValueError, match=r"pattern '\*\.no_such_bias' matches no LLM parameter"):
        build_model(config, weights=False)
