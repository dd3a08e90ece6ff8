"""Tiny stand-ins of the real Hub encoder repos, in their published file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import HubertModel, VivitConfig, VivitImageProcessor, VivitModel, Wav2Vec2FeatureExtractor

from adapters.mert import mert_hubert_config
from mumu.builder import seeded
from mumu.presets import TINY_MERT_ARCH
from mumu.profiles import tiny

# m-a-p/MERT-v1-330M's config.json flags (pre-LN stack, group-norm feature extractor, no conv bias, relaxed
# attention factor, time masking at training), on the tiny sizes.
MERT_V1_330M_FLAGS = dict(do_stable_layer_norm=True, feat_extract_norm="group", conv_bias=False, deepnorm=False,
                          attention_relax=32.0, feat_proj_layer_norm=True, mask_time_prob=0.075, layer_norm_eps=1e-5)
MERT_REMOTE_CODE = dict(model_type="mert_model", architectures=["MERTModel"], feature_extractor_cqt=False,
                        auto_map={"AutoConfig": "configuration_MERT.MERTConfig",
                                  "AutoModel": "modeling_MERT.MERTModel"})
# Two ViViT preprocessors that differ as the Kinetics-400 one (x / 127.5 - 1) and a plain x / 255 one do.
VIVIT_PREPROCESSORS = {
    "offset-127.5": dict(rescale_factor=1 / 127.5, offset=True),
    "unit-255": dict(rescale_factor=1 / 255, offset=False),
}


def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Files written before torch parametrizations store weight norm as weight_g / weight_v (MERT's do).
    return {k.replace("parametrizations.weight.original0", "weight_g")
             .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}


def save_mert_bin_only(directory: Path, seed: int = 3) -> Path:
    """A MERT-v1-330M-like repo: remote-code config.json with the real flags, pytorch_model.bin, no safetensors."""
    arch = {**TINY_MERT_ARCH, **MERT_V1_330M_FLAGS}
    with seeded(seed):
        model = HubertModel(mert_hubert_config(arch))
    directory.mkdir(parents=True)
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("model_type", "architectures")}
    (directory / "config.json").write_text(json.dumps({**config, **MERT_REMOTE_CODE}, indent=2))
    torch.save(_legacy_names(model.state_dict()), directory / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=24_000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(directory)
    return directory


def save_vivit_bin_only(directory: Path, preprocessor: str, seed: int = 4) -> Path:
    """A ViViT repo as google/vivit-b-16x2-kinetics400 publishes it (pytorch_model.bin only), tiny sizes."""
    config = tiny().video_encoder.arch
    with seeded(seed):
        model = VivitModel(VivitConfig(**config), add_pooling_layer=False)
    directory.mkdir(parents=True)
    model.config.save_pretrained(directory)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    side = model.config.image_size
    VivitImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                        **VIVIT_PREPROCESSORS[preprocessor]).save_pretrained(directory)
    return directory
