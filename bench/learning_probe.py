"""Does the model learn what its encoders can hear? The gap between a linear probe and the trained model.

Generates synthetic media with known attributes (bench/attributes.py: seven music attributes drawn together in
every clip, the colour of a picture, the direction of a moving square) in the published formats, and prints
per attribute, on held-out samples:

- probe: a logistic regression on the frozen encoder features (per layer mean and std over time), the ceiling
  these encoders allow; and the same probe on the music adapter's output tokens after stage 1;
- the model's accuracy with each sample's own media and with another sample's (chance is 0.5), after
  (a) stage 3 alone from the profile and (b) stage 1 then stage 3, trained through the CLI a user runs
  (`python -m mumu features`, `python -m mumu train`) with the profile's default hyper-parameters;
- stage 2: the projector's MSE to the decoder's text-encoder targets of held-out captions, before and after.

Target (issue 13): wherever the probe reads >= 0.8, the model is within 0.05 of it with the true media and
within 0.15 of chance with another sample's media.

    python -m bench.learning_probe            # the suite, from the repo root
    python -m bench.learning_probe --quick    # the shortened version the tests run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.attributes import ATTRIBUTES, Attribute, write_split
from bench.linear_probe import probe_accuracy, summary
from mumu.checkpoint import from_pretrained
from mumu.cli import main as mumu_cli
from mumu.data.collate import Collator
from mumu.data.dataset import TrainingSet
from mumu.data.features import FeatureStore, fingerprint, media_keys
from mumu.data.records import Record, Turn, read_records
from mumu.modeling import MediaFeatures, MuMuModel

PROBE_FLOOR, OWN_GAP, OTHER_GAP = 0.8, 0.05, 0.15
# Where each attribute's held-out questions are: music attributes in MusicQA, the others in their caption maps.
KIND = {"music": "musicqa", "image": "coco", "video": "muvideo-captions"}
CAPTION_KIND = {"music": "mucaps", "image": "coco", "video": "muvideo-captions"}
STAGE1_DATA, STAGE3_DATA = ("mucaps", "coco", "muvideo-captions"), ("musicqa", "coco", "muvideo-captions")
# Decoder-alignment captions "a {style} {instrument} piece with {instrument}"; held-out ones are unseen combinations.
STYLES = ("slow", "fast", "upbeat", "relaxed", "soft")
INSTRUMENTS = ("piano", "guitar", "drums", "strings", "violin", "cello", "flute", "synth", "saxophone", "bass")


@dataclass
class Scale:
    """How big a run is."""

    train: int
    held_out: int
    stage1_steps: int
    stage3_steps: int
    stage2_steps: int
    captions: int


FULL = Scale(train=200, held_out=60, stage1_steps=300, stage3_steps=600, stage2_steps=400, captions=360)
QUICK = Scale(train=40, held_out=20, stage1_steps=80, stage3_steps=80, stage2_steps=300, captions=160)


# Data --------------------------------------------------------------------------------------------------------
def decoder_captions(rng: np.random.Generator, scale: Scale) -> dict[str, dict[str, str]]:
    """split -> MUCaps map of decoder-alignment captions (the audio files are never read, only named)."""
    texts = [f"a {s} {a} piece with {b}" for s in STYLES for a in INSTRUMENTS for b in INSTRUMENTS if a != b]
    texts = [texts[i] for i in rng.permutation(len(texts))]
    split = {"eval": texts[: scale.held_out], "train": texts[scale.held_out : scale.held_out + scale.captions]}
    return {name: {f"audios/caption-{name}-{i}.wav": t for i, t in enumerate(ts)} for name, ts in split.items()}


def make_dataset(root: Path, scale: Scale, seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write media and data files for 'train' and 'eval'; returns split -> data kind -> file."""
    rng = np.random.default_rng(seed)
    files = {split: write_split(root, split, count, rng)
             for split, count in (("train", scale.train), ("eval", scale.held_out))}
    for split, data in decoder_captions(rng, scale).items():
        files[split]["mucaps-decoder"] = root / f"{split}-mucaps-decoder.json"
        files[split]["mucaps-decoder"].write_text(json.dumps(data, indent=1))
    return files


def held_out(attribute: Attribute, files: dict[str, Path], root: Path) -> list[Record]:
    """The held-out records that ask about the attribute."""
    records = read_records(KIND[attribute.modality], files[KIND[attribute.modality]], root)[0]
    return [r for r in records if attribute.modality != "music" or r.turns[-1].user == attribute.question]


# Linear probes ---------------------------------------------------------------------------------------------------
def _labelled(attribute: Attribute, files: dict[str, Path], root: Path) -> tuple[list[str], torch.Tensor]:
    """Media paths (relative) and 0/1 labels of the attribute, from the split's caption map."""
    records = read_records(CAPTION_KIND[attribute.modality], files[CAPTION_KIND[attribute.modality]], root)[0]
    labels = [attribute.values.index(attribute.value_in(r.turns[-1].assistant)) for r in records]
    return [r.media[attribute.modality] for r in records], torch.tensor(labels)


