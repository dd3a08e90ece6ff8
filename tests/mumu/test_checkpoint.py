"""Weights on disk: only trained tensors, exact round trip, clear errors on mismatch, full-path loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mumu.builder import SeedOffset, build_model
from mumu.checkpoint import WEIGHTS_NAME, from_pretrained, save_pretrained
from mumu.config import MuMuConfig
from mumu.profiles import tiny
from tests.mumu.conftest import make_model, media_for, open_gates, prompt_ids


def _perturb(model):
    torch.manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


def test_round_trip_is_exact(tmp_path, model):
    _perturb(model)
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.config == model.config
    before, after = model.trained_state_dict(), loaded.trained_state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    media = media_for(model, seed=1)
    ids = torch.tensor([prompt_ids(model)])
    with torch.no_grad():
        assert torch.equal(model(ids, media=media).logits, loaded(ids, media=media).logits)


def test_only_trained_tensors_are_saved(tmp_path, model):
    save_pretrained(model, tmp_path)
    keys = set(load_file(str(tmp_path / WEIGHTS_NAME)))
    assert keys == set(model.trained_state_dict())
    assert not any("encoder" in k.split(".")[0] for k in keys)
    assert not any(k.endswith(("q_proj.base_layer.weight", "embed_tokens.weight")) for k in keys)
    assert any("lora_A" in k for k in keys) and "injection.gates" in keys
    saved = sum(t.numel() for t in load_file(str(tmp_path / WEIGHTS_NAME)).values())
    assert saved < sum(p.numel() for p in model.parameters()) / 2


def test_mismatched_checkpoint_names_the_keys(tmp_path, model):
    save_pretrained(model, tmp_path)
    other = tiny()
    other.adapter.num_tokens = 2
    with pytest.raises(ValueError, match=r"injection.prefix: saved \(6, 1, 64\) vs model \(6, 2, 64\)"):
        from_pretrained(tmp_path, config=other)
    fewer = MuMuConfig.load(tmp_path)
    fewer.llm.lora_targets = ["q_proj"]
    with pytest.raises(ValueError, match=r"unexpected \(\d+\): \['llm\..*k_proj\.lora_A"):
        from_pretrained(tmp_path, config=fewer)


def test_missing_checkpoint_dir_is_reported(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        from_pretrained(file)


def test_full_loader_reads_every_component_from_local_dirs(tmp_path):
    """The full path (sources = directories) on tiny components saved with save_pretrained."""
    reference = make_model()
    open_gates(reference, 0.5)
    dirs = {name: tmp_path / name for name in ("llm", "mert", "vit", "vivit")}
    base = reference.llm.get_base_model()
    # Save the base LLM as it was before the [AUD] rows and LoRA were added: what a published checkpoint holds.
    from mumu.builder import seeded
    from mumu.llm import load_base_llm

    with seeded(reference.config.seed + SeedOffset.BASE_LLM):
        load_base_llm(reference.config.llm).save_pretrained(dirs["llm"])
    reference.tokenizer.save_pretrained(dirs["llm"])
    assert base is not None
    reference.music_encoder.model.save_pretrained(dirs["mert"])
    reference.music_encoder.processor.save_pretrained(dirs["mert"])
    reference.image_encoder.model.save_pretrained(dirs["vit"])
    reference.image_encoder.processor.save_pretrained(dirs["vit"])
    reference.video_encoder.model.save_pretrained(dirs["vivit"])
    reference.video_encoder.processor.save_pretrained(dirs["vivit"])
    save_pretrained(reference, tmp_path / "mumu")

    cfg = MuMuConfig.load(tmp_path / "mumu")
    cfg.profile = "full"
    cfg.llm.source, cfg.llm.tokenizer = str(dirs["llm"]), None
    cfg.music_encoder.source = str(dirs["mert"])
    cfg.image_encoder.source = str(dirs["vit"])
    cfg.video_encoder.source = str(dirs["vivit"])
    loaded = from_pretrained(tmp_path / "mumu", config=cfg)
    media = media_for(reference, seed=2)
    media_loaded = media_for(loaded, seed=2)
    for a, b in zip(media.music + media.image + media.video, media_loaded.music + media_loaded.image
                    + media_loaded.video, strict=True):
        torch.testing.assert_close(a, b)
    ids = torch.tensor([prompt_ids(reference)])
    with torch.no_grad():
        torch.testing.assert_close(reference(ids, media=media).logits, loaded(ids, media=media).logits)


def test_build_is_deterministic():
    a, b = build_model(tiny()), build_model(tiny())
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hub_ids_fetch_only_config_and_weights(tmp_path, model, monkeypatch):
    import mumu.checkpoint as checkpoint

    save_pretrained(model, tmp_path / "snapshot")
    calls = []

    def fake_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(checkpoint, "snapshot_download", fake_download)
    loaded = from_pretrained("someone/mumu-tiny")
    assert calls == [("someone/mumu-tiny", ["config.json", WEIGHTS_NAME])]
    assert torch.equal(loaded.injection.prefix, model.injection.prefix)
