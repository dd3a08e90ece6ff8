"""Feature store round trip (sharded safetensors + index), content keys, fingerprint, held-out split."""

from __future__ import annotations

import pytest
import torch

from mumu.data.dataset import split_records
from mumu.data.features import FeatureStore, caption_key, fingerprint, media_key
from mumu.data.records import Record, Turn
from mumu.profiles import tiny


def test_store_round_trips_through_shards(tmp_path):
    store = FeatureStore("abc")
    entries = {f"music/{i}": {"features": torch.randn(3, 4, 8)} for i in range(5)}
    entries["target/x"] = {"encoder_hidden_states": torch.randn(6, 32)}
    for key, tensors in entries.items():
        store.put(key, tensors)
    store.save(tmp_path, shard_bytes=1000)  # forces several shards
    assert len(list(tmp_path.glob("features-*.safetensors"))) > 1
    loaded = FeatureStore.open(tmp_path, "abc")
    assert loaded.keys() == set(entries)
    for key, tensors in entries.items():
        assert all(torch.equal(loaded.get(key)[n], t) for n, t in tensors.items())
    with pytest.raises(KeyError, match="music/9"):
        loaded.get("music/9")
    with pytest.raises(ValueError, match="other encoders"):
        FeatureStore.open(tmp_path, "other")
    with pytest.raises(FileNotFoundError, match="mumu features"):
        FeatureStore.open(tmp_path / "missing")


def test_keys_name_content_not_files(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert media_key("music", a) == media_key("music", b) != media_key("image", a)
    assert caption_key("calm piano") == caption_key("calm piano") != caption_key("calm piano.")


def test_fingerprint_follows_the_frozen_parts_only():
    base = tiny()
    assert fingerprint(base) == fingerprint(tiny())
    lora = tiny()
    lora.llm.lora_rank = 8  # trained parts do not change what the frozen encoders produce
    assert fingerprint(lora) == fingerprint(base)
    assert fingerprint(tiny(decoder="audioldm2")) != fingerprint(base)
    assert fingerprint(tiny(seed=3)) != fingerprint(base)


def test_held_out_split_is_seeded_and_disjoint():
    records = [Record("alpaca", f"f[{i}]", (Turn("q", "a"),), {}) for i in range(20)]
    train, held = split_records(records, 0.2, seed=1)
    assert len(held) == 4 and len(train) == 16
    assert {r.origin for r in train}.isdisjoint({r.origin for r in held})
    assert split_records(records, 0.2, seed=1) == (train, held)
    assert split_records(records, 0.0, seed=1) == (records, [])
    with pytest.raises(ValueError, match="eval fraction"):
        split_records(records, 1.0, seed=1)


def test_features_need_only_the_encoders_and_match_the_models():
    from mumu.builder import build_encoders, build_model

    config = tiny()
    encoders, model = build_encoders(config), build_model(config)
    for name in ("music_encoder", "image_encoder", "video_encoder"):
        ours, theirs = getattr(encoders, name).state_dict(), getattr(model, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_saving_into_its_own_directory_only_adds_shards(tmp_path):
    first = FeatureStore("abc")
    old = {f"image/{i}": {"features": torch.randn(5, 8)} for i in range(4)}
    for key, tensors in old.items():
        first.put(key, tensors)
    first.save(tmp_path, shard_bytes=200)
    shards = {p: p.stat().st_mtime_ns for p in tmp_path.glob("features-*.safetensors")}
    store = FeatureStore.open(tmp_path, "abc")
    assert torch.equal(store.get("image/0")["features"], old["image/0"]["features"])  # a shard is open now
    new = {"image/9": {"features": torch.randn(5, 8)}}
    store.put("image/9", new["image/9"])
    store.save(tmp_path, shard_bytes=200)
    assert {p: p.stat().st_mtime_ns for p in shards} == shards  # untouched
    assert len(list(tmp_path.glob("features-*.safetensors"))) == len(shards) + 1
    again = FeatureStore.open(tmp_path, "abc")
    for key, tensors in {**old, **new}.items():
        assert torch.equal(again.get(key)["features"], tensors["features"])
    other = tmp_path / "copy"
    again.save(other)  # elsewhere: every entry is written out
    assert FeatureStore.open(other, "abc").keys() == set(old) | set(new)