def probe(attribute: Attribute, files: dict[str, dict[str, Path]], root: Path, represent) -> float:
    """Held-out probe accuracy on represent(list of media paths) -> (N, features)."""
    (train_x, train_y), (test_x, test_y) = [
        (represent(paths), y) for paths, y in (_labelled(attribute, files[s], root) for s in ("train", "eval"))]
    return probe_accuracy(train_x, train_y, test_x, test_y)


def frozen_features(store: FeatureStore, root: Path, modality: str):
    """paths -> per-layer mean and std of the frozen encoder features."""
    def represent(paths: list[str]) -> torch.Tensor:
        keys = media_keys([Record("probe", p, (), {modality: p}) for p in paths], root)
        return torch.stack([summary(store.get(keys[root / p])["features"]) for p in paths])
    return represent


def adapter_tokens(model: MuMuModel, store: FeatureStore, root: Path, modality: str):
    """paths -> the modality adapter's output tokens (what the injection receives), flattened."""
    @torch.no_grad()
    def represent(paths: list[str]) -> torch.Tensor:
        keys = media_keys([Record("probe", p, (), {modality: p}) for p in paths], root)
        items = [store.get(keys[root / p])["features"] for p in paths]
        inputs = model.modality_inputs(MediaFeatures(**{modality: items}), len(items))
        return inputs[modality].tokens.flatten(1)
    return represent


# The model's answers ---------------------------------------------------------------------------------------------
def _items(model: MuMuModel, store: FeatureStore, records: list[Record], root: Path) -> list[dict]:
    data = TrainingSet(records, store, model.tokenizer, model.ids, root)
    return [data[i] for i in range(len(data))]


@torch.no_grad()
def _token_logprobs(model: MuMuModel, items: list[dict]) -> torch.Tensor:
    """(B, T) log-probability the model gives each label token (position t predicts token t)."""
    batch = Collator(model.ids.pad)(items)
    media = MediaFeatures(music=batch["music"], image=batch["image"], video=batch["video"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], media=media)
    logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
    picked = logp.gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return torch.nn.functional.pad(picked, (1, 0))


def attribute_accuracy(
    model: MuMuModel, store: FeatureStore, records: list[Record], root: Path, attribute: Attribute,
) -> tuple[float, float]:
    """(accuracy with each sample's own media, expected accuracy with another sample's media).

    The answer is the candidate whose first distinguishing token the model finds more likely: the choice greedy
    decoding makes at the point where the answers part ("It is low." vs "It is high."). The records must differ
    only in their media and answer value (as the suite's do): then sample i's text with sample j's media gets
    exactly sample j's answer, and the accuracy with another sample's media is its exact expectation over every
    other sample (chance when the answer follows the media) rather than one random pairing's share of same-class
    partners.
    """
    values = attribute.values

    def answer_of(record: Record, value: str) -> Record:
        last = record.turns[-1]
        turn = Turn(last.user, attribute.with_value(last.assistant, value))
        return Record(record.kind, record.origin, (*record.turns[:-1], turn), record.media)

    truth = np.array([values.index(attribute.value_in(r.turns[-1].assistant)) for r in records])
    candidates = [_items(model, store, [answer_of(r, v) for r in records], root) for v in values]
    for items in candidates:
        if any(item["input_ids"] != items[0]["input_ids"] for item in items):
            raise ValueError(f"{attribute.name}: the held-out records differ in more than media and answer value")
    first, second = candidates[0][0]["input_ids"], candidates[1][0]["input_ids"]
    where = next(t for t, (x, y) in enumerate(zip(first, second, strict=False)) if x != y)
    scores = torch.stack([_token_logprobs(model, items)[:, where] for items in candidates])
    choice = scores.argmax(0).numpy()
    own = float(np.mean(choice == truth))
    hits = choice[None, :] == truth[:, None]  # [i, j]: sample j's media gives sample i's right answer
    other = float((hits.sum() - np.trace(hits)) / (len(truth) * (len(truth) - 1)))
    return own, other


@torch.no_grad()
def projector_mse(model: MuMuModel, store: FeatureStore, records: list[Record], root: Path) -> float:
    """Mean masked MSE of the projector to 10 x the decoder's text-encoder targets (the training objective)."""
    batch = Collator(model.ids.pad)(_items(model, store, records, root))
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                decoder_targets=batch["decoder_targets"], decoder_target_masks=batch["decoder_target_masks"],
                target_rows=batch["target_rows"])
    return float(out.mse_loss)


# The suite -------------------------------------------------------------------------------------------------------
def _cli(*args: str) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = mumu_cli([str(a) for a in args])
    if code != 0:
        raise RuntimeError(f"`python -m mumu {' '.join(map(str, args))}` failed with exit code {code}")
    return json.loads(stdout.getvalue().strip().splitlines()[-1])


