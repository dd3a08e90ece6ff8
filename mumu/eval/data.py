"""Reading benchmark files: MuChoMusic in both published forms, and plain row files (JSON, JSON lines, CSV).

MuChoMusic (mulab-mir/muchomusic):
- `muchomusic.csv`: question, correct_answer, distractor_1_answer..distractor_3_answer, dataset,
  dataset_identifier, genre, music_reasoning, music_knowledge (Python-list strings). Options are shuffled as
  `prepare_prompts.py` does (here with a per-item seed, so every run and process sees the same order) and the
  prompt is built with its template.
- the JSON list `prepare_prompts.py` writes: id, prompt, answers (displayed order), answer_orders (the index each
  displayed option had in [correct, distractor_1, ...], so the correct option is where it holds 0), dataset,
  genre, reasoning, knowledge, audio_path.
Audio is the `audio_path` (relative to --media-root unless absolute), else looked up under --media-root by the
published file names: Song Describer `<track_id>.2min.mp3` (or `<track_id>.mp3`), MusicCaps `[<ytid>]-[s-e].wav`.
"""

from __future__ import annotations

import ast
import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mumu.eval.runner import Item

LETTERS = ("A", "B", "C", "D")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus")
CSV_COLUMNS = ("question", "correct_answer", "distractor_1_answer", "distractor_2_answer", "distractor_3_answer",
               "dataset", "dataset_identifier")
JSON_FIELDS = ("id", "prompt", "answers", "answer_orders")


def next_different(item: Item, items: Sequence[Item], key: str) -> Item | None:
    """The next item in the data's order (wrapping) whose `key` differs from this one's; None if none does."""
    start = next(i for i, other in enumerate(items) if other.id == item.id)
    for step in range(1, len(items)):
        other = items[(start + step) % len(items)]
        if other.data[key] != item.data[key]:
            return other
    return None


def swap_field(item: Item, items: Sequence[Item], key: str) -> Item | None:
    """The item with `key` taken from the next item that differs there (for ablations); None if none does."""
    other = next_different(item, items, key)
    if other is None:
        return None
    return Item(f"{item.id}~swap", item.data | {key: other.data[key], "swapped_with": other.id})


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON list, a JSON-lines file or a CSV file (with a header), as dicts."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such data file")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected a list of objects or JSON lines") from e
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValueError(f"{path}: expected a list of JSON objects (one per item)")
    return data


def prompt_for(question: str, answers: list[str]) -> str:
    """The MuChoMusic prompt exactly as prepare_prompts.get_prompts writes it (no in-context examples)."""
    text = "Question: " + question + "\n Options: "
    for letter, answer in zip(LETTERS, answers, strict=False):
        text += f"({letter}) {answer} "
    return text + "\n The correct answer is: "


def categories(value: Any) -> list[str]:
    """A category list from a list, a Python-list string (the official CSV), or empty / NaN."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if value is None or str(value).strip() in ("", "nan"):
        return []
    parsed = ast.literal_eval(str(value))
    if not isinstance(parsed, (list, tuple)):
        raise ValueError(f"expected a list of categories, got {value!r}")
    return [str(v) for v in parsed]


def _audio_id(dataset: str, identifier: str) -> str:
    """As load_questions_from_csv: sdd '<id>.json' -> '<id>'; musiccaps '<ytid>_<n>.json' -> '<ytid>'."""
    stem = identifier.removesuffix(".json")
    return stem if dataset == "sdd" else "_".join(stem.split("_")[:-1]) or stem


class AudioFinder:
    """Resolves an item's audio under the media root: a given path, else the published file names."""

    def __init__(self, media_root: str | Path | None) -> None:
        self.root = None if media_root is None else Path(media_root)
        self._names: dict[str, list[Path]] | None = None

    def path(self, given: str | None) -> Path | None:
        """A given path, made absolute against the media root."""
        if not given:
            return None
        path = Path(given)
        return path if path.is_absolute() or self.root is None else self.root / path

    def find(self, given: str | None, dataset: str, audio_id: str) -> Path | None:
        """The item's audio file, or None when it is nowhere to be found."""
        path = self.path(given)
        if path is not None and path.is_file():
            return path
        if self.root is None:
            return path
        if self._names is None:
            self._names = {}
            for file in sorted(self.root.rglob("*")):
                if file.suffix.lower() in AUDIO_SUFFIXES:
                    self._names.setdefault(file.name, []).append(file)
        wanted = ([f"{audio_id}.2min.mp3", f"{audio_id}.mp3"] if dataset == "sdd" else [])
        for name in wanted:
            if name in self._names:
                return self._names[name][0]
        prefix = f"[{audio_id}]-"
        for name, files in self._names.items():
            if name.startswith(prefix) or Path(name).stem == audio_id:
                return files[0]
        return path


def _from_csv(row: dict[str, Any], index: int, finder: AudioFinder) -> Item:
    missing = [c for c in CSV_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"row {index + 1}: missing columns {missing}; the official muchomusic.csv has {CSV_COLUMNS}")
    dataset = str(row["dataset"])
    audio_id = _audio_id(dataset, str(row["dataset_identifier"]))
    original = [str(row[c]) for c in CSV_COLUMNS[1:5]]
    order = random.Random(f"muchomusic:{index}:{audio_id}").sample(range(len(original)), k=len(original))
    answers = [original[j] for j in order]
    audio = finder.find(row.get("audio_path"), dataset, audio_id)
    return Item(f"{index}:{audio_id}", {
        "prompt": prompt_for(str(row["question"]), answers), "answers": answers, "correct": order.index(0),
        "audio": None if audio is None else str(audio), "dataset": dataset, "genre": str(row.get("genre") or ""),
        "reasoning": categories(row.get("music_reasoning")), "knowledge": categories(row.get("music_knowledge"))})


def _from_json(row: dict[str, Any], index: int, finder: AudioFinder) -> Item:
    missing = [f for f in JSON_FIELDS if f not in row]
    if missing:
        raise ValueError(f"item {index + 1}: missing fields {missing}; prepare_prompts.py writes {JSON_FIELDS}")
    orders = list(row["answer_orders"])
    answers = [str(a) for a in row["answers"]]
    if sorted(orders) != list(range(len(answers))):
        raise ValueError(f"item {index + 1}: answer_orders {orders} is not a permutation of the {len(answers)} answers")
    dataset = str(row.get("dataset", ""))
    audio = finder.find(row.get("audio_path"), dataset, str(row["id"]))
    return Item(f"{index}:{row['id']}", {
        "prompt": str(row["prompt"]), "answers": answers, "correct": orders.index(0),
        "audio": None if audio is None else str(audio), "dataset": dataset, "genre": str(row.get("genre") or ""),
        "reasoning": categories(row.get("reasoning")), "knowledge": categories(row.get("knowledge"))})


def load_muchomusic(path: str | Path, media_root: str | Path | None) -> list[Item]:
    """MuChoMusic items from the official CSV or the prepare_prompts JSON (told apart by the file's suffix)."""
    rows = read_rows(path)
    finder = AudioFinder(media_root)
    make = _from_csv if Path(path).suffix.lower() == ".csv" else _from_json
    items = [make(row, i, finder) for i, row in enumerate(rows)]
    if not items:
        raise ValueError(f"{path}: no items")
    return items
