"""Trainer: it minimises the model's own loss, changes exactly the trained tensors, and saves exactly those."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mumu.builder import build_model
from mumu.data.dataset import TrainingSet
from mumu.data.features import FeatureStore, fingerprint, media_keys
from mumu.data.records import parse_data_arg, read_all
from mumu.profiles import tiny
from mumu.training.stages import stage_trainable
from mumu.training.trainer import Trainer, TrainSettings, _forward
from tests.mumu.training.conftest import spec


def _setup(dataset, features, stage: int):
    root, paths = dataset
    model = build_model(tiny())
    model.config.trainable = stage_trainable(stage, model.config.trainable)
    model.set_trainable()
    records, _ = read_all(parse_data_arg(spec(paths, "mucaps", "mucaps-decoder")), root)
    store = FeatureStore.open(features, fingerprint(model.config))
    data = TrainingSet(records, store, model.tokenizer, model.ids, root, keys=media_keys(records, root))
    return model, data


def _hand_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy over the labelled positions, written out (log-softmax, gather, mean)."""
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    target = labels[:, 1:]
    keep = target != -100
    picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return -(picked[keep]).mean()


@pytest.mark.parametrize("weight", [0.0, 0.25, 2.0])
def test_the_trainer_minimises_the_models_own_loss(dataset, features, weight):
    model, data = _setup(dataset, features, stage=2)
    trainer = Trainer(model, data, None, TrainSettings(stage=2, max_steps=1, mse_weight=weight), "unused")
    batch = next(iter(trainer._epoch_loader(0, 0)))
    assert batch["target_rows"], "the batch must hold music-making rows for the MSE to count"
    loss, parts = _forward(model, batch, weight)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                decoder_targets=batch["decoder_targets"], decoder_target_masks=batch["decoder_target_masks"],
                target_rows=batch["target_rows"], mse_weight=weight, media=_media(batch))
    ce = _hand_ce(out.logits, batch["labels"])
    assert parts["ce"] == pytest.approx(ce.item(), rel=1e-5)
    expected = ce + weight * (parts["mse"] + parts["mask"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-6)  # the model reports what the trainer minimises


def _media(batch):
    from mumu.modeling import MediaFeatures

    return MediaFeatures(music=batch["music"], image=batch["image"], video=batch["video"])


def test_a_step_changes_exactly_the_trained_tensors_and_saves_all_of_them(dataset, features, tmp_path):
    model, data = _setup(dataset, features, stage=1)
    trained = {name for name, _, _ in model.trained_tensors()}
    grads = {name for name, p in model.named_parameters() if p.requires_grad}
    assert grads and grads <= trained  # gradients only where the one definition says "trained"
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    Trainer(model, data, None, TrainSettings(stage=1, max_steps=1, lr=1e-2), tmp_path).run()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed and changed <= grads
    assert not any(name.startswith(("music_encoder", "image_encoder", "video_encoder")) for name in changed)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert set(saved) == trained  # every trained tensor, frozen-this-stage ones included; nothing pretrained
    for name, tensor in model.trained_state_dict().items():
        assert torch.equal(saved[name], tensor.cpu())
