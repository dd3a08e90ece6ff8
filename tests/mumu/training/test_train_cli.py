"""`mumu features` and `mumu train` end to end on the tiny profile: stores, stages, logs, resume, reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mumu.data.features import FeatureStore, fingerprint, media_key
from mumu.profiles import tiny
from mumu.training.defaults import TRAIN_DEFAULTS
from tests.mumu.training.conftest import run_cli, spec


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def _log(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]


def test_features_store_is_reused_and_checked(dataset, features):
    root, paths = dataset
    code, result, _ = run_cli("features", "--profile", "tiny", "--data", spec(paths, "mucaps", "coco"),
                              "--media-root", root, "--out", features)
    assert code == 0 and set(result["computed"].values()) == {0}  # everything was already there
    store = FeatureStore.open(features, fingerprint(tiny()))
    assert len(store) == 13 and len(list(features.glob("features-*.safetensors"))) >= 1
    other = tiny(seed=1)  # different random encoders: the stored features would be wrong for it
    with pytest.raises(ValueError, match="other encoders"):
        FeatureStore.open(features, fingerprint(other))


def test_stage1_trains_adapters_logs_ce_and_reloads_for_chat(dataset, features, tmp_path):
    root, paths = dataset
    out = tmp_path / "stage1"
    code, result, err = run_cli(
        "train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "mucaps", "coco", "muvideo-captions"),
        "--media-root", root, "--features", features, "--max-steps", 3, "--batch-size", 4, "--eval-fraction", 0.2,
        "--out", out)
    assert code == 0, err
    assert result["steps"] == 3 and result["records"] == {"train": 8, "eval": 2}
    assert result["features_computed"] == {"music": 0, "image": 0, "video": 0, "target": 0}
    log = _log(out)
    assert [row["step"] for row in log if row["split"] == "train"] == [1, 2, 3]
    assert all("ce" in row and "mse" not in row for row in log)
    assert any(row["split"] == "eval" for row in log)
    before = {k: v for k, v in _initial().items()}
    after = _weights(out)
    assert not torch.equal(after["music_adapter.project.proj.weight"], before["music_adapter.project.proj.weight"])
    assert not torch.equal(after["injection.gates"], before["injection.gates"])
    assert torch.equal(after["projector.inp.weight"], before["projector.inp.weight"])  # stage 1 leaves it alone
    recorded = json.loads((out / "config.json").read_text())["training"]  # the run's settings, defaults filled in
    assert recorded["batch_size"] == 4 and recorded["lr"] == TRAIN_DEFAULTS["tiny"].lr and recorded["stage"] == 1
    code, reply, err = run_cli("chat", "--checkpoint", out, "--text", "Describe this", "--audio",
                               root / "audios/0.wav", "--music", "never", "--max-new-tokens", 4, "--json",
                               "--out-dir", tmp_path / "chat")
    assert code == 0, err
    assert isinstance(reply["text"], str) and reply["audio"] is None


def _initial() -> dict[str, torch.Tensor]:
    from mumu.builder import build_model

    return {k: v.clone() for k, v in build_model(tiny()).trained_state_dict().items()}


def test_feature_statistics_are_fitted_once_from_the_training_media(dataset, features, tmp_path):
    root, paths = dataset
    stage1 = tmp_path / "stage1"
    code, _, err = run_cli("train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "mucaps", "coco"),
                           "--media-root", root, "--features", features, "--max-steps", 1, "--eval-fraction", 0,
                           "--out", stage1)
    assert code == 0, err
    assert "fitted feature statistics (adapter.standardize) on the training data: music from 4 files (" in err
    saved = _weights(stage1)
    # Reference: every step of the four clips and every token of the four pictures, straight from the store
    store = FeatureStore.open(features, fingerprint(tiny()))
    clips = [store.get(media_key("music", root / f"audios/{i}.wav"))["features"] for i in range(4)]
    frames = torch.cat(clips, dim=1).double()
    assert int(saved["standardizers.music.count"]) == frames.shape[1]
    assert torch.allclose(saved["standardizers.music.mean"], frames.mean(1, keepdim=True).float(), atol=1e-5)
    assert torch.allclose(saved["standardizers.music.std"], frames.std(1, keepdim=True, unbiased=False).float(),
                          atol=1e-5)
    tokens = torch.cat([store.get(media_key("image", root / f"images/{i}.png"))["features"] for i in range(4)])
    assert torch.allclose(saved["standardizers.image.mean"], tokens.double().mean(0).float(), atol=1e-5)
    assert int(saved["standardizers.video.count"]) == 0  # no video in this run: left as the identity
    # A later stage keeps the statistics its adapters were trained with, on whatever data it sees
    stage3 = tmp_path / "stage3"
    code, _, err = run_cli("train", "--checkpoint", stage1, "--stage", 3, "--data", spec(paths, "musicqa"),
                           "--media-root", root, "--features", features, "--max-steps", 1, "--eval-fraction", 0,
                           "--out", stage3)
    assert code == 0, err
    assert "fitted feature statistics" not in err
    assert all(torch.equal(_weights(stage3)[f"standardizers.music.{k}"], saved[f"standardizers.music.{k}"])
               for k in ("mean", "std", "count"))


def test_stage2_trains_projector_on_decoder_targets(dataset, features, tmp_path):
    root, paths = dataset
    out = tmp_path / "stage2"
    code, result, err = run_cli(
        "train", "--profile", "tiny", "--stage", 2, "--data", spec(paths, "mucaps-decoder"), "--media-root", root,
        "--features", features, "--max-steps", 2, "--batch-size", 2, "--eval-fraction", 0, "--out", out)
    assert code == 0, err
    assert result["records"] == {"train": 4, "eval": 0}
    assert all({"ce", "mse", "mask"} <= set(row) for row in _log(out))
    before, after = _initial(), _weights(out)
    assert not torch.equal(after["projector.inp.weight"], before["projector.inp.weight"])
    assert torch.equal(after["music_adapter.project.proj.weight"], before["music_adapter.project.proj.weight"])
    # A fresh profile's adapters are random and stage 2 freezes them: said at start, with the two ways out.
    assert "warning: stage 2 keeps the understanding adapters frozen" in err
    assert "--checkpoint DIR" in err and "--train-adapters" in err


def test_train_adapters_trains_them_in_a_later_stage(dataset, features, tmp_path):
    root, paths = dataset
    out = tmp_path / "stage3-adapters"
    code, _, err = run_cli(
        "train", "--profile", "tiny", "--stage", 3, "--train-adapters", "--data", spec(paths, "muimage", "mucaps"),
        "--media-root", root, "--features", features, "--max-steps", 2, "--batch-size", 4, "--eval-fraction", 0,
        "--out", out)
    assert code == 0, err
    assert "warning" not in err
    before, after = _initial(), _weights(out)
    for adapter in ("music_adapter", "image_adapter"):
        name = f"{adapter}.project.proj.weight"
        assert not torch.equal(after[name], before[name]), adapter
    # Starting from a checkpoint (e.g. stage 1's), its adapters are taken as trained: nothing to warn about.
    code, _, err = run_cli(
        "train", "--checkpoint", out, "--stage", 2, "--data", spec(paths, "mucaps-decoder"), "--media-root", root,
        "--features", features, "--max-steps", 1, "--batch-size", 2, "--eval-fraction", 0, "--out", tmp_path / "s2")
    assert code == 0, err
    assert "warning" not in err


def test_resume_continues_bit_exactly(dataset, features, tmp_path):
    root, paths = dataset
    common = ["--profile", "tiny", "--stage", 3, "--data", spec(paths, "muimage", "mucaps"), "--media-root", root,
              "--features", features, "--max-steps", 4, "--batch-size", 3, "--grad-accum", 2, "--eval-fraction", 0,
              "--warmup-steps", 1, "--lr", 1e-2]
    code, _, err = run_cli("train", *common, "--save-every", 1, "--out", tmp_path / "straight")
    assert code == 0, err
    straight = _weights(tmp_path / "straight")
    # 8 records in batches of 3, 2 per update: step 1 stops mid-epoch, step 2 at its end, step 3 mid-epoch again
    for step in (1, 2, 3):
        assert (tmp_path / f"straight/checkpoint-{step}/training_state.pt").is_file()
        code, result, err = run_cli("train", *common, "--resume", tmp_path / f"straight/checkpoint-{step}",
                                    "--out", tmp_path / f"resumed-{step}")
        assert code == 0, err
        assert result["steps"] == 4
        resumed = _weights(tmp_path / f"resumed-{step}")
        assert straight.keys() == resumed.keys()
        assert all(torch.equal(straight[k], resumed[k]) for k in straight), step
        assert [r["step"] for r in _log(tmp_path / f"resumed-{step}")] == list(range(step + 1, 5))
    interrupted = tmp_path / "interrupted"  # a run killed after step 3: only its periodic checkpoints exist
    for step in (1, 2, 3):
        shutil.copytree(tmp_path / f"straight/checkpoint-{step}", interrupted / f"checkpoint-{step}")
    code, result, err = run_cli("train", *common, "--resume", "latest", "--out", interrupted)
    assert code == 0, err
    assert [r["step"] for r in _log(interrupted)] == [4]
    assert all(torch.equal(straight[k], v) for k, v in _weights(interrupted).items())
    code, _, err = run_cli("train", *common[:-2], "--lr", 1e-2, "--batch-size", 2, "--resume",
                           tmp_path / "straight/checkpoint-1", "--out", tmp_path / "bad")
    assert code == 2 and "batch_size" in err


def test_bad_data_is_a_clear_error(dataset, tmp_path):
    root, _ = dataset
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run_cli("train", "--profile", "tiny", "--stage", 1, "--data", f"mucaps={broken}",
                           "--media-root", root, "--max-steps", 1, "--out", tmp_path / "out")
    assert code == 2 and "broken.json" in err and "JSON" in err
    code, _, err = run_cli("train", "--profile", "tiny", "--stage", 1, "--data", f"nonsense={broken}",
                           "--media-root", root, "--max-steps", 1, "--out", tmp_path / "out")
    assert code == 2 and "nonsense" in err


def test_a_complete_store_means_no_frozen_model_runs(dataset, features, tmp_path, monkeypatch):
    def frozen_model_called(*args, **kwargs):
        raise AssertionError("a frozen model ran although the feature store had everything")

    monkeypatch.setattr("mumu.training.run.build_decoder", frozen_model_called)
    monkeypatch.setattr("mumu.data.features.encode_file", frozen_model_called)
    root, paths = dataset
    code, result, err = run_cli(
        "train", "--profile", "tiny", "--stage", 3, "--data", spec(paths, "muimage", "mucaps"), "--media-root", root,
        "--features", features, "--max-steps", 1, "--batch-size", 4, "--eval-fraction", 0, "--out", tmp_path / "o")
    assert code == 0, err
    assert set(result["features_computed"].values()) == {0}


def test_half_precision_frozen_parts_need_autocast(dataset, tmp_path):
    root, paths = dataset
    code, _, err = run_cli("train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "coco"),
                           "--media-root", root, "--max-steps", 1, "--base-dtype", "bfloat16", "--out", tmp_path)
    assert code == 2 and "--mixed-precision" in err


def test_bf16_frozen_parts_with_autocast_train_and_save_float32(dataset, features, tmp_path):
    root, paths = dataset
    code, result, err = run_cli(
        "train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "coco", "mucaps"), "--media-root", root,
        "--features", features, "--max-steps", 2, "--batch-size", 4, "--eval-fraction", 0, "--base-dtype", "bfloat16",
        "--mixed-precision", "bf16", "--out", tmp_path / "bf16")
    assert code == 0, err
    assert result["steps"] == 2 and torch.isfinite(torch.tensor(result["train"]["ce"]))
    weights = _weights(tmp_path / "bf16")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}
    assert {k for k, t in weights.items() if not t.is_floating_point()} == {  # how many vectors the statistics saw
        f"standardizers.{m}.count" for m in ("music", "image", "video")}


def test_epochs_count_whole_passes_over_the_data(dataset, features, tmp_path):
    root, paths = dataset
    code, result, err = run_cli(
        "train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "coco", "mucaps"), "--media-root", root,
        "--features", features, "--epochs", 2, "--batch-size", 3, "--grad-accum", 2, "--eval-fraction", 0,
        "--out", tmp_path / "epochs")
    assert code == 0, err
    # 8 records in batches of 3 -> 3 micro-batches per epoch -> 2 updates (the last one from a single batch)
    assert result["steps"] == 4
    epochs = [row["epoch"] for row in _log(tmp_path / "epochs")]
    assert epochs == [0, 0, 1, 1]


def test_tensorboard_gets_the_same_scalars_when_installed(dataset, features, tmp_path, monkeypatch):
    import sys
    import types

    written: list[tuple[str, float, int]] = []

    class Writer:  # stands in for tensorboard's SummaryWriter (the package is optional)
        def __init__(self, logdir: str) -> None:
            assert logdir.endswith("tensorboard")

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            written.append((tag, value, step))

        def close(self) -> None:
            written.append(("closed", 0.0, 0))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    root, paths = dataset
    code, _, err = run_cli("train", "--profile", "tiny", "--stage", 1, "--data", spec(paths, "coco"),
                           "--media-root", root, "--features", features, "--max-steps", 2, "--batch-size", 2,
                           "--eval-fraction", 0.25, "--out", tmp_path / "tb")
    assert code == 0, err
    log = _log(tmp_path / "tb")
    assert ("train/ce", log[0]["ce"], 1) in written and ("train/ce", log[1]["ce"], 2) in written
    assert any(tag == "eval/ce" for tag, _, _ in written) and written[-1][0] == "closed"
