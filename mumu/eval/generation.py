"""`text2music`, `image2music`, `video2music`, `edit`: generate from each item, then judge the music.

Rows (JSON list, JSON lines or CSV; paths relative to --media-root):
- `id`; `prompt` (or `caption` / `text`; each task has a default instruction); `reference`: the item's real
  music (optional; FAD and KL use the items that have one);
- image2music: `image`; video2music: `video`; edit: `source` (or `audio`), the music to edit.
Per item: the model's reply and track, the CLAP text-audio score of the prompt (or `caption` when given) and
the track, and for video the BCS / BHS beat alignment of the track to the clip's cuts. Over the set: FAD per
selected embedding (CLAP, MERT) between reference and generated tracks, and KL between their AudioSet tagger
distributions. Embeddings and logits are kept in OUT/embeddings/<id>.npz, so a resumed run reuses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from generation.config import SamplingSettings
from media.audio_io import load_audio
from media.errors import MediaError
from mumu.conversation import MediaItem
from mumu.eval.audio_metrics import cosine, fad, kl_divergences
from mumu.eval.beats import beat_alignment
from mumu.eval.data import read_rows, swap_field
from mumu.eval.references import ReferenceModels
from mumu.eval.runner import Item, Plot, SkipItem
from mumu.feature_cache import file_digest
from mumu.pipeline import ChatOptions, MuMuPipeline

MEDIA_FIELD = {"text2music": None, "image2music": "image", "video2music": "video", "edit": "source"}
DEFAULT_PROMPT = {"text2music": None, "image2music": "Generate music that matches this image",
                  "video2music": "Generate music for this video", "edit": "Edit this music"}
PROMPT_KEYS = ("prompt", "caption", "text")


def _media(row: dict[str, Any], field: str | None, root: Path | None) -> str | None:
    """The row's file for `field` (an edit's source may also be called `audio`), made absolute against root."""
    if field is None:
        return None
    value = row.get(field) or (row.get("audio") if field == "source" else None)
    if not value:
        return None
    path = Path(str(value))
    return str(path if path.is_absolute() or root is None else root / path)


def load_generation_items(path: str | Path, media_root: str | Path | None, task: str) -> list[Item]:
    """Items for a generation task; a row without its prompt or media is a clear error."""
    root = None if media_root is None else Path(media_root)
    field = MEDIA_FIELD[task]
    items = []
    for index, raw in enumerate(read_rows(path)):
        row = {str(k).lower(): v for k, v in raw.items()}
        prompt = next((row[k] for k in PROMPT_KEYS if row.get(k)), None) or DEFAULT_PROMPT[task]
        if prompt is None:
            raise ValueError(f"{path}: row {index + 1}: {task} needs a prompt (one of {PROMPT_KEYS})")
        media = _media(row, field, root)
        if field and media is None:
            raise ValueError(f"{path}: row {index + 1}: {task} needs `{field}` (a file under --media-root)")
        data = {"prompt": str(prompt), "media": media, "reference": _media(row, "reference", root),
                "clap_text": str(row.get("caption") or prompt)}
        data["judge_video"] = media if task == "video2music" else None
        items.append(Item(str(row.get("id", index)), data))
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class GenerationTask:
    """Generate music per item and score it against its prompt, its clip and the reference set."""

    def __init__(self, name: str, pipeline: MuMuPipeline, references: ReferenceModels, data: str | Path,
                 media_root: str | Path | None, out_dir: str | Path, duration: float = 10.0, seed: int = 0) -> None:
        if name not in MEDIA_FIELD:
            raise ValueError(f"unknown generation task {name!r}; choose one of {', '.join(MEDIA_FIELD)}")
        self.name, self.pipeline, self.references = name, pipeline, references
        self.data, self.media_root = data, media_root
        self.embeddings_dir = Path(out_dir) / "embeddings"
        self.duration, self.seed = duration, seed

    def load(self) -> list[Item]:
        return load_generation_items(self.data, self.media_root, self.name)

    def swap(self, item: Item, items: Sequence[Item]) -> Item | None:
        """The item generated from the next item's media (its prompt, for text2music), judged as itself."""
        return swap_field(item, items, "prompt" if self.name == "text2music" else "media")

    def _generate(self, item: Item) -> tuple[str, str]:
        """(reply text, track path) for the item."""
        conv = self.pipeline.new_conversation()
        options = ChatOptions(music="always", fit_video=self.name == "video2music",
                              sampling=replace(SamplingSettings(), duration=self.duration, seed=self.seed))
        media, kwargs = item.data["media"], {}
        if media is not None and not Path(media).is_file():
            raise SkipItem(f"{MEDIA_FIELD[self.name]} file missing: {media}")
        if self.name == "image2music":
            kwargs["image"] = media
        elif self.name == "video2music":
            kwargs["video"] = media
        elif self.name == "edit":
            source = MediaItem(conv.new_id("music"), "music", Path(media), file_digest(media))
            conv.add(source)
            kwargs["edit"] = source.id
        try:
            reply = self.pipeline.chat(conv, item.data["prompt"], options=options, **kwargs)
        except MediaError as e:
            raise SkipItem(f"unreadable input: {e}") from e
        if reply.audio is None:
            raise ValueError(f"item {item.id}: music=always produced no track")
        return reply.text, reply.audio

    def _judge(self, item: Item, track: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        refs = self.references
        scores: dict[str, Any] = {"clap_score": cosine(refs.clap_text(item.data["clap_text"]),
                                                       refs.clap_audio(track).mean(axis=0))}
        arrays = {f"generated_{k}": v for k, v in refs.embeddings_of(track).items()}
        arrays["generated_tagger"] = refs.tagger_logits(track)
        reference = item.data["reference"]
        if reference is not None:
            if not Path(reference).is_file():
                raise SkipItem(f"reference audio missing: {reference}")
            arrays |= {f"reference_{k}": v for k, v in refs.embeddings_of(reference).items()}
            arrays["reference_tagger"] = refs.tagger_logits(reference)
        if item.data["judge_video"] is not None:
            rate = 22_050
            scores |= beat_alignment(item.data["judge_video"], load_audio(track, rate, refs.limits), rate)
        return scores, arrays

    def run(self, item: Item, items: Sequence[Item]) -> dict[str, Any]:
        text, track = self._generate(item)
        try:
            scores, arrays = self._judge(item, track)
        except MediaError as e:
            raise SkipItem(f"unreadable reference: {e}") from e
        self.embeddings_dir.mkdir(parents=True, exist_ok=True)
        stored = self.embeddings_dir / f"{_safe(item.id)}.npz"
        np.savez(stored, **arrays)
        return {"inputs": {k: item.data[k] for k in ("prompt", "media", "reference")} | (
                    {"swapped_with": item.data["swapped_with"]} if "swapped_with" in item.data else {}),
                "output": {"text": text, "audio": track, "arrays": str(stored)}, "scores": scores}

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        arrays = [dict(np.load(r["output"]["arrays"])) for r in records]
        paired = [a for a in arrays if "reference_tagger" in a]
        summary: dict[str, Any] = {"clap_score": float(np.mean([r["scores"]["clap_score"] for r in records]))}
        summary["fad"] = {}
        for name in self.references.embeddings:
            if len(paired) >= 2:
                reference = np.concatenate([a[f"reference_{name}"] for a in paired])
                generated = np.concatenate([a[f"generated_{name}"] for a in paired])
                summary["fad"][name] = fad(reference, generated)
            else:
                summary["fad"][name] = None
        if paired:
            summary["kl"] = kl_divergences(np.stack([a["reference_tagger"] for a in paired]),
                                           np.stack([a["generated_tagger"] for a in paired]))
        summary["with_reference"] = len(paired)
        beats = [r["scores"] for r in records if r["scores"].get("BCS") is not None]
        if beats:
            summary["beat_alignment"] = {k: float(np.mean([s[k] for s in beats])) for k in ("BCS", "BHS")}
        return summary

    def plots(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Plot]:
        plots = [Plot("CLAP text-audio score per item", "hist", [r["scores"]["clap_score"] for r in records],
                      "cosine")]
        hits = [r["scores"]["BHS"] for r in records if r["scores"].get("BHS") is not None]
        if hits:
            plots.append(Plot("Beat hit score (BHS) per clip", "hist", hits, "%"))
        return plots
