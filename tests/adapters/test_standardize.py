"""Per-channel feature standardisation: statistics against a direct computation, identity until fitted."""

from __future__ import annotations

import pytest
import torch

from adapters.standardize import MIN_STD, FeatureStandardizer


def _clips(gen: torch.Generator) -> list[torch.Tensor]:
    # (layers 3, steps, width 4) clips with a large shared offset per layer and channel, and varied lengths
    offset = torch.randn(3, 1, 4, generator=gen) * 50
    return [offset + torch.randn(3, steps, 4, generator=gen) * (1 + torch.arange(4)) for steps in (5, 9, 2)]


def test_music_statistics_are_per_layer_and_channel_over_every_step_of_every_clip():
    clips = _clips(torch.Generator().manual_seed(0))
    norm = FeatureStandardizer(3, 4)
    assert norm.fit(iter(clips)) == 16  # 5 + 9 + 2 steps
    frames = torch.cat(clips, dim=1).double()  # (3, 16, 4): the reference, all steps at once
    assert torch.allclose(norm.mean, frames.mean(1, keepdim=True).float(), atol=1e-4)
    assert torch.allclose(norm.std, frames.std(1, keepdim=True, unbiased=False).float(), atol=1e-4)
    out = torch.cat([norm(c) for c in clips], dim=1)
    assert torch.allclose(out.mean(1), torch.zeros(3, 4), atol=1e-4)
    assert torch.allclose(out.std(1, unbiased=False), torch.ones(3, 4), atol=1e-4)


def test_token_statistics_are_per_channel_over_every_token_and_apply_to_batches():
    gen = torch.Generator().manual_seed(1)
    items = [torch.randn(6, 5, generator=gen) * 3 + 7 for _ in range(4)]
    norm = FeatureStandardizer(None, 5)
    assert norm.fit(items) == 24
    tokens = torch.cat(items).double()
    assert torch.allclose(norm.mean, tokens.mean(0).float(), atol=1e-5)
    batch = torch.stack(items)  # (B, tokens, width), as the image and video adapters take them
    assert torch.allclose(norm(batch), (batch - tokens.mean(0).float()) / tokens.std(0, unbiased=False).float(),
                          atol=1e-5)


def test_unfitted_is_the_identity_and_keeps_the_dtype():
    norm = FeatureStandardizer(2, 3)
    x = torch.randn(2, 7, 3).to(torch.bfloat16)
    assert not norm.fitted
    out = norm(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, x)


def test_a_constant_channel_is_only_centred():
    norm = FeatureStandardizer(None, 2)
    norm.fit([torch.tensor([[1.0, 5.0], [3.0, 5.0]])])
    assert norm.std[1] == MIN_STD
    assert torch.equal(norm(torch.tensor([[2.0, 5.0]])), torch.tensor([[0.0, 0.0]]))


def test_wrong_shapes_and_too_little_data_are_refused():
    with pytest.raises(ValueError, match=r"\(7, 4\) do not match the encoder's \(3, steps, 4\)"):
        FeatureStandardizer(3, 4).fit([torch.zeros(7, 4)])
    with pytest.raises(ValueError, match=r"\(tokens, 5\)"):
        FeatureStandardizer(None, 5).fit([torch.zeros(3, 6)])
    with pytest.raises(ValueError, match="at least 2 feature vectors, got 1"):
        FeatureStandardizer(None, 5).fit([torch.zeros(1, 5)])
