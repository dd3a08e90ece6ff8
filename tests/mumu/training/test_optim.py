"""Weight decay only on weight matrices; warmup then cosine; stage trainable sets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mumu.builder import build_model
from mumu.profiles import tiny
from mumu.training.optim import build_optimizer, warmup_cosine
from mumu.training.stages import STAGES, stage_trainable


@pytest.fixture(scope="module")
def model():
    return build_model(tiny())


def test_decay_goes_to_weight_matrices_only(model):
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    for name in plain_names:  # gates, prefixes, queries, norms, biases, [AUD] rows
        assert any(part in name for part in ("gates", "prefix", "queries", "norm", "bias", "trainable_tokens")), name
    assert "injection.gates" in plain_names and "injection.prefix" in plain_names
    assert any("lora_A" in n for n in decayed_names) and any(n.startswith("music_adapter") for n in decayed_names)
    assert not any("norm" in n or n.endswith("bias") for n in decayed_names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed_names | plain_names == trainable and not decayed_names & plain_names


def test_warmup_then_cosine_to_the_floor():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup=4, total=14, min_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    with pytest.raises(ValueError, match="warmup"):
        warmup_cosine(optimizer, warmup=20, total=10, min_ratio=0.0)


def test_stages_train_gates_and_token_rows_everywhere():
    for stage, flags in STAGES.items():
        assert flags.injection and flags.audio_tokens and flags.lora, stage
    assert STAGES[1].adapters and not STAGES[1].projector
    assert STAGES[2].projector and not STAGES[2].adapters
    assert not STAGES[3].projector and not STAGES[3].adapters
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_trainable(4)


def test_frozen_encoders_stay_in_eval_mode_while_training(model):
    model.train()
    assert model.training and model.projector.training
    assert not any(e.training for e in (model.music_encoder, model.image_encoder, model.video_encoder))
    model.eval()