def _train(workdir: Path, files: dict[str, Path], root: Path, out: str, source: list, stage: int, kinds,
           steps: int, seed: int, *extra) -> Path:
    """`python -m mumu train` with the profile's defaults (only the length, data and bookkeeping given)."""
    data = ",".join(f"{k}={files[k]}" for k in kinds)
    _cli("train", *source, "--stage", stage, "--data", data, "--media-root", root, "--features",
         workdir / "features", "--eval-fraction", 0, "--seed", seed, "--log-every", 50, "--max-steps", steps,
         "--out", workdir / out, *extra)
    return workdir / out


def train_all(workdir: Path, files: dict[str, dict[str, Path]], root: Path, scale: Scale, seed: int) -> None:
    """Features once, then stage 3 from the profile, stage 1 -> 3, and stage 1 -> 2, all through the CLI."""
    everything = ",".join(f"{k}={p}" for split in files.values() for k, p in split.items())
    _cli("features", "--profile", "tiny", "--data", everything, "--media-root", root, "--out", workdir / "features")
    train = files["train"]
    _train(workdir, train, root, "stage3", ["--profile", "tiny"], 3, STAGE3_DATA, scale.stage3_steps, seed)
    stage1 = _train(workdir, train, root, "stage1", ["--profile", "tiny"], 1, STAGE1_DATA, scale.stage1_steps, seed)
    _train(workdir, train, root, "stage1-3", ["--checkpoint", stage1], 3, STAGE3_DATA, scale.stage3_steps, seed)
    _train(workdir, train, root, "stage2", ["--checkpoint", stage1], 2, ("mucaps-decoder",), scale.stage2_steps,
           seed, "--batch-size", 16)


def measure(workdir: Path, files: dict[str, dict[str, Path]], root: Path) -> dict:
    """Probe and model accuracies per attribute, and the stage-2 MSE drop."""
    stage1 = from_pretrained(workdir / "stage1").eval()
    models = {name: from_pretrained(workdir / name).eval() for name in ("stage3", "stage1-3")}
    store = FeatureStore.open(workdir / "features", fingerprint(stage1.config))
    rows = {}
    for attribute in ATTRIBUTES:
        m = attribute.modality
        row = {"modality": m, "probe": probe(attribute, files, root, frozen_features(store, root, m)),
               "probe_adapter": probe(attribute, files, root, adapter_tokens(stage1, store, root, m))}
        records = held_out(attribute, files["eval"], root)
        for name, model in models.items():
            row[name] = attribute_accuracy(model, store, records, root, attribute)
        rows[attribute.name] = row
    captions = read_records("mucaps-decoder", files["eval"]["mucaps-decoder"], root)[0]
    before = projector_mse(stage1, store, captions, root)
    after = projector_mse(from_pretrained(workdir / "stage2"), store, captions, root)
    gates = {name: float(model.injection.gates.detach().abs().mean()) for name, model in models.items()}
    return {"attributes": rows, "stage2_mse": (before, after), "mean_abs_gate": gates}


def run(workdir: Path, scale: Scale, seed: int = 0) -> dict:
    """Make the data, train through the CLI, measure; with wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    root = workdir / "data"
    files = make_dataset(root, scale, seed)
    train_all(workdir, files, root, scale, seed)
    results = measure(workdir, files, root)
    results["seconds"] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}
    return results


def misses(results: dict) -> list[str]:
    """The targets missed: for attributes the probe reads at >= 0.8, both trained models close to it."""
    missed = []
    for name, row in results["attributes"].items():
        if row["probe"] < PROBE_FLOOR:
            continue
        for run_name in ("stage3", "stage1-3"):
            own, other = row[run_name]
            if own < row["probe"] - OWN_GAP or abs(other - 0.5) > OTHER_GAP:
                missed.append(f"{name} ({run_name})")
    return missed


def table(results: dict) -> str:
    """The per-attribute table (markdown), as the README shows it."""
    lines = ["| attribute | probe (encoder) | probe (adapter, stage 1) | stage 3: own / other media | "
             "stage 1 -> 3: own / other media |", "|---|---|---|---|---|"]
    for name, row in results["attributes"].items():
        runs = " | ".join(f"{row[r][0]:.2f} / {row[r][1]:.2f}" for r in ("stage3", "stage1-3"))
        lines.append(f"| {name} ({row['modality']}) | {row['probe']:.2f} | {row['probe_adapter']:.2f} | {runs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the shortened version the tests run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep data, features and checkpoints here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.workdir or Path(tmp), QUICK if args.quick else FULL, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    before, after = results["stage2_mse"]
    print(f"stage 2 projector MSE on held-out captions {before:.4g} -> {after:.4g} ({before / after:.1f}x lower)")
    print(f"mean |gate| after stage 3: {results['mean_abs_gate']}")
    print(f"wall {results['seconds']['wall']} s, CPU {results['seconds']['cpu']} s")
    missed = misses(results)
    print("targets missed: " + ", ".join(missed) if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
