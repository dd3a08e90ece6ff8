"""Output projector: stream shapes for MusicGen and AudioLDM2, keep-masks, masked loss, scale consistency."""

import pytest
import torch

from mumu.config import ProjectorConfig, ProjectorStream
from mumu.profiles import full
from mumu.projector import OutputProjector


def _small(streams):
    return ProjectorConfig(width=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_width=32, streams=streams)


@pytest.mark.parametrize(("decoder", "shapes"), [
    ("musicgen", {"encoder_hidden_states": (128, 768)}),
    ("audioldm2", {"prompt_embeds": (128, 1024), "generated_prompt_embeds": (8, 768)}),
])
def test_full_stream_shapes(decoder, shapes):
    cfg = full(decoder=decoder).projector
    with torch.device("meta"):
        proj = OutputProjector(4096, cfg)
        out = proj(torch.empty(2, 8, 4096))
    assert {k: tuple(v.shape[1:]) for k, v in out.embeds.items()} == shapes
    assert set(out.masks) == {s.name for s in cfg.streams if s.masked}


def test_masks_keep_at_least_the_first_token():
    proj = OutputProjector(12, _small([ProjectorStream("c", 6, 5, masked=True)]))
    with torch.no_grad():
        proj.mask_heads["c"].bias.fill_(-100.0)
    out = proj(torch.randn(3, 8, 12))
    assert out.masks["c"].dtype == torch.bool
    assert out.masks["c"][:, 0].all() and not out.masks["c"][:, 1:].any()


def test_embeds_are_on_the_decoder_scale():
    proj = OutputProjector(12, _small([ProjectorStream("c", 4, 5)]))
    out = proj(torch.randn(1, 8, 12))
    torch.testing.assert_close(out.embeds["c"] * proj.cfg.target_scale, out.raw["c"])
    target = out.embeds["c"].detach()
    mse, bce = proj.loss(out, {"c": target}, {})
    assert mse.item() < 1e-10 and bce.item() == 0.0


def test_loss_ignores_padding_and_pads_short_targets():
    proj = OutputProjector(12, _small([ProjectorStream("c", 6, 5, masked=True)]))
    out = proj(torch.randn(2, 8, 12))
    target = torch.randn(2, 3, 5)
    mse, bce = proj.loss(out, {"c": target}, {"c": torch.ones(2, 3)})
    manual = ((out.raw["c"][:, :3] - 10 * target) ** 2).mean()
    torch.testing.assert_close(mse, manual)
    labels = torch.tensor([[1.0, 1, 1, 0, 0, 0]] * 2)
    torch.testing.assert_close(
        bce, torch.nn.functional.binary_cross_entropy_with_logits(out.mask_logits["c"], labels))
    with pytest.raises(ValueError, match="lack stream 'c'"):
        proj.loss(out, {}, {})


def test_stream_check_names_the_mismatch():
    from mumu.projector import check_streams

    cfg = full(decoder="audioldm2").projector
    check_streams(cfg, {"prompt_embeds": (None, 1024), "generated_prompt_embeds": (8, 768)}, "audioldm2")
    with pytest.raises(ValueError, match="'prompt_embeds' is 1024 wide, the audioldm2 decoder expects 768"):
        check_streams(cfg, {"prompt_embeds": (None, 768), "generated_prompt_embeds": (8, 768)}, "audioldm2")
    with pytest.raises(ValueError, match="reads \\['encoder_hidden_states'\\]"):
        check_streams(cfg, {"encoder_hidden_states": (None, 768)}, "musicgen")
    with pytest.raises(ValueError, match="has 8 tokens, audioldm2 reads 4"):
        check_streams(cfg, {"prompt_embeds": (None, 1024), "generated_prompt_embeds": (4, 768)}, "audioldm2")
