"""`captioning` and `musicqa`: the model answers about each track; its text is compared with the references.

Rows (JSON list, JSON lines or CSV; keys case-insensitive):
- audio: `audio` / `audio_path` / `music` / `file` (relative to --media-root), or a MusicCaps `ytid` (found by the
  published `[<ytid>]-[s-e].wav` name);
- question: `question` / `instruction` (captioning defaults to "Describe the music in detail"; musicqa needs it);
- references: `references` (a list), or one of `answer` / `caption` / `output` / `response`.
Replies are greedy and never make music. Metrics: see mumu.eval.text_metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mumu.decoding import GenerationSettings, generate
from mumu.eval.data import AudioFinder, read_rows, swap_field
from mumu.eval.report import NOTES_KEY
from mumu.eval.runner import Item, Plot, SkipItem
from mumu.eval.scoring import OptionScorer
from mumu.eval.text_metrics import FLUENCY_CAVEAT, text_metrics
from mumu.modeling import MediaFeatures, MuMuModel

CAPTION_QUESTION = "Describe the music in detail"
AUDIO_KEYS = ("audio", "audio_path", "music", "file")
QUESTION_KEYS = ("question", "instruction")
ANSWER_KEYS = ("answer", "caption", "output", "response")


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if row.get(k) not in (None, "")), None)


def load_text_items(path: str | Path, media_root: str | Path | None, task: str) -> list[Item]:
    """Items with audio, question and references; a row without references or question is a clear error."""
    finder = AudioFinder(media_root)
    items = []
    for index, raw in enumerate(read_rows(path)):
        row = {str(k).lower(): v for k, v in raw.items()}
        where = f"{path}: row {index + 1}"
        references = row.get("references") or ([] if _first(row, ANSWER_KEYS) is None else [_first(row, ANSWER_KEYS)])
        if not references or not all(isinstance(r, str) and r.strip() for r in references):
            raise ValueError(f"{where}: no reference text (give `references` or one of {ANSWER_KEYS})")
        question = _first(row, QUESTION_KEYS) or (CAPTION_QUESTION if task == "captioning" else None)
        if question is None:
            raise ValueError(f"{where}: musicqa needs a question (one of {QUESTION_KEYS})")
        if row.get("ytid"):
            audio = finder.find(_first(row, AUDIO_KEYS), "musiccaps", str(row["ytid"]))
        else:
            audio = finder.path(_first(row, AUDIO_KEYS))
        items.append(Item(str(row.get("id", index)), {"audio": None if audio is None else str(audio),
                                                      "question": str(question), "references": list(references)}))
    if not items:
        raise ValueError(f"{path}: no items")
    return items


class TextTask:
    """Generate a reply per item; BLEU / ROUGE-L / METEOR over the corpus."""

    def __init__(self, name: str, model: MuMuModel, data: str | Path, media_root: str | Path | None,
                 batch_size: int = 1, max_new_tokens: int = 128, bertscore_model: str | None = None,
                 bertscore_layers: int | None = None) -> None:
        self.name, self.model, self.data, self.media_root = name, model, data, media_root
        self.bertscore_model, self.bertscore_layers = bertscore_model, bertscore_layers
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.scorer = OptionScorer(model)

    def load(self) -> list[Item]:
        return load_text_items(self.data, self.media_root, self.name)

    def swap(self, item: Item, items: Sequence[Item]) -> Item | None:
        """The item with the next item's audio (for `ablation`); its question and references stay."""
        return swap_field(item, items, "audio")

    def run(self, item: Item, items: Sequence[Item]) -> dict[str, Any]:
        outcome = self.run_batch([item], items)[0]
        if isinstance(outcome, SkipItem):
            raise outcome
        return outcome

    def run_batch(self, batch: list[Item], items: Sequence[Item]) -> list[dict[str, Any] | SkipItem]:
        """Replies for a batch in one left-padded generate call; unreadable audio skips only its item."""
        results: list[dict[str, Any] | SkipItem] = []
        ready: list[tuple[int, Any]] = []
        for i, item in enumerate(batch):
            try:
                ready.append((i, self.scorer.music(item.data["audio"])))
                results.append({})
            except SkipItem as e:
                results.append(e)
        if not ready:
            return results
        prompts = [self.scorer.prompt_ids(batch[i].data["question"]) for i, _ in ready]
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens, temperature=0.0, music="never")
        replies = generate(self.model, prompts, MediaFeatures(music=[f for _, f in ready]), settings)
        for (i, _), reply in zip(ready, replies, strict=True):
            data = batch[i].data
            results[i] = {"inputs": {"audio": data["audio"], "question": data["question"]},
                          "output": {"text": reply.text.strip(), "finished": reply.finished},
                          "references": data["references"], "scores": {"words": len(reply.text.split())}}
        return results

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        metrics = text_metrics([r["output"]["text"] for r in records], [r["references"] for r in records],
                               self.bertscore_model, self.bertscore_layers, str(self.model.device))
        words = [r["scores"]["words"] for r in records]
        return {**metrics, "reply_words_mean": sum(words) / len(words), NOTES_KEY: [FLUENCY_CAVEAT]}

    def plots(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Plot]:
        return [Plot("Reply length", "hist", [r["scores"]["words"] for r in records], "words")]
