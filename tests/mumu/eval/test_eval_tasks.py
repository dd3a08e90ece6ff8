"""Every task end to end through the CLI on the tiny profile, with tiny local reference models (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mumu.cli import main
from mumu.eval.fixtures import make_fixtures
from mumu.eval.references import ReferenceModels
from mumu.eval.runner import RESULTS, read_lines
from tests.mumu.eval.reference_models import save_reference_models, save_roberta


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return make_fixtures(root / "fixtures"), save_reference_models(root / "refs")


def _run(capsys, task: str, data, fixtures, out, refs, *extra: str) -> dict:
    args = ["eval", task, "--data", str(data), "--media-root", str(fixtures), "--out", str(out), "--duration", "0.5",
            "--clap", refs["clap"], "--mert", refs["mert"], "--tagger", refs["tagger"], *extra]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"results.jsonl", "summary.json", "report.md"} <= {p.name for p in out.iterdir()}
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("task", ["text2music", "image2music", "video2music", "edit"])
def test_generation_tasks_write_all_three_outputs(setup, tmp_path, capsys, task):
    fixtures, refs = setup
    summary = _run(capsys, task, fixtures / f"{task}.jsonl", fixtures, tmp_path, refs, "--limit", "2",
                   "--embedding", "clap", "--embedding", "mert")
    metrics = summary["metrics"]
    assert summary["evaluated"] == 2 and metrics["with_reference"] == 2
    assert -1 <= metrics["clap_score"] <= 1 and metrics["kl"]["kl_softmax"] >= 0
    assert set(metrics["fad"]) == {"clap", "mert"} and all(v >= -1e-6 for v in metrics["fad"].values())
    if task == "video2music":
        assert set(metrics["beat_alignment"]) == {"BCS", "BHS"}
    # The stored embeddings are the reference models' own output for the generated track.
    record = read_lines(tmp_path / RESULTS)[0]
    stored = np.load(record["output"]["arrays"])
    models = ReferenceModels(embeddings=("clap",), **refs)
    assert np.allclose(stored["generated_clap"], models.clap_audio(record["output"]["audio"]), atol=1e-5)


@pytest.mark.slow
def test_captioning_musicqa_and_ablation_run_end_to_end(setup, tmp_path, capsys):
    fixtures, refs = setup
    roberta = save_roberta(tmp_path / "roberta")
    summary = _run(capsys, "captioning", fixtures / "captions.jsonl", fixtures, tmp_path / "cap", refs,
                   "--max-new-tokens", "6", "--batch-size", "2", "--bertscore-model", str(roberta),
                   "--bertscore-layers", "2")
    assert set(summary["metrics"]["sacrebleu"]) >= {"BLEU-1", "BLEU-4"}
    assert 0 <= summary["metrics"]["bert_score"]["F1"] <= 1
    musicqa = _run(capsys, "musicqa", fixtures / "captions.jsonl", fixtures, tmp_path / "qa", refs,
                   "--max-new-tokens", "4", "--bertscore-model", "none", "--limit", "2")
    assert musicqa["evaluated"] == 2 and "not requested" in musicqa["metrics"]["unavailable"]["bert_score"]
    assert "fluency" in (tmp_path / "cap" / "report.md").read_text()
    ablation = _run(capsys, "ablation", fixtures / "muchomusic.json", fixtures, tmp_path / "abl", refs,
                    "--of", "muchomusic", "--no-swap")
    metrics = ablation["metrics"]
    assert ablation["evaluated"] == 4 and {"original", "swapped", "drop"} <= set(metrics)
    assert metrics["drop"]["accuracy"] == pytest.approx(metrics["original"]["accuracy"]
                                                         - metrics["swapped"]["accuracy"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The tiny published-format checkpoint converted from local paths (its decoder a local tiny MusicGen)."""
    from tests.converted import convert_tiny_published

    return convert_tiny_published(tmp_path_factory.mktemp("published"))


@pytest.mark.slow
def test_understanding_and_generation_run_on_a_model_converted_from_the_published_format(setup, converted, tmp_path,
                                                                                        capsys):
    fixtures, refs = setup
    capsys.readouterr()
    out = tmp_path / "mucho"
    assert main(["eval", "muchomusic", "--model", str(converted), "--data", str(fixtures / "muchomusic.json"),
                 "--media-root", str(fixtures), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluated"] == 4 and summary["run"]["model"] == str(converted)
    assert (out / "report.md").is_file()
    for task in ("text2music", "video2music"):
        summary = _run(capsys, task, fixtures / f"{task}.jsonl", fixtures, tmp_path / task, refs, "--model",
                       str(converted), "--limit", "2", "--embedding", "clap")
        assert summary["evaluated"] == 2 and summary["metrics"]["fad"]["clap"] >= -1e-6
