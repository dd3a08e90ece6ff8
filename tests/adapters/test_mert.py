"""MERT music encoder: HuBERT mapping, DeepNorm / relaxed attention numerics, windows, pooling, loading."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
from transformers.models.hubert.modeling_hubert import eager_attention_forward

from adapters.config import MusicEncoderConfig
from adapters.mert import (
    MertDeepNormEncoderLayer,
    MusicEncoder,
    mert_hubert_config,
    mert_relax_attention,
    pool_time,
)
from mumu.presets import MERT_V1_330M_ARCH, TINY_MERT_ARCH

SR = 24_000
TINY = TINY_MERT_ARCH


def tiny_encoder(seed: int = 0, **cfg_kwargs) -> MusicEncoder:
    arch = dict(TINY, **cfg_kwargs.pop("arch", {}))
    torch.manual_seed(seed)
    return MusicEncoder.from_config(MusicEncoderConfig(arch=arch, **cfg_kwargs))


def audio(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(round(seconds * SR)).astype(np.float32)


def normalised(clip: np.ndarray) -> torch.Tensor:
    fe = Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)
    return fe(clip, sampling_rate=SR, return_tensors="pt").input_values


def stacked(model: HubertModel, values: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(values, output_hidden_states=True)
    return torch.stack((*out.hidden_states[:-1], out.last_hidden_state))[:, 0]


def test_tiny_shapes_and_properties() -> None:
    enc = tiny_encoder()
    out = enc(audio(2.0))
    assert out.shape == (3, 10, 32)  # 149 frames at 75 Hz -> ceil(149 / 15) steps
    assert (enc.num_layers_out, enc.width, enc.frame_rate) == (3, 32, 5.0)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert tiny_encoder(frames_per_step=1)(audio(2.0)).shape == (3, 149, 32)


def test_pool_time_averages_blocks_and_partial_tail() -> None:
    frames = torch.arange(7.0).view(1, 7, 1).repeat(2, 1, 3)
    pooled = pool_time(frames, 3)
    assert pooled.shape == (2, 3, 3)
    assert pooled[0, :, 0].tolist() == [1.0, 4.0, 6.0]


def test_normalisation_matches_feature_extractor_and_is_gain_invariant() -> None:
    enc = tiny_encoder()
    clip = audio(1.0) * 0.1 + 0.05
    ours = enc._normalise(torch.from_numpy(clip))
    torch.testing.assert_close(ours, normalised(clip)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(clip), enc(clip * 7.0 - 0.3), rtol=1e-4, atol=1e-4)


def test_short_clip_is_padded_to_receptive_field() -> None:
    enc = tiny_encoder()
    assert enc.min_samples == 400
    out = enc(audio(100 / SR))
    assert out.shape == (3, 1, 32)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="mono"):
        enc(np.zeros((2, 1000), dtype=np.float32))


def test_long_audio_windows_cover_every_sample() -> None:
    enc = tiny_encoder(window_seconds=1.0, frames_per_step=1)
    assert enc.windows(60_000) == [20_000] * 3
    lengths = enc.windows(round(2.01 * SR) + 1)
    assert len(lengths) == 3
    assert sum(lengths) == round(2.01 * SR) + 1
    assert max(lengths) - min(lengths) <= 1
    clip = audio(2.5)
    frames = enc(clip)
    # Each window is encoded on its own (own normalisation) and the frames are concatenated in time.
    whole = tiny_encoder(window_seconds=10.0, frames_per_step=1)
    separate = torch.cat([whole(part) for part in np.split(clip, 3)], dim=1)
    assert frames.shape == separate.shape == (3, 3 * 62, 32)
    torch.testing.assert_close(frames, separate)
    pooled = tiny_encoder(window_seconds=1.0)(clip)
    assert pooled.shape == (3, math.ceil(3 * 62 / 15), 32)
    # Blocks straddle window boundaries (62 frames per window): pooling as windows arrive changes nothing.
    torch.testing.assert_close(pooled, pool_time(frames, 15))
    changed = clip.copy()
    changed[-SR // 10 :] = audio(0.1, seed=1)
    assert not torch.allclose(tiny_encoder(window_seconds=1.0)(changed)[:, -1], pooled[:, -1])


def test_stays_in_eval_without_grad_and_deterministic() -> None:
    enc = tiny_encoder()
    enc.train()
    assert not any(module.training for module in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    clip = audio(1.0)
    first, second = enc(clip), enc(clip)
    assert not first.requires_grad
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("arch", [TINY, dict(TINY, deepnorm=True, attention_relax=4.0)])
def test_runs_in_bfloat16(arch: dict) -> None:
    enc = MusicEncoder.from_config(MusicEncoderConfig(arch=arch), dtype=torch.bfloat16)
    out = enc(audio(1.0))
    assert out.dtype == torch.bfloat16
    assert out.shape == (3, 5, 32)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("relax", [-1.0, 8.0])
def test_without_deepnorm_equals_plain_hubert(relax: float) -> None:
    enc = tiny_encoder(arch=dict(attention_relax=relax), frames_per_step=1)
    assert not isinstance(enc.model.encoder.layers[0], MertDeepNormEncoderLayer)
    plain = HubertModel(HubertConfig(**TINY)).eval()
    plain.load_state_dict(enc.model.state_dict())
    values = normalised(audio(1.0))
    torch.testing.assert_close(stacked(enc.model, values), stacked(plain, values), rtol=0, atol=0)
    torch.testing.assert_close(enc(audio(1.0)), stacked(plain, values), rtol=1e-5, atol=1e-5)


def test_stable_layer_norm_stack_ends_with_last_hidden_state() -> None:
    enc = tiny_encoder(arch=dict(do_stable_layer_norm=True, feat_extract_norm="layer"), frames_per_step=1)
    values = normalised(audio(1.0))
    with torch.no_grad():
        out = enc.model(values, output_hidden_states=True)
    got = enc(audio(1.0))
    torch.testing.assert_close(got[-1], out.last_hidden_state[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[:-1], torch.stack(out.hidden_states[:-1])[:, 0], rtol=1e-5, atol=1e-5)


def reference_deepnorm(model: HubertModel, values: torch.Tensor, relax: float) -> list[torch.Tensor]:
    """The DeepNorm + relaxed-attention formula written out by hand, layer by layer."""
    config = model.config
    alpha = (2 * config.num_hidden_layers) ** 0.25
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    x = model.feature_projection(model.feature_extractor(values).transpose(1, 2))
    x = model.encoder.layer_norm(x + model.encoder.pos_conv_embed(x))
    states = [x]
    for layer in model.encoder.layers:
        att = layer.attention

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(t.shape[0], t.shape[1], heads, head_dim).transpose(1, 2)

        q, k, v = split(att.q_proj(x)), split(att.k_proj(x)), split(att.v_proj(x))
        s = q @ k.transpose(2, 3) / math.sqrt(head_dim)
        if relax > 0:
            s = (s / relax - (s / relax).amax(dim=-1, keepdim=True)) * relax
        a = (s.softmax(dim=-1) @ v).transpose(1, 2).reshape(x.shape)
        ln1, ln2, ff = layer.layer_norm, layer.final_layer_norm, layer.feed_forward
        x = F.layer_norm(x * alpha + att.out_proj(a), ln1.normalized_shape, ln1.weight, ln1.bias, ln1.eps)
        h = ff.output_dense(F.gelu(ff.intermediate_dense(x)))
        x = F.layer_norm(x * alpha + h, ln2.normalized_shape, ln2.weight, ln2.bias, ln2.eps)
        states.append(x)
    return states


@pytest.mark.parametrize("relax", [-1.0, 4.0])
def test_deepnorm_matches_reference_formula(relax: float) -> None:
    enc = tiny_encoder(arch=dict(deepnorm=True, attention_relax=relax), frames_per_step=1)
    model = enc.model
    assert all(isinstance(layer, MertDeepNormEncoderLayer) for layer in model.encoder.layers)
    assert (model.config._attn_implementation == "mert_relax") == (relax > 0)
    values = normalised(audio(1.0))
    with torch.no_grad():
        out = model(values, output_hidden_states=True)
        expected = reference_deepnorm(model, values, relax)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    for got, want in zip(out.hidden_states, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(audio(1.0)), torch.stack(expected)[:, 0], rtol=1e-4, atol=1e-4)
    plain = HubertModel(HubertConfig(**TINY)).eval()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(stacked(plain, values)[-1], out.last_hidden_state[0], atol=1e-3)


def relax_module(relax: float) -> types.SimpleNamespace:
    return types.SimpleNamespace(training=False, config=types.SimpleNamespace(attention_relax=relax))


def test_relaxed_attention_equals_softmax_and_is_stable() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = torch.zeros(2, 1, 7, 7)
    mask[1, ..., 5:] = torch.finfo(torch.float32).min
    got, weights = mert_relax_attention(relax_module(2.5), q, k, v, mask, scaling=8**-0.5)
    want, want_weights = eager_attention_forward(relax_module(2.5), q, k, v, mask, scaling=8**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, want_weights, rtol=1e-5, atol=1e-6)

    big = q * 300.0  # logits of ~1e3: a naive exp overflows to inf and the softmax turns into nan
    logits = big @ k.transpose(2, 3) * 8**-0.5
    naive = logits.exp() / logits.exp().sum(-1, keepdim=True)
    assert not torch.isfinite(naive).all()
    got, weights = mert_relax_attention(relax_module(2.5), big, k, v, None, scaling=8**-0.5)
    assert torch.isfinite(got).all()
    # Logits of ~1e3 carry fp32 rounding of ~1e-4, hence the looser tolerance.
    torch.testing.assert_close(weights, logits.softmax(-1), rtol=1e-4, atol=1e-4)

    # In half precision the plain q.k overflows (16 * 100 * 100 > 65504); dividing by r first does not.
    half = torch.full((1, 1, 4, 16), 100.0, dtype=torch.float16)
    values = torch.randn(1, 1, 4, 16).half()
    eager, _ = eager_attention_forward(relax_module(64.0), half, half, values, None, scaling=0.25)
    assert not torch.isfinite(eager).all()
    got, _ = mert_relax_attention(relax_module(64.0), half, half, values, None, scaling=0.25)
    # Equal logits: every query averages the values. The output is (batch, time, heads, head_dim).
    uniform = values[0, 0].float().mean(0).expand(4, 16).half()
    torch.testing.assert_close(got[0, :, 0], uniform, rtol=1e-3, atol=1e-3)


def test_relaxed_attention_honours_padding_masks_in_the_model() -> None:
    model = tiny_encoder(arch=dict(deepnorm=True, attention_relax=3.0)).model
    values = normalised(audio(1.0)).repeat(2, 1)
    mask = torch.ones_like(values, dtype=torch.long)
    mask[1, SR // 2 :] = 0
    values[1, SR // 2 :] = 0.0
    with torch.no_grad():
        relaxed = model(values, attention_mask=mask).last_hidden_state
        model.set_attn_implementation("eager")
        eager = model(values, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(relaxed, eager, rtol=1e-4, atol=1e-5)


def test_config_mapping() -> None:
    with pytest.raises(ValueError, match="CQT"):
        mert_hubert_config(dict(TINY, feature_extractor_cqt=True))
    with pytest.raises(ValueError, match="deepnorm"):
        mert_hubert_config(dict(TINY, deepnorm=True, do_stable_layer_norm=True))
    config = mert_hubert_config(
        dict(
            TINY,
            model_type="mert_model",
            architectures=["MERTModel"],
            auto_map={"AutoModel": "x.MERTModel"},
            feature_extractor_cqt=False,
            feature_extractor_cqt_bins=336,
            deepnorm=True,
            attention_relax=32.0,
            sample_rate=SR,
        )
    )
    saved = config.to_dict()
    assert saved["model_type"] == "hubert"
    assert "auto_map" not in saved
    assert not any(key.startswith("feature_extractor_cqt") for key in saved)
    assert (saved["deepnorm"], saved["attention_relax"], saved["sample_rate"]) == (True, 32.0, SR)


def mert_like_checkpoint(directory: Path, legacy_weight_norm: bool) -> HubertModel:
    """A tiny HubertModel saved the way MERT-v1 is published: MERT config.json and a feature extractor."""
    torch.manual_seed(1)
    model = HubertModel(HubertConfig(**dict(TINY, mask_time_prob=0.05))).eval()
    model.save_pretrained(directory)
    if legacy_weight_norm:
        # The published MERT weights are a pytorch_model.bin with pre-parametrization weight-norm names.
        state = {
            key.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): tensor
            for key, tensor in model.state_dict().items()
        }
        (directory / "model.safetensors").unlink()
        torch.save(state, directory / "pytorch_model.bin")
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="mert_model",
        architectures=["MERTModel"],
        feature_extractor_cqt=False,
        deepnorm=False,
        attention_relax=-1.0,
    )
    (directory / "config.json").write_text(json.dumps(config))
    Wav2Vec2FeatureExtractor(sampling_rate=SR).save_pretrained(directory)
    return model


@pytest.mark.parametrize("legacy_weight_norm", [False, True])
def test_loads_mert_checkpoint_directory(tmp_path: Path, legacy_weight_norm: bool) -> None:
    original = mert_like_checkpoint(tmp_path, legacy_weight_norm)
    config = mert_hubert_config(json.loads((tmp_path / "config.json").read_text()))
    _, info = HubertModel.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    enc = MusicEncoder.from_config(MusicEncoderConfig(source=str(tmp_path), arch=TINY, frames_per_step=1))
    clip = audio(1.5)
    torch.testing.assert_close(enc(clip), stacked(original, normalised(clip)), rtol=1e-5, atol=1e-5)


def test_loader_refuses_checkpoint_with_missing_weights(tmp_path: Path) -> None:
    mert_like_checkpoint(tmp_path, legacy_weight_norm=True)
    state = torch.load(tmp_path / "pytorch_model.bin")
    del state["feature_projection.projection.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="lacks weights"):
        MusicEncoder.from_config(MusicEncoderConfig(source=str(tmp_path), arch=TINY))


@pytest.mark.parametrize(("seconds", "steps"), [(10.0, 50), (61.0, 305)])
def test_full_mert_v1_330m_on_meta(seconds: float, steps: int) -> None:
    with torch.device("meta"):
        enc = MusicEncoder.from_config(MusicEncoderConfig(arch=MERT_V1_330M_ARCH))
        out = enc(torch.zeros(round(seconds * SR)))
    # 61 s -> two 30.5 s windows of 2287 frames each -> 4574 frames -> 305 steps of 15 frames.
    assert out.shape == (25, steps, 1024)
    assert out.is_meta
    params = sum(p.numel() for p in enc.parameters())
    print(f"MERT-v1-330M parameters: {params:,}")
    assert 310e6 < params < 320e6
    assert enc.frame_rate == 5.0


def test_weights_false_builds_the_arch_without_touching_the_source(tmp_path: Path) -> None:
    cfg = MusicEncoderConfig(source=str(tmp_path / "not-there"), arch=MERT_V1_330M_ARCH)
    with torch.device("meta"):
        enc = MusicEncoder.from_config(cfg, weights=False)
    assert (enc.num_layers_out, enc.width) == (25, 1024)


def test_first_window_mean_is_the_published_music_feature() -> None:
    # Upstream: processor(wav[:60 s]) -> all 25 states -> mean over every frame; here with a 2 s window.
    enc = tiny_encoder(window_seconds=2.0, span="first_window", pooling="mean")
    wav = audio(5.3, seed=4)
    expected = stacked(enc.model, normalised(wav[: 2 * SR])).mean(dim=1, keepdim=True)
    got = enc(wav)
    assert got.shape == (3, 1, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # A clip shorter than the window is encoded whole.
    short = audio(1.2, seed=5)
    torch.testing.assert_close(enc(short), stacked(enc.model, normalised(short)).mean(dim=1, keepdim=True),
                               rtol=1e-5, atol=1e-5)


def test_first_window_frames_are_the_first_window_only() -> None:
    enc = tiny_encoder(window_seconds=2.0, span="first_window", frames_per_step=1)
    wav = audio(5.0, seed=6)
    torch.testing.assert_close(enc(wav), stacked(enc.model, normalised(wav[: 2 * SR])), rtol=1e-5, atol=1e-5)


def test_whole_clip_mean_weighs_every_frame_the_same() -> None:
    enc = tiny_encoder(window_seconds=2.0, pooling="mean")
    wav = audio(5.0, seed=7)
    frames = torch.cat([stacked(enc.model, normalised(part.numpy())) for part in
                        torch.split(torch.from_numpy(wav), enc.windows(len(wav)))], dim=1)
    torch.testing.assert_close(enc(wav), frames.mean(dim=1, keepdim=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("span", "all", "MusicEncoderConfig.span must be one of whole, first_window, got 'all'"),
    ("pooling", "max", "MusicEncoderConfig.pooling must be one of blocks, mean, got 'max'"),
    ("frames_per_step", 0, "frames_per_step >= 1"),
])
def test_music_config_choices_are_checked_when_built(field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        MusicEncoderConfig(**{field: value})
