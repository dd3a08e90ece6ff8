"""MuChoMusic (Weck et al., ISMIR 2024): multiple-choice music understanding, scored by option log-likelihood.

Each option is scored as the reply "(<letter>) <answer>" to the published prompt; the model's choice is the
option of highest total log-probability (`accuracy`, as lm-evaluation-harness's `acc`), and of highest mean
log-probability per token (`accuracy_per_token`). Unlike the official letter-matching of free text, every item
gets an answer. Per-dimension accuracy follows the official scoring: reasoning / knowledge (items with any
category), each category, genre and source dataset. `audio_swap` replays every item with the next item's
audio (its partner in the data's order, when its audio differs and is readable): `changed_rate` is how often
the choice moves, a measure of how much the model uses what it hears.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mumu.eval.data import LETTERS, load_muchomusic, next_different, swap_field
from mumu.eval.runner import Item, Plot, SkipItem
from mumu.eval.scoring import OptionScorer
from mumu.modeling import MuMuModel


def _choice(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__)


def accuracy(records: list[dict[str, Any]], key: str = "correct") -> dict[str, float | int]:
    """{'accuracy', 'correct', 'total'} over records."""
    correct = sum(bool(r["scores"][key]) for r in records)
    return {"accuracy": correct / len(records), "correct": correct, "total": len(records)}


class MuChoMusicTask:
    """The `muchomusic` task over a MuMuModel."""

    name = "muchomusic"

    def __init__(self, model: MuMuModel, data: str | Path, media_root: str | Path | None, batch_size: int = 4,
                 swap: bool = True) -> None:
        self.data, self.media_root, self.audio_swap = data, media_root, swap
        self.scorer = OptionScorer(model, batch_size)

    def load(self) -> list[Item]:
        return load_muchomusic(self.data, self.media_root)

    def swap(self, item: Item, items: Sequence[Item]) -> Item | None:
        """The item with its partner's audio (for `ablation`)."""
        return swap_field(item, items, "audio")

    def _options(self, item: Item) -> list[str]:
        return [f"({letter}) {answer}" for letter, answer in zip(LETTERS, item.data["answers"], strict=False)]

    def _swapped_choice(self, item: Item, items: Sequence[Item]) -> tuple[int | None, str | None]:
        other = next_different(item, items, "audio") if self.audio_swap else None
        if other is None:
            return None, None
        try:
            music = self.scorer.music(other.data["audio"])
        except SkipItem:
            return None, other.id
        scores = self.scorer.score(item.data["prompt"], self._options(item), music)
        return _choice([s.logprob for s in scores]), other.id

    def run(self, item: Item, items: Sequence[Item]) -> dict[str, Any]:
        music = self.scorer.music(item.data["audio"])
        scores = self.scorer.score(item.data["prompt"], self._options(item), music)
        choice = _choice([s.logprob for s in scores])
        per_token = _choice([s.per_token for s in scores])
        swapped, partner_id = self._swapped_choice(item, items)
        correct = item.data["correct"]
        return {
            "inputs": {"prompt": item.data["prompt"], "answers": item.data["answers"], "audio": item.data["audio"],
                       "correct": LETTERS[correct]},
            "output": {"choice": LETTERS[choice], "choice_per_token": LETTERS[per_token],
                       "logprobs": [round(s.logprob, 5) for s in scores], "tokens": [s.tokens for s in scores],
                       "swap_partner": partner_id, "swap_choice": None if swapped is None else LETTERS[swapped]},
            "scores": {"correct": choice == correct, "correct_per_token": per_token == correct,
                       "swap_changed": None if swapped is None else swapped != choice,
                       "swap_correct": None if swapped is None else swapped == correct},
            "categories": {k: item.data[k] for k in ("dataset", "genre", "reasoning", "knowledge")},
        }

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        options = max(len(r["inputs"]["answers"]) for r in records)
        summary: dict[str, Any] = {**accuracy(records), "accuracy_per_token": accuracy(
            records, "correct_per_token")["accuracy"], "chance": 1 / options}
        for dimension in ("reasoning", "knowledge"):
            having = [r for r in records if r["categories"][dimension]]
            if having:
                summary[dimension] = accuracy(having)
                groups: dict[str, list] = defaultdict(list)
                for r in having:
                    for category in r["categories"][dimension]:
                        groups[category].append(r)
                summary[f"{dimension}_categories"] = {k: accuracy(v) for k, v in sorted(groups.items())}
        for dimension in ("genre", "dataset"):
            groups = defaultdict(list)
            for r in records:
                if r["categories"][dimension]:
                    groups[r["categories"][dimension]].append(r)
            if groups:
                summary[dimension] = {k: accuracy(v) for k, v in sorted(groups.items())}
        swapped = [r for r in records if r["scores"]["swap_changed"] is not None]
        if swapped:
            summary["audio_swap"] = {
                "changed_rate": sum(r["scores"]["swap_changed"] for r in swapped) / len(swapped),
                "accuracy_with_swapped_audio": accuracy(swapped, "swap_correct")["accuracy"],
                "accuracy_with_own_audio": accuracy(swapped)["accuracy"], "items": len(swapped)}
        return summary

    def plots(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Plot]:
        plots = [Plot("Chosen option's log-probability margin over the runner-up", "hist",
                      [_margin(r["output"]["logprobs"]) for r in records], "nats")]
        for dimension in ("reasoning_categories", "knowledge_categories", "genre"):
            if dimension in summary:
                plots.append(Plot(f"Accuracy by {dimension.replace('_', ' ')}", "bars",
                                  {k: v["accuracy"] for k, v in summary[dimension].items()}))
        return plots


def _margin(logprobs: list[float]) -> float:
    top = sorted(logprobs, reverse=True)
    return top[0] - top[1] if len(top) > 1 else 0.0
