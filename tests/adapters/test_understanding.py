"""Understanding adapters: shapes, masking of padded time steps, K output tokens, gradient flow."""

import pytest
import torch

from adapters.config import AdapterConfig
from adapters.understanding import (
    ImageAdapter,
    MusicAdapter,
    SwiGLUBlock,
    TemporalAttentionPool,
    VideoAdapter,
    pad_steps,
)

CFG = AdapterConfig(llm_width=24, num_tokens=3, num_blocks=2, ffn_width=40)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_music_adapter_shape_and_k_tokens():
    adapter = MusicAdapter(num_layers=5, in_width=16, cfg=CFG).eval()
    out = adapter([torch.randn(5, 7, 16), torch.randn(5, 3, 16)])
    assert out.shape == (2, 3, 24)
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_music_adapter_row_is_independent_of_batch_padding():
    adapter = MusicAdapter(num_layers=5, in_width=16, cfg=CFG).eval()
    short, long = torch.randn(5, 3, 16), torch.randn(5, 11, 16)
    alone = adapter([short])
    batched = adapter([short, long])
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-6)


def test_music_adapter_sees_every_step():
    adapter = MusicAdapter(num_layers=5, in_width=16, cfg=CFG).eval()
    clip = torch.randn(5, 9, 16)
    changed = clip.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(adapter([clip]), adapter([changed]))


def test_pad_steps_lengths():
    padded, lengths = pad_steps([torch.ones(2, 4, 3), torch.ones(2, 1, 3)])
    assert padded.shape == (2, 2, 4, 3)
    assert lengths.tolist() == [4, 1]
    assert padded[1, :, 1:].abs().sum() == 0


def test_image_adapter_shape():
    adapter = ImageAdapter(num_tokens_in=17, in_width=16, cfg=CFG)
    assert adapter(torch.randn(4, 17, 16)).shape == (4, 3, 24)


def test_video_adapter_shape_and_token_check():
    adapter = VideoAdapter(temporal=4, spatial=16, in_width=16, cfg=CFG)
    assert adapter(torch.randn(2, 1 + 4 * 16, 16)).shape == (2, 3, 24)
    with pytest.raises(ValueError, match="expected 1 \\+ 4 x 16"):
        adapter(torch.randn(2, 50, 16))


def test_video_adapter_ignores_cls_and_uses_time():
    adapter = VideoAdapter(temporal=4, spatial=16, in_width=16, cfg=CFG).eval()
    x = torch.randn(1, 65, 16)
    cls_changed = x.clone()
    cls_changed[:, 0] += 5.0
    torch.testing.assert_close(adapter(x), adapter(cls_changed))
    late = x.clone()
    late[:, -16:] += 1.0
    assert not torch.allclose(adapter(x), adapter(late))


def test_swiglu_block_is_residual():
    block = SwiGLUBlock(8, 16, 1e-6)
    torch.nn.init.zeros_(block.down.weight)
    x = torch.randn(3, 8)
    torch.testing.assert_close(block(x), x)


def test_rnn_choices():
    for rnn in ("gru", "rnn", "lstm"):
        cfg = AdapterConfig(llm_width=8, num_tokens=1, num_blocks=1, rnn=rnn)
        assert MusicAdapter(3, 8, cfg)([torch.randn(3, 5, 8)]).shape == (1, 1, 8)
    with pytest.raises(ValueError, match=r"AdapterConfig\.rnn must be one of gru, rnn, lstm, got 'transformer'"):
        AdapterConfig(llm_width=8, rnn="transformer")
    with pytest.raises(ValueError, match="adapter rnn must be one of gru, rnn, lstm, got 'transformer'"):
        TemporalAttentionPool(8, 1, "transformer")


def test_gradients_reach_every_parameter():
    adapter = MusicAdapter(num_layers=5, in_width=16, cfg=CFG)
    adapter([torch.randn(5, 6, 16), torch.randn(5, 2, 16)]).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())
