"""Profiles and presets: published sizes on the meta device, streams that fit the decoders, config typos at load."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import HubertConfig, LlamaConfig, LlamaForCausalLM, ViTConfig, ViTModel

from adapters.mert import MusicEncoder, mert_hubert_config
from choices import ChoiceError
from generation.registry import DECODER_KINDS, build_decoder
from mumu import presets
from mumu.config import MuMuConfig
from mumu.profiles import decoder_streams, full, full_decoder, get_profile, tiny, tiny_decoder
from mumu.projector import check_streams


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_published_llm_and_image_encoder_have_their_published_parameter_counts():
    with torch.device("meta"):
        llama = LlamaForCausalLM(LlamaConfig(**presets.LLAMA2_7B_ARCH))
        vit = ViTModel(ViTConfig(**presets.VIT_B16_ARCH))  # with its pooler, as the published checkpoint
    assert _count(llama) == 6_738_415_616  # Llama-2-7b-hf
    assert _count(vit) == 86_389_248  # google/vit-base-patch16-224(-in21k) ViTModel


def test_mert_preset_is_the_published_330m_layout():
    config = mert_hubert_config(presets.MERT_V1_330M_ARCH)
    assert isinstance(config, HubertConfig)
    assert (config.conv_bias, config.feat_extract_norm, config.do_stable_layer_norm) == (False, "group", True)
    assert (config.mask_time_prob, config.layer_norm_eps) == (0.075, 1e-5)
    with torch.device("meta"):
        encoder = MusicEncoder.from_config(full().music_encoder, weights=False)
    # HuBERT-large class ("330M" by name); the mask embedding the checkpoint holds is there to load into.
    assert 310e6 < _count(encoder) < 320e6
    assert encoder.model.masked_spec_embed.shape == (1024,)
    assert (encoder.num_layers_out, encoder.width) == (25, 1024)


@pytest.mark.parametrize("kind", DECODER_KINDS)
def test_tiny_projector_predicts_exactly_what_the_tiny_decoder_reads(kind):
    config = tiny(decoder=kind)
    decoder = build_decoder(config.decoder)
    check_streams(config.projector, decoder.streams, kind)
    assert config.projector.streams == decoder_streams(tiny_decoder(kind), 16)


@pytest.mark.slow
def test_full_projector_predicts_exactly_what_the_published_decoder_reads():
    for kind in DECODER_KINDS:
        config = full(decoder=kind)
        decoder = build_decoder(config.decoder, device="meta", weights=False)
        check_streams(config.projector, decoder.streams, kind)
        assert all(s.num_tokens == 128 for s in config.projector.streams if s.masked)  # the published T5 length


def test_full_decoders_are_the_published_checkpoints():
    assert full_decoder("musicgen", "small").source == "facebook/musicgen-small"
    assert full_decoder("musicgen_melody", "small").source == "facebook/musicgen-melody"  # one melody size
    assert full_decoder("audioldm2").arch["unet"]["attention_head_dim"] == 8
    widths = {size: presets.MUSICGEN_ARCHS[size]["decoder"]["hidden_size"] for size in presets.MUSICGEN_ARCHS}
    assert widths == {"small": 1024, "medium": 1536, "large": 2048, "melody": 1536}
    with pytest.raises(ValueError, match="unknown MusicGen size 'huge'; choose one of small, medium, large"):
        full(musicgen_size="huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'; choose one of tiny, full"):
        get_profile("huge")


@pytest.mark.parametrize(("section", "key", "bad", "accepted"), [
    ("adapter", "style", "m2gen", "mumu, m2ugen, m2ugen_rnn"),
    ("adapter", "rnn", "lstn", "gru, rnn, lstm"),
    ("injection", "mode", "sumed", "grouped, summed"),
    ("projector", "layout", "flatt", "tokens, flat"),
    ("decoder", "kind", "musicgen-melody", "musicgen, musicgen_melody, audioldm2"),
    ("pipeline", "template", "alpacca", "alpaca, chat, m2ugen"),
    ("pipeline", "stop_rule", "EOS", "eos, m2ugen"),
    ("pipeline", "conditioning", "captions", "embeddings, caption"),
])
def test_a_typo_in_config_json_fails_at_load_naming_the_accepted_values(tmp_path, section, key, bad, accepted):
    path = tiny().save(tmp_path)
    data = json.loads(path.read_text())
    data[section][key] = bad
    path.write_text(json.dumps(data))
    with pytest.raises(ChoiceError) as error:
        MuMuConfig.load(tmp_path)
    assert str(error.value) == f"config.{section}.{key} must be one of {accepted}, got {bad!r}"


def test_list_items_and_cross_field_rules_are_checked_at_load_too():
    data = tiny().to_dict()
    data["injection"]["modalities"] = ["music", "picture", "video"]
    with pytest.raises(ValueError, match=r"config\.injection\.modalities\[1\] must be one of music, image, video"):
        MuMuConfig.from_dict(data)
    data = tiny().to_dict()
    data["adapter"].update(style="m2ugen", num_tokens=2)
    with pytest.raises(ValueError, match=r"config\.adapter: adapter style 'm2ugen' gives one token per modality"):
        MuMuConfig.from_dict(data)
    data = tiny().to_dict()
    data["projector"]["layout"] = "flat"
    with pytest.raises(ValueError, match=r"config\.projector: the flat projector layout predicts no keep-masks"):
        MuMuConfig.from_dict(data)
