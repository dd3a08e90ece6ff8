"""Feature cache: content keys, LRU eviction, size 0 disables."""

import torch

from media.limits import MediaLimits
from media.video_io import load_video_frames
from mumu.feature_cache import FeatureCache, encode_file, file_digest
from tests.media.test_video_io import write_video
from tests.mumu.conftest import make_model


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


def test_encode_file_samples_video_frames_as_the_config_says(tmp_path):
    path = write_video(tmp_path / "clip.mp4")
    model = make_model()
    limits = MediaLimits()
    n = model.video_encoder.num_frames
    for sampling in ("uniform", "consecutive"):
        model.config.video_encoder.frame_sampling = sampling
        expected = model.video_encoder([load_video_frames(path, n, limits, sampling)])[0]
        assert torch.equal(encode_file(model, "video", path, limits), expected)
    uniform = model.video_encoder([load_video_frames(path, n, limits, "uniform")])[0]
    assert not torch.equal(expected, uniform)
