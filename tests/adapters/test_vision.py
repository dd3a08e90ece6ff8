"""ViT image and ViViT video encoders: shapes, preprocessing, frozen behaviour, loading."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from adapters.config import ImageEncoderConfig, VideoEncoderConfig
from adapters.vision import ImageEncoder, VideoEncoder
from mumu.presets import TINY_VIT_ARCH, TINY_VIVIT_ARCH, VIT_B16_ARCH, VIVIT_B16X2_ARCH

VIT_TINY = TINY_VIT_ARCH
VIVIT_TINY = TINY_VIVIT_ARCH


def image_encoder(source: str | None = None) -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder.from_config(ImageEncoderConfig(source=source, arch=VIT_TINY))


def video_encoder(source: str | None = None) -> VideoEncoder:
    torch.manual_seed(0)
    return VideoEncoder.from_config(VideoEncoderConfig(source=source, arch=VIVIT_TINY))


def picture(height: int = 48, width: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def clip(frames: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 40, 50, 3), dtype=np.uint8)


def captured_input(module: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    return seen


def test_image_shapes_any_size_and_mode() -> None:
    enc = image_encoder()
    images = [picture(), picture(20, 90).convert("L"), picture(33, 33).convert("RGBA")]
    out = enc(images)
    assert out.shape == (3, 17, 32) == (3, enc.num_tokens, enc.width)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="PIL"):
        enc([np.zeros((32, 32, 3), dtype=np.uint8)])


def test_image_pixels_are_rescaled_from_0_255() -> None:
    enc = image_encoder()
    enc.processor.do_rescale = False  # as a bad saved config (or upstream's call) would have it
    seen = captured_input(enc.model.embeddings)
    white, black = Image.new("RGB", (40, 40), (255, 255, 255)), Image.new("RGB", (40, 40), (0, 0, 0))
    enc([white, black])
    assert torch.allclose(seen[0][0], torch.ones(3, 32, 32))
    assert torch.allclose(seen[0][1], -torch.ones(3, 32, 32))


def test_video_shapes_and_token_layout() -> None:
    enc = video_encoder()
    out = enc([clip(), clip(seed=1)])
    assert out.shape == (2, 65, 32) == (2, enc.num_tokens, enc.width)
    assert (enc.num_frames, enc.temporal_tokens, enc.spatial_tokens) == (8, 4, 16)
    # Tokens are time-major: changing only the last two frames changes only the last group's embeddings.
    seen: list[torch.Tensor] = []
    enc.model.embeddings.register_forward_hook(lambda _, args, output: seen.append(output))
    changed = clip()
    changed[-2:] = clip(seed=2)[-2:]
    enc([clip(), changed])
    groups = [tokens[1:].view(enc.temporal_tokens, enc.spatial_tokens, -1) for tokens in seen[0]]
    torch.testing.assert_close(groups[0][:-1], groups[1][:-1])
    assert not torch.allclose(groups[0][-1], groups[1][-1])


def test_video_preprocessing_uses_vivit_rescaling() -> None:
    enc = video_encoder()
    seen = captured_input(enc.model.embeddings)
    enc([np.full((8, 32, 32, 3), 255, np.uint8), np.zeros((8, 32, 32, 3), np.uint8)])
    # x / 127.5 - 1, then (x - 0.5) / 0.5: white -> 1, black -> -3 (the ViViT-B Kinetics preprocessing).
    assert torch.allclose(seen[0][0], torch.ones(8, 3, 32, 32))
    assert torch.allclose(seen[0][1], torch.full((8, 3, 32, 32), -3.0))


def test_video_input_validation() -> None:
    enc = video_encoder()
    with pytest.raises(ValueError, match=r"\(8, H, W, 3\)"):
        enc([clip(frames=7)])
    with pytest.raises(ValueError, match="uint8"):
        enc([clip().astype(np.float32) / 255])
    with pytest.raises(ValueError, match="non-empty"):
        enc([])


@pytest.mark.parametrize("make", [image_encoder, video_encoder])
def test_frozen_eval_no_grad_deterministic(make) -> None:
    enc = make()
    enc.train()
    assert not any(module.training for module in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    inputs = [picture()] if isinstance(enc, ImageEncoder) else [clip()]
    first, second = enc(inputs), enc(inputs)
    assert not first.requires_grad
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_full_encoders_on_meta() -> None:
    with torch.device("meta"):
        vit = ImageEncoder.from_config(ImageEncoderConfig(arch=VIT_B16_ARCH))
        vivit = VideoEncoder.from_config(VideoEncoderConfig(arch=VIVIT_B16X2_ARCH))
        image_tokens = vit([picture(240, 320)])
        video_tokens = vivit([np.zeros((32, 240, 320, 3), np.uint8)])
    assert image_tokens.shape == (1, 197, 768)
    assert image_tokens.is_meta
    assert video_tokens.shape == (1, 3137, 768)
    assert video_tokens.is_meta
    assert (vivit.temporal_tokens, vivit.spatial_tokens) == (16, 196)
    vit_params = sum(p.numel() for p in vit.parameters())
    vivit_params = sum(p.numel() for p in vivit.parameters())
    print(f"ViT-B/16 parameters: {vit_params:,}; ViViT-B/16x2 parameters: {vivit_params:,}")
    assert 85e6 < vit_params < 87e6
    assert 88e6 < vivit_params < 90e6


def test_image_round_trip_through_source(tmp_path: Path) -> None:
    enc = image_encoder()
    enc.model.save_pretrained(tmp_path)
    enc.processor.save_pretrained(tmp_path)
    loaded = image_encoder(source=str(tmp_path))
    images = [picture(), picture(seed=1)]
    torch.testing.assert_close(loaded(images), enc(images), rtol=0, atol=0)


def test_image_loads_transformers_4_checkpoint_names(tmp_path: Path) -> None:
    """google/vit-base-patch16-224 stores a ViTForImageClassification with the transformers 4 module names."""
    enc = image_encoder()
    renames = [
        (r"^layers\.", "encoder.layer."),
        ("q_proj", "attention.query"),
        ("k_proj", "attention.key"),
        ("v_proj", "attention.value"),
        ("o_proj", "output.dense"),
        (r"mlp\.fc1", "intermediate.dense"),
        (r"mlp\.fc2", "output.dense"),
    ]
    state = {}
    for key, tensor in enc.model.state_dict().items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        state["vit." + key] = tensor
    state.update({"classifier.weight": torch.zeros(2, 32), "classifier.bias": torch.zeros(2)})
    assert "vit.encoder.layer.0.attention.attention.query.weight" in state
    enc.model.config.save_pretrained(tmp_path)
    enc.processor.save_pretrained(tmp_path)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    torch.testing.assert_close(
        image_encoder(source=str(tmp_path))([picture()]), enc([picture()]), rtol=0, atol=0
    )


def test_video_round_trip_through_source(tmp_path: Path) -> None:
    enc = video_encoder()
    enc.model.save_pretrained(tmp_path)
    enc.processor.save_pretrained(tmp_path)
    loaded = video_encoder(source=str(tmp_path))
    videos = [clip(), clip(seed=1)]
    torch.testing.assert_close(loaded(videos), enc(videos), rtol=0, atol=0)


def test_runs_in_bfloat16() -> None:
    vit = ImageEncoder.from_config(ImageEncoderConfig(arch=VIT_TINY), dtype=torch.bfloat16)
    vivit = VideoEncoder.from_config(VideoEncoderConfig(arch=VIVIT_TINY), dtype=torch.bfloat16)
    assert vit([picture()]).dtype == torch.bfloat16
    assert vivit([clip()]).dtype == torch.bfloat16


def test_weights_false_builds_the_arch_without_touching_the_source(tmp_path: Path) -> None:
    missing = str(tmp_path / "not-there")
    with torch.device("meta"):
        vit = ImageEncoder.from_config(ImageEncoderConfig(source=missing, arch=VIT_B16_ARCH), weights=False)
        vivit = VideoEncoder.from_config(VideoEncoderConfig(source=missing, arch=VIVIT_TINY), weights=False)
    assert vit.num_tokens == 197
    assert vivit.num_tokens == 65
