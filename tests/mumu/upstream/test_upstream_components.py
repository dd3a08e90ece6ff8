"""Frozen components on a fresh Hugging Face cache: .bin-only repos, bf16 copies, and the checkpoint's own copies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import VivitModel

from mumu.checkpoint import from_pretrained
from mumu.config import MuMuConfig
from mumu.feature_cache import encode
from mumu.upstream import compare
from mumu.upstream.convert import REPORT_NAME, convert
from tests.mumu.upstream.hubcache import FakeHub, copy_tree, use_cache
from tests.mumu.upstream.published import Spec, published_state, save_encoders, save_llm, save_published
from tests.mumu.upstream.standins import (
    MERT_V1_330M_FLAGS,
    VIVIT_PREPROCESSORS,
    save_mert_bin_only,
    save_vivit_bin_only,
)

MERT_ID, VIT_ID, VIVIT_ID = "m-a-p/MERT-standin", "google/vit-standin", "google/vivit-standin"


def _vivit_pixels(frames: np.ndarray, preprocessor: str) -> torch.Tensor:
    # The processor's arithmetic written out: rescale (minus 1 with offset), then normalise with mean = std = 0.5.
    options = VIVIT_PREPROCESSORS[preprocessor]
    x = frames.astype(np.float64) * options["rescale_factor"] - (1.0 if options["offset"] else 0.0)
    x = (x - 0.5) / 0.5
    return torch.from_numpy(x.transpose(0, 3, 1, 2)[None]).float()


@pytest.mark.slow
@pytest.mark.parametrize("preprocessor", sorted(VIVIT_PREPROCESSORS))
def test_fresh_cache_bin_only_repos_and_checkpoint_copies(tmp_path, monkeypatch, preprocessor):
    local = save_encoders(tmp_path / "local")
    remotes = {MERT_ID: save_mert_bin_only(tmp_path / "remote" / "mert"),
               VIT_ID: copy_tree(local["vit"], tmp_path / "remote" / "vit"),
               VIVIT_ID: save_vivit_bin_only(tmp_path / "remote" / "vivit", preprocessor)}
    spec = Spec(layers=18, prefix_rows=18, frozen_dtype=torch.bfloat16)
    llm = save_llm(tmp_path / "llm", spec.layers)
    state = published_state(llm, spec, {"mert": remotes[MERT_ID], "vit": remotes[VIT_ID], "vivit": remotes[VIVIT_ID]})
    # The adapters were trained on encoder copies that differ from the Hub ones in one tensor each.
    state["vit_model.embeddings.cls_token"] = state["vit_model.embeddings.cls_token"] + 1
    state["vivit_model.layernorm.weight"] = state["vivit_model.layernorm.weight"] * 2
    # MuMu-LLaMA's video RNN, which upstream's forward never reached.
    state["iu_vivit_rnn.weight_ih_l0"] = torch.randn(32, 32)
    state["iu_vivit_attention.weight"] = torch.randn(1, 32)
    path = save_published(tmp_path / "checkpoint.pth", state, module_prefix=True)

    # A fresh cache, online: the converter downloads what it needs through the hub client.
    cache = tmp_path / "hf-cache"
    use_cache(monkeypatch, cache, offline=False)
    hub = FakeHub(cache, remotes)
    monkeypatch.setattr(compare, "snapshot_download", hub.snapshot_download)
    report = convert(path, str(tmp_path / "llm"), tmp_path / "out", mert=MERT_ID, vit=VIT_ID, vivit=VIVIT_ID,
                     decoder="facebook/musicgen-small")

    # .bin-only repos: safetensors asked first, then the .bin; nothing else fetched. ViT has safetensors.
    mert_requests = [(patterns, files) for repo, patterns, files in hub.requests if repo == MERT_ID]
    assert mert_requests[-2:] == [(tuple(compare.SAFETENSORS_FILES), ("config.json", "preprocessor_config.json")),
                                  (tuple(compare.BIN_FILES),
                                   ("config.json", "preprocessor_config.json", "pytorch_model.bin"))]
    assert hub.cached_files(MERT_ID) == {"config.json", "preprocessor_config.json", "pytorch_model.bin"}
    assert "model.safetensors" in hub.cached_files(VIT_ID)

    # bf16 copies equal to the Hub weights match; the random poolers are skipped; the edited tensors differ.
    assert report.components["mert"]["matches"] and report.components["mert"]["checked"] > 40
    assert report.components["vit"]["differing_keys"] == ["embeddings.cls_token"]
    assert report.components["vivit"]["differing_keys"] == ["layernorm.weight"]
    for name in ("vit", "vivit"):
        assert report.components[name]["skipped_unused"] == ["pooler.dense.weight", "pooler.dense.bias"]
    assert report.replaced == {"vit": "./components/vit", "vivit": "./components/vivit"}
    assert report.unrunnable_keys == ["iu_vivit_attention.weight", "iu_vivit_rnn.weight_ih_l0"]
    assert report.unexpected_keys == []
    assert any("iu_vivit_rnn" in note for note in report.notes)
    assert any("vivit differs" in note and "./components/vivit" in note for note in report.notes)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["video_encoder"]["source"] == "./components/vivit"
    assert saved["music_encoder"]["source"] == MERT_ID
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["replaced"] == report.replaced
    copied = tmp_path / "out" / "components" / "vivit"
    assert json.loads((copied / "preprocessor_config.json").read_text()) == json.loads(
        (remotes[VIVIT_ID] / "preprocessor_config.json").read_text())
    assert "pooler.dense.weight" not in load_file(str(copied / "model.safetensors"))

    # Then offline, from the moved directory: the converted model loads everything from the cache and beside it.
    monkeypatch.setattr(compare, "snapshot_download", hub._real)
    use_cache(monkeypatch, cache, offline=True)
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)
    assert MuMuConfig.load(moved).video_encoder.source == str(moved.resolve() / "components" / "vivit")
    model = from_pretrained(moved)

    # The music encoder is the .bin-only MERT with the real flags, loaded whole.
    music = model.music_encoder.model
    assert music.config.do_stable_layer_norm and not music.config.conv_bias
    assert music.config.feat_extract_norm == "group" and music.config.mask_time_prob == 0.075
    assert type(music.encoder.layers[0]).__name__ == "HubertEncoderLayerStableLayerNorm"  # pre-LN
    assert all(layer.conv.bias is None for layer in music.feature_extractor.conv_layers)
    assert isinstance(music.feature_extractor.conv_layers[0].layer_norm, torch.nn.GroupNorm)
    bin_state = torch.load(remotes[MERT_ID] / "pytorch_model.bin", weights_only=True)
    assert torch.equal(music.encoder.pos_conv_embed.conv.parametrizations.weight.original1,
                       bin_state["encoder.pos_conv_embed.conv.weight_v"])
    for name, value in music.state_dict().items():
        if name in bin_state:
            assert torch.equal(value, bin_state[name]), name

    # The image and video encoders are the checkpoint's copies (bf16 values), not the Hub's.
    assert torch.equal(model.image_encoder.model.embeddings.cls_token, state["vit_model.embeddings.cls_token"].float())
    video = model.video_encoder
    assert torch.equal(video.model.layernorm.weight, state["vivit_model.layernorm.weight"].float())

    # ... with the source's preprocessing: the features equal an independent run of ViViT on the written-out
    # processor arithmetic, with the checkpoint's tensors.
    side = video.model.config.image_size
    frames = np.random.default_rng(0).integers(0, 256, (video.num_frames, side, side, 3), dtype=np.uint8)
    reference = VivitModel(video.model.config, add_pooling_layer=False)
    reference.load_state_dict({k.removeprefix("vivit_model."): v.float() for k, v in state.items()
                               if k.startswith("vivit_model.") and not k.startswith("vivit_model.pooler.")},
                              strict=True)
    with torch.no_grad():
        expected = reference.eval()(pixel_values=_vivit_pixels(frames, preprocessor)).last_hidden_state[0]
    assert (encode(model, "video", frames) - expected).abs().max() < 1e-5

    # And converting again offline works from the cache alone.
    again = convert(path, str(tmp_path / "llm"), tmp_path / "again", mert=MERT_ID, vit=VIT_ID, vivit=VIVIT_ID,
                     decoder="facebook/musicgen-small")
    assert again.replaced == report.replaced and again.components == report.components


def test_mert_standin_has_the_real_flags(tmp_path):
    directory = save_mert_bin_only(tmp_path / "mert")
    config = json.loads((directory / "config.json").read_text())
    assert {k: config[k] for k in MERT_V1_330M_FLAGS} == MERT_V1_330M_FLAGS
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "preprocessor_config.json",
                                                            "pytorch_model.bin"]


def test_copies_match_in_their_own_precision_whatever_their_names(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    hub = {"vit.a.weight": torch.randn(8, 8, generator=g), "vit.b.weight": torch.randn(8, 8, generator=g),
           "classifier.weight": torch.randn(3, 8, generator=g)}
    save_file(hub, str(tmp_path / "model.safetensors"))
    copies = {"a.weight": hub["vit.a.weight"].bfloat16(),  # same tensor, prefix-less name, bf16
              "renamed.weight": hub["vit.b.weight"].half(),  # another name entirely, fp16
              "pooler.dense.weight": torch.randn(8, 8, generator=g),  # random and unused: skipped
              "c.weight": hub["vit.b.weight"] + 1}  # really differs
    result = compare.check_component("vit", str(tmp_path), copies)
    assert (result.checked, result.skipped, result.differing) == (3, ["pooler.dense.weight"], ["c.weight"])
    assert compare.check_component("mert", str(tmp_path), {"pooler.dense.weight": copies["a.weight"]}).checked == 1


@pytest.mark.slow
def test_a_decoder_copy_that_differs_is_written_and_loaded(tmp_path):
    from generation.registry import build_decoder
    from mumu.profiles import tiny

    decoder_dir = tmp_path / "musicgen"
    reference = build_decoder(tiny().decoder)
    reference.model.save_pretrained(decoder_dir)
    reference.tokenizer.save_pretrained(decoder_dir)
    encoders = save_encoders(tmp_path / "encoders")
    spec = Spec(layers=18, prefix_rows=18)
    state = published_state(save_llm(tmp_path / "llm", spec.layers), spec, encoders)
    held = {"generation_model." + k: load().half() for k, load in compare.weight_loaders(decoder_dir).items()}
    key = "generation_model.enc_to_dec_proj.weight"
    held[key] = held[key] + 1
    path = save_published(tmp_path / "checkpoint.pth", {**state, **held})
    report = convert(path, str(tmp_path / "llm"), tmp_path / "out", mert=str(encoders["mert"]),
                     vit=str(encoders["vit"]), vivit=str(encoders["vivit"]), decoder=str(decoder_dir))
    assert report.components["decoder"]["differing_keys"] == ["enc_to_dec_proj.weight"]
    assert report.replaced == {"decoder": "./components/decoder"}
    loaded = build_decoder(MuMuConfig.load(tmp_path / "out").decoder)
    assert torch.equal(loaded.model.enc_to_dec_proj.weight, held[key].float())
    for name, value in loaded.model.state_dict().items():
        if "generation_model." + name in held and name != "enc_to_dec_proj.weight":
            assert torch.equal(value, held["generation_model." + name].float()), name
    assert loaded.tokenizer("a calm piano").input_ids == reference.tokenizer("a calm piano").input_ids


@pytest.mark.parametrize("zip_format", [True, False])
def test_bin_weights_load_in_either_torch_format(tmp_path, zip_format):
    tensors = {"a.weight": torch.randn(4, 3), "b.bias": torch.arange(5)}
    torch.save(tensors, tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
    (tmp_path / "training_args.bin").write_bytes(b"not weights")  # not a *model*.bin: never read
    loaders = compare.weight_loaders(tmp_path)
    assert sorted(loaders) == sorted(tensors)
    assert all(torch.equal(loaders[k](), v) for k, v in tensors.items())


def test_a_pipeline_component_cannot_be_replaced_by_one_flat_copy(tmp_path):
    from safetensors.torch import save_file

    from mumu.upstream.components import write_checkpoint_copy

    for folder in ("unet", "vae"):
        (tmp_path / "pipe" / folder).mkdir(parents=True)
        save_file({"w": torch.zeros(2)}, str(tmp_path / "pipe" / folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match=r"folders \['unet', 'vae'\]: only single-folder components"):
        write_checkpoint_copy("decoder", str(tmp_path / "pipe"), {"unet.w": torch.ones(2)}, tmp_path / "out")
