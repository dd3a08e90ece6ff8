"""Bad published files get clear errors; the published Hub ids convert once into the cache; the CLI."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from mumu.cli import main
from mumu.upstream import convert as convert_module
from mumu.upstream import hub
from mumu.upstream.loading import NotPublishedCheckpoint, check_keys, detect_layout, load_state
from tests.mumu.upstream.published import Spec, published_state, save_encoders, save_llm, save_published


class NotAllowed:
    """A class the safe loader must refuse to unpickle."""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    encoders = save_encoders(root / "encoders")
    llm = save_llm(root / "llm", 18)
    state = published_state(llm, Spec(layers=18, prefix_rows=18), encoders)
    return root, encoders, state


def test_published_file_loads_safely_with_module_prefix(tmp_path, published):
    _, _, state = published
    path = save_published(tmp_path / "checkpoint.pth", state, module_prefix=True)
    loaded = load_state(path)
    assert set(loaded) == set(state)
    layout = detect_layout(loaded)
    assert (layout.layers, layout.prefix_rows, layout.decoder_kind, layout.injection_mode) == (
        18, 18, "musicgen", "grouped")
    assert check_keys(loaded, layout) == []


def test_missing_and_misshaped_keys_are_named(tmp_path, published):
    _, _, state = published
    broken = dict(state)
    del broken["llama.layers.5.attention.lora_wv_l2.weight"]
    broken["iu_vit_proj.bias"] = torch.zeros(7)
    loaded = load_state(save_published(tmp_path / "checkpoint.pth", broken))
    with pytest.raises(NotPublishedCheckpoint, match=r"missing \(1\): \['llama.layers.5.attention.lora_wv_l2.weight'\]"
                       r"[\s\S]*wrong shape \(1\): \['iu_vit_proj.bias: \(7,\), expected \(64,\)'\]"):
        check_keys(loaded, detect_layout(loaded))


def test_other_prefix_row_counts_are_rejected(tmp_path, published):
    _, _, state = published
    odd = {**state, "prefix_query.weight": torch.zeros(12, 64)}
    with pytest.raises(NotPublishedCheckpoint, match="prefix_query has 12 rows; the published layouts have 18"):
        detect_layout(load_state(save_published(tmp_path / "checkpoint.pth", odd)))


def test_files_that_are_not_published_checkpoints(tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": {}}))
    with pytest.raises(NotPublishedCheckpoint, match="not a torch checkpoint"):
        load_state(plain)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "thing": NotAllowed()}, unsafe)
    with pytest.raises(NotPublishedCheckpoint, match="refused to unpickle"):
        load_state(unsafe)
    other = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, other)
    with pytest.raises(NotPublishedCheckpoint, match=r"lacks llama\.tok_embeddings\.weight"):
        load_state(other)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_state(tmp_path / "absent.pth")


def test_cli_reports_bad_files_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    code = main(["convert-upstream", "--checkpoint", str(bad), "--llm", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad} is not a torch checkpoint (torch.save zip format); expected the published M2UGen " \
        "checkpoint.pth\n"


@pytest.mark.slow
def test_cli_converts(tmp_path, published):
    root, encoders, state = published
    path = save_published(tmp_path / "checkpoint.pth", state)
    code = main(["convert-upstream", "--checkpoint", str(path), "--llm", str(root / "llm"), "--out",
                 str(tmp_path / "out"), "--mert", str(encoders["mert"]), "--vit", str(encoders["vit"]),
                 "--vivit", str(encoders["vivit"]), "--decoder", "facebook/musicgen-small",
                 "--conditioning", "embeddings"])
    assert code == 0
    assert {"config.json", "model.safetensors", "conversion.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["pipeline"]["conditioning"] == "embeddings"
    assert config["llm"]["lora_alpha"] == config["llm"]["lora_rank"] == 4


@pytest.mark.slow
def test_published_hub_id_is_downloaded_and_converted_once(tmp_path, published, monkeypatch):
    from mumu.checkpoint import from_pretrained

    root, encoders, state = published
    path = save_published(tmp_path / "checkpoint.pth", state, module_prefix=True)
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "DEFAULT_LLM", str(root / "llm"))
    monkeypatch.setattr(convert_module, "DEFAULT_SOURCES", {k: str(v) for k, v in encoders.items()})
    model = from_pretrained("M2UGen/M2UGen-MusicGen-small")
    assert calls == [("M2UGen/M2UGen-MusicGen-small", "checkpoint.pth")]
    assert model.config.decoder.source == "facebook/musicgen-small"
    again = from_pretrained("M2UGen/M2UGen-MusicGen-small")
    assert len(calls) == 1  # the converted copy is reused
    weights = again.trained_state_dict()
    assert all(torch.equal(t, weights[k]) for k, t in model.trained_state_dict().items())
    assert (hub.converted_dir("M2UGen/M2UGen-MusicGen-small") / "conversion.json").is_file()
    assert not list((tmp_path / "cache").glob(".converting-*"))


def test_a_converted_copy_is_complete_only_with_everything_the_converter_writes(tmp_path, monkeypatch):
    from mumu.config import CONFIG_NAME
    from mumu.upstream.convert import REPORT_NAME, WEIGHTS_NAME
    from mumu.upstream.hub import CACHE_ENV, converted_copy, converted_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    target = converted_dir("M2UGen/M2UGen-MusicGen-small")
    target.mkdir(parents=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (target / name).write_text("x")
        assert converted_copy("M2UGen/M2UGen-MusicGen-small") is None  # an interrupted copy is not a model
    (target / REPORT_NAME).write_text("{}")
    assert converted_copy("M2UGen/M2UGen-MusicGen-small") == target
