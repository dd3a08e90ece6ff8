"""MuChoMusic: both published forms read alike, option scoring equals a direct forward, the CLI resumes."""

from __future__ import annotations

import json

import pytest
import torch

from mumu.cli import main
from mumu.eval.data import load_muchomusic, prompt_for
from mumu.eval.fixtures import make_fixtures
from mumu.eval.runner import RESULTS, read_lines
from mumu.eval.scoring import OptionScorer
from mumu.tokens import encode_text
from tests.mumu.conftest import make_model


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("fixtures"))


def test_official_csv_items_keep_the_correct_answer_and_find_audio_by_published_names(fixtures):
    items = load_muchomusic(fixtures / "muchomusic.csv", fixtures)
    first = items[0]
    assert first.id == "0:1001"
    assert first.data["answers"][first.data["correct"]] == "Moderate"
    assert first.data["prompt"] == prompt_for("What is the tempo of the click track?", first.data["answers"])
    assert first.data["audio"].endswith("sdd/audio/01/1001.2min.mp3")
    assert items[2].data["audio"].endswith("[abcDEF12345]-[30-40].wav")
    assert items[-1].data["audio"] is None  # its track is absent: skipped and reported at run time
    assert items[1].data["reasoning"] == ["temporal and rhythm"] and items[0].data["knowledge"] == ["instrumentation"]
    assert load_muchomusic(fixtures / "muchomusic.csv", fixtures)[0].data == first.data  # same shuffle every run


def test_prepare_prompts_json_marks_the_option_whose_order_is_zero(fixtures):
    rows = json.loads((fixtures / "muchomusic.json").read_text())
    items = load_muchomusic(fixtures / "muchomusic.json", fixtures)
    for row, item in zip(rows, items, strict=True):
        assert item.data["answers"][item.data["correct"]] == item.data["answers"][row["answer_orders"].index(0)]
        assert item.data["prompt"] == row["prompt"]
    assert items[1].data["answers"][items[1].data["correct"]] == "Synthetic clicks"


def test_malformed_files_get_specific_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": 1, "prompt": "q", "answers": ["a", "b"], "answer_orders": [0, 0]}]))
    with pytest.raises(ValueError, match="not a permutation"):
        load_muchomusic(bad, None)
    bad.write_text(json.dumps([{"id": 1}]))
    with pytest.raises(ValueError, match="missing fields"):
        load_muchomusic(bad, None)


def test_option_scores_equal_a_direct_unpadded_forward():
    model = make_model()
    with torch.no_grad():
        model.injection.gates.fill_(1.0)
    scorer = OptionScorer(model, batch_size=3)
    music = torch.randn(model.music_encoder.num_layers_out, 4, model.music_encoder.width)
    options = ["(A) short", "(B) a much longer option text", "(C) mid one"]
    scores = scorer.score("Question: which?", options, music)
    from mumu.modeling import MediaFeatures

    head = scorer.prompt_ids("Question: which?")
    for option, score in zip(options, scores, strict=True):
        tail = encode_text(model.tokenizer, option)
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids, media=MediaFeatures(music=[music])).logits.float(), -1)[0]
        direct = sum(float(logp[len(head) - 1 + i, t]) for i, t in enumerate(tail))
        assert score.logprob == pytest.approx(direct, abs=1e-4)
        assert score.tokens == len(tail)


def test_cli_writes_three_outputs_reports_skips_and_resumes(fixtures, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["eval", "muchomusic", "--data", str(fixtures / "muchomusic.csv"), "--media-root", str(fixtures),
            "--out", str(out), "--batch-size", "2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 5 and summary["evaluated"] == 4 and summary["skipped"] == 1
    assert "missing0000" in summary["skipped_examples"][0]
    metrics = summary["metrics"]
    assert metrics["total"] == 4 and 0 <= metrics["accuracy"] <= 1 and metrics["chance"] == 0.25
    assert set(metrics["genre"]) == {"Electronic", "Pop"} and "audio_swap" in metrics
    report = (out / "report.md").read_text()
    assert "| accuracy |" in report and "skipped 4:missing0000" in report and (out / "plots").is_dir()
    first_run = read_lines(out / RESULTS)
    # An interrupted run: two items were written, the last line torn mid-write.
    lines = (out / RESULTS).read_text().splitlines()
    (out / RESULTS).write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    assert main(args) == 0
    capsys.readouterr()
    assert read_lines(out / RESULTS) == first_run
    assert not list((out / "parts").glob("*.jsonl"))


def test_cli_chooses_and_loads_the_model_as_chat_does(fixtures, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from mumu import model_source

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(model_source, "_local_trained", lambda default: None)  # whatever this machine's cache holds
    args = ["eval", "muchomusic", "--data", str(fixtures / "muchomusic.csv"), "--media-root", str(fixtures),
            "--out", str(tmp_path / "auto"), "--limit", "1"]
    assert main([*args, "--profile", "auto"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)["run"]
    assert run["model"] == "profile:tiny" and run["model_reason"].startswith("auto: ")
    assert "running the offline tiny profile" in err
    # The same checks as chat, before anything loads: quantizing needs a CUDA GPU.
    assert main([*args, "--quantize", "4bit"]) == 2
    assert "--quantize 4bit needs a CUDA GPU" in capsys.readouterr().err
