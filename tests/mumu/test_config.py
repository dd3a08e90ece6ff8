"""Config tree: presets, dict/JSON round trips, and clear errors for bad configs."""

import json

import pytest

from mumu.config import MuMuConfig
from mumu.profiles import full, get_profile, tiny


@pytest.mark.parametrize("decoder", ["musicgen", "musicgen_melody", "audioldm2"])
def test_round_trip_through_dict_and_json(tmp_path, decoder):
    for cfg in (tiny(decoder=decoder), full(decoder=decoder)):
        again = MuMuConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
        cfg.save(tmp_path)
        assert MuMuConfig.load(tmp_path) == cfg


def test_full_preset_matches_published_shapes():
    cfg = full()
    assert cfg.llm.arch["hidden_size"] == 4096 and cfg.llm.arch["num_hidden_layers"] == 32
    assert cfg.llm.lora_rank == 16 and len(cfg.llm.lora_targets) == 7
    assert cfg.injection.group_size == 6
    assert cfg.adapter.num_tokens == 1
    (stream,) = cfg.projector.streams
    assert (stream.num_tokens, stream.width, stream.masked) == (128, 768, True)
    ldm = full(decoder="audioldm2").projector.streams
    assert [(s.num_tokens, s.width) for s in ldm] == [(128, 1024), (8, 768)]


def test_unknown_key_is_rejected_with_its_path():
    data = tiny().to_dict()
    data["llm"]["lora_rnak"] = 8
    with pytest.raises(ValueError, match=r"config\.llm: unknown keys \['lora_rnak'\]"):
        MuMuConfig.from_dict(data)


def test_encoder_feature_choices_are_checked_when_a_config_is_read():
    data = tiny().to_dict()
    data["video_encoder"]["frame_sampling"] = "random"
    with pytest.raises(ValueError, match=r"video_encoder\.frame_sampling must be one of uniform, consecutive"):
        MuMuConfig.from_dict(data)
    data = tiny().to_dict()
    data["music_encoder"]["pooling"] = "median"
    with pytest.raises(ValueError, match=r"music_encoder\.pooling must be one of blocks, mean, got 'median'"):
        MuMuConfig.from_dict(data)


def test_relative_sources_are_read_beside_the_config(tmp_path):
    cfg = tiny()
    cfg.image_encoder.source = "./components/vit"
    cfg.music_encoder.source = "some/hub-id"
    cfg.save(tmp_path)
    loaded = MuMuConfig.load(tmp_path)
    assert loaded.image_encoder.source == str(tmp_path.resolve() / "components" / "vit")
    assert loaded.music_encoder.source == "some/hub-id" and loaded.video_encoder.source is None


def test_newer_version_is_rejected():
    data = tiny().to_dict()
    data["version"] = 99
    with pytest.raises(ValueError, match="newer than this code"):
        MuMuConfig.from_dict(data)


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        MuMuConfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        MuMuConfig.load(tmp_path)


def test_unknown_profile_and_decoder():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="decoder must be one of musicgen, musicgen_melody, audioldm2, got 'jukebox'"):
        tiny(decoder="jukebox")


def test_llm_loading_choices_are_checked_when_a_config_loads():
    data = tiny().to_dict()
    assert data["llm"]["quantize"] is None and data["llm"]["device_map"] is None
    data["llm"]["quantize"] = "3bit"
    with pytest.raises(ValueError, match=r"llm\.quantize must be one of 8bit, 4bit, got '3bit'"):
        MuMuConfig.from_dict(data)
    data["llm"].update(quantize="4bit", device_map="balanced")
    with pytest.raises(ValueError, match=r"llm\.device_map must be one of auto, got 'balanced'"):
        MuMuConfig.from_dict(data)
    data["llm"]["device_map"] = "auto"
    assert MuMuConfig.from_dict(data).llm.quantize == "4bit"


def test_conditioning_mode_is_checked_when_a_config_loads(tmp_path):
    data = tiny().to_dict()
    assert data["pipeline"]["conditioning"] == "embeddings"
    data["pipeline"]["conditioning"] = "captions"
    with pytest.raises(ValueError, match=r"pipeline\.conditioning must be one of embeddings, caption, got 'captions'"):
        MuMuConfig.from_dict(data)
    del data["pipeline"]["conditioning"]  # config.json files written before the field existed still load
    assert MuMuConfig.from_dict(data).pipeline.conditioning == "embeddings"


def test_other_decoders_come_from_the_models_profile_family():
    from mumu.profiles import sibling_decoder, tiny_decoder

    model = full(decoder="audioldm2")
    model.decoder.max_duration = 60.0
    musicgen = sibling_decoder(model, "musicgen")
    assert (musicgen.source, musicgen.max_duration) == ("facebook/musicgen-medium", 60.0)
    assert sibling_decoder(model, "musicgen_melody").source == "facebook/musicgen-melody"
    assert sibling_decoder(model, "audioldm2") is model.decoder
    small = full(decoder="musicgen", musicgen_size="small")
    assert sibling_decoder(small, "musicgen") is small.decoder  # the model's own MusicGen keeps its size
    assert sibling_decoder(small, "audioldm2").source == "cvssp/audioldm2-music"
    assert sibling_decoder(tiny(), "audioldm2") == tiny_decoder("audioldm2")
    with pytest.raises(ValueError, match="decoder must be one of musicgen, musicgen_melody, audioldm2, got 'jukebox'"):
        sibling_decoder(tiny(), "jukebox")


def test_gate_init_keeps_the_papers_zero_for_full_and_is_checked(tmp_path):
    assert full().injection.gate_init == 0.0 and tiny().injection.gate_init == 1.0
    data = tiny().to_dict()
    data["injection"]["gate_init"] = float("nan")
    with pytest.raises(ValueError, match="gate_init"):
        MuMuConfig.from_dict(data)
