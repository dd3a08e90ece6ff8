"""Feature cache: content keys, LRU eviction, size 0 disables."""

import torch

from mumu.feature_cache import FeatureCache, file_digest


def test_lru_evicts_the_least_recently_used():
    cache = FeatureCache(2)
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now more recent than b
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a and cache.get("c") is c
    assert len(cache) == 2


def test_size_zero_stores_nothing():
    cache = FeatureCache(0)
    cache.put("a", torch.zeros(1))
    assert cache.get("a") is None


def test_digest_depends_on_content_only(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    (tmp_path / "y").write_bytes(b"abc")
    (tmp_path / "z").write_bytes(b"abd")
    assert file_digest(tmp_path / "x") == file_digest(tmp_path / "y") != file_digest(tmp_path / "z")
