"""Proof that the model learns from its inputs (the published system's gates never trained, so it could not).

Generates a synthetic dataset in the published formats (MUCaps / COCO / MUVideo caption maps, MusicQA,
MUCaps for decoder alignment), trains the tiny model through the same CLI a user runs
(`python -m mumu features`, then `python -m mumu train` for stages 1, 3 and 2), and prints on held-out samples:

- music / image / video: how often the model prefers the right answer about an attribute that is only in the
  media (tempo class of a click track, colour of a picture, direction of a moving square), with the true media
  and with another sample's media (chance is 0.5);
- stage 2: the projector's MSE to the decoder's text-encoder targets of held-out captions, before and after.

    python -m bench.learning_probe            # the full probe (< 5 min on 2 CPU cores), from the repo root
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

import av
import numpy as np
import soundfile as sf
import torch
from PIL import Image

from mumu.checkpoint import from_pretrained
from mumu.cli import main as mumu_cli
from mumu.data.collate import Collator
from mumu.data.dataset import TrainingSet
from mumu.data.features import FeatureStore, fingerprint
from mumu.data.records import Record, Turn, read_records
from mumu.modeling import MediaFeatures, MuMuModel

SR = 16_000
VALUES = {"music": ("slow", "fast"), "image": ("red", "blue"), "video": ("left", "right")}
CAPTIONS = {"music": "clicks at a {} tempo", "image": "a {} picture", "video": "a square moving {}"}
QUESTION, ANSWER = "Is the tempo slow or fast?", "It is {}."
OTHER_PAIRINGS = 8
# Decoder-alignment captions "a {style} {instrument} piece with {instrument}": 450 of them; held-out ones are
# combinations never seen in training.
STYLES = ("slow", "fast", "upbeat", "relaxed", "soft")
INSTRUMENTS = ("piano", "guitar", "drums", "strings", "violin", "cello", "flute", "synth", "saxophone", "bass")


@dataclass
class Scale:
    """How big a probe run is."""

    per_class: int
    held_out: int
    stage1_steps: int
    stage3_steps: int
    stage2_steps: int
    captions: int


FULL = Scale(per_class=48, held_out=20, stage1_steps=300, stage3_steps=60, stage2_steps=600, captions=360)
QUICK = Scale(per_class=16, held_out=12, stage1_steps=200, stage3_steps=40, stage2_steps=300, captions=200)


# Synthetic media ---------------------------------------------------------------------------------------------
def pulses(rng: np.random.Generator, tempo: str, seconds: float = 1.5) -> np.ndarray:
    """Decaying clicks of a random pitch, slow (1.5-2.5 per second) or fast (7-9 per second), over a noise floor."""
    n = int(SR * seconds)
    wav = 0.003 * rng.standard_normal(n)
    rate = rng.uniform(1.5, 2.5) if tempo == "slow" else rng.uniform(7, 9)
    t = np.arange(int(0.06 * SR)) / SR
    click = np.sin(2 * np.pi * rng.uniform(200, 2000) * t) * np.exp(-60 * t)
    start = rng.uniform(0, 1 / rate)
    while start < seconds - 0.06:
        i = int(start * SR)
        wav[i : i + len(click)] += click * rng.uniform(0.5, 1)
        start += 1 / rate
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


def picture(rng: np.random.Generator, colour: str) -> Image.Image:
    """A noisy picture dominated by red or blue, with a random grey rectangle."""
    base = np.array([200, 40, 40] if colour == "red" else [40, 60, 200], dtype=np.float32)
    img = base + rng.normal(0, 30, (48, 48, 3))
    x, y = rng.integers(0, 32, 2)
    img[y : y + 12, x : x + 12] = rng.uniform(60, 200)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def clip(path: Path, rng: np.random.Generator, direction: str, frames: int = 8) -> None:
    """A bright square crossing a dark, noisy background to the left or to the right (H.264)."""
    y, size = int(rng.integers(4, 20)), 10
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(frames):
            img = np.clip(rng.normal(30, 10, (32, 48, 3)), 0, 255).astype(np.uint8)
            x = int(4 + i * 30 / (frames - 1))
            x = x if direction == "right" else 48 - size - x
            img[y : y + size, x : x + size] = 240
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def captions(rng: np.random.Generator) -> list[str]:
    """Every decoder-alignment caption, shuffled."""
    out = [f"a {s} {a} piece with {b}" for s in STYLES for a in INSTRUMENTS for b in INSTRUMENTS if a != b]
    return [out[i] for i in rng.permutation(len(out))]


def make_dataset(root: Path, scale: Scale, seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write media and data files for 'train' and 'eval'; returns split -> data kind -> file."""
    rng = np.random.default_rng(seed)
    for folder in ("audios", "images", "videos"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    texts = captions(rng)
    decoder_captions = {"eval": texts[: scale.held_out],
                        "train": texts[scale.held_out : scale.held_out + scale.captions]}
    for split, per_class in (("train", scale.per_class), ("eval", scale.held_out // 2)):
        maps: dict[str, dict[str, str]] = {"music": {}, "image": {}, "video": {}}
        qa = []
        for i in range(per_class * 2):
            for modality, values in VALUES.items():
                value = values[i % 2]
                if modality == "music":
                    name = f"audios/{split}-{i}.wav"
                    sf.write(root / name, pulses(rng, value), SR, subtype="PCM_16")
                    qa.append({"audio_name": name, "conversation": [
                        {"from": "human", "value": QUESTION}, {"from": "gpt", "value": ANSWER.format(value)}]})
                elif modality == "image":
                    name = f"images/{split}-{i}.png"
                    picture(rng, value).save(root / name)
                else:
                    name = f"videos/{split}-{i}.mp4"
                    clip(root / name, rng, value)
                maps[modality][name] = CAPTIONS[modality].format(value)
        decoder = {f"audios/caption-{split}-{i}.wav": text for i, text in enumerate(decoder_captions[split])}
        written = {"mucaps": maps["music"], "coco": maps["image"], "muvideo-captions": maps["video"],
                   "musicqa": qa, "mucaps-decoder": decoder}
        files[split] = {}
        for kind, data in written.items():
            path = root / f"{split}-{kind}.json"
            path.write_text(json.dumps(data, indent=1))
            files[split][kind] = path
    return files


# Measurements ------------------------------------------------------------------------------------------------
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
    model: MuMuModel, store: FeatureStore, records: list[Record], root: Path, modality: str, seed: int = 0,
) -> tuple[float, float]:
    """(accuracy with each sample's own media, accuracy with another sample's media).

    The answer is the candidate whose first distinguishing token the model finds more likely: the choice greedy
    decoding makes at the point where the answers part ("a red ..." vs "a blue ...").
    """
    values = VALUES[modality]

    def answer_of(record: Record, value: str) -> Record:
        text = record.turns[-1].assistant
        for v in values:
            text = text.replace(v, value)
        return Record(record.kind, record.origin, (*record.turns[:-1], Turn(record.turns[-1].user, text)),
                      record.media)

    truth = [next(v for v in values if v in r.turns[-1].assistant) for r in records]
    candidates = [_items(model, store, [answer_of(r, v) for r in records], root) for v in values]
    where = []
    for a, b in zip(*candidates, strict=True):
        where.append(next(t for t, (x, y) in enumerate(zip(a["input_ids"], b["input_ids"], strict=False)) if x != y))

    def accuracy(order: np.ndarray) -> float:
        per_candidate = []
        for items in candidates:
            swapped = [dict(item, media=items[j]["media"]) for item, j in zip(items, order, strict=True)]
            per_candidate.append(_token_logprobs(model, swapped)[torch.arange(len(order)), torch.tensor(where)])
        choice = torch.stack(per_candidate).argmax(0).tolist()
        return float(np.mean([values[c] == t for c, t in zip(choice, truth, strict=True)]))

    # "Another sample's media": averaged over several random pairings, so the number is the expectation (chance
    # when the answer follows the media) rather than one pairing's share of same-class partners.
    rng = np.random.default_rng(seed)
    others = []
    for _ in range(OTHER_PAIRINGS):
        partner = rng.permutation(len(records))
        partner = np.where(partner == np.arange(len(records)), (partner + 1) % len(records), partner)
        others.append(accuracy(partner))
    return accuracy(np.arange(len(records))), float(np.mean(others))


@torch.no_grad()
def projector_mse(model: MuMuModel, store: FeatureStore, records: list[Record], root: Path) -> float:
    """Mean masked MSE of the projector to 10 x the decoder's text-encoder targets (the training objective)."""
    batch = Collator(model.ids.pad)(_items(model, store, records, root))
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                decoder_targets=batch["decoder_targets"], decoder_target_masks=batch["decoder_target_masks"],
                target_rows=batch["target_rows"])
    return float(out.mse_loss)


# The probe ---------------------------------------------------------------------------------------------------
def _cli(*args: str) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = mumu_cli([str(a) for a in args])
    if code != 0:
        raise RuntimeError(f"`python -m mumu {' '.join(map(str, args))}` failed with exit code {code}")
    return json.loads(stdout.getvalue().strip().splitlines()[-1])


def run(workdir: Path, scale: Scale, seed: int = 0) -> dict[str, float]:
    """Make the data, train stages 1 -> 3 and 1 -> 2 through the CLI, and measure on held-out samples."""
    tick = time.perf_counter()
    files = make_dataset(workdir / "data", scale, seed)
    root, train, held = workdir / "data", files["train"], files["eval"]
    spec = lambda split, *kinds: ",".join(f"{k}={split[k]}" for k in kinds)  # noqa: E731
    everything = ",".join(spec(s, *s) for s in (train, held))
    _cli("features", "--profile", "tiny", "--data", everything, "--media-root", root, "--out", workdir / "features")
    common = ["--media-root", root, "--features", workdir / "features", "--eval-fraction", "0", "--seed", seed,
              "--log-every", "10", "--warmup-steps", 10, "--min-lr-ratio", 0.1]
    _cli("train", "--profile", "tiny", "--stage", 1, "--data", spec(train, "mucaps", "coco", "muvideo-captions"),
         "--max-steps", scale.stage1_steps, "--batch-size", 12, "--lr", 5e-3, "--out", workdir / "stage1", *common)
    _cli("train", "--checkpoint", workdir / "stage1", "--stage", 3, "--data", spec(train, "musicqa"),
         "--max-steps", scale.stage3_steps, "--batch-size", 8, "--lr", 2e-3, "--out", workdir / "stage3", *common)
    _cli("train", "--checkpoint", workdir / "stage1", "--stage", 2, "--data", spec(train, "mucaps-decoder"),
         "--max-steps", scale.stage2_steps, "--batch-size", 32, "--lr", 5e-3, "--out", workdir / "stage2", *common)

    results: dict[str, float] = {}
    stage1, stage3 = from_pretrained(workdir / "stage1"), from_pretrained(workdir / "stage3")
    store = FeatureStore.open(workdir / "features", fingerprint(stage1.config))
    read = lambda kind: read_records(kind, held[kind], root)[0]  # noqa: E731
    for modality, kind, model in (("music", "musicqa", stage3), ("image", "coco", stage1),
                                  ("video", "muvideo-captions", stage1)):
        own, other = attribute_accuracy(model, store, read(kind), root, modality, seed)
        results[f"{modality}_accuracy"], results[f"{modality}_accuracy_other_media"] = own, other
    captions = read("mucaps-decoder")
    results["stage2_mse_before"] = projector_mse(stage1, store, captions, root)
    results["stage2_mse_after"] = projector_mse(from_pretrained(workdir / "stage2"), store, captions, root)
    results["stage2_mse_drop"] = results["stage2_mse_before"] / results["stage2_mse_after"]
    results["seconds"] = round(time.perf_counter() - tick, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the shortened version the tests run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep data, features and checkpoints here")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.workdir or Path(tmp), QUICK if args.quick else FULL, args.seed)
    failed = []
    for modality in VALUES:
        own, other = results[f"{modality}_accuracy"], results[f"{modality}_accuracy_other_media"]
        ok = own >= 0.9 and other <= 0.65
        failed += [] if ok else [modality]
        print(f"{modality:6s} accuracy with its own media {own:.2f} (target >= 0.90), with another sample's "
              f"{other:.2f} (target <= 0.65){'' if ok else '  MISSED'}")
    drop = results["stage2_mse_drop"]
    failed += [] if drop >= 10 else ["stage2"]
    print(f"stage 2 projector MSE on held-out captions {results['stage2_mse_before']:.4g} -> "
          f"{results['stage2_mse_after']:.4g} ({drop:.1f}x lower, target >= 10x)")
    print(f"total {results['seconds']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
