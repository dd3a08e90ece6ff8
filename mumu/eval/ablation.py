"""`ablation`: a task run twice per item, with the item's own media and with another item's, and the drop.

The swapped run keeps the item's own references and judges (answers, reference music, prompt for CLAP, the clip
whose cuts BHS is measured against) and replaces only what the model reads (the audio, image, video, edit source;
the prompt for text2music). A model that uses its input loses accuracy or alignment; one that ignores it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mumu.eval.report import NOTES_KEY, flatten
from mumu.eval.runner import Item, Plot, SkipItem


class AblationTask:
    """Wraps a task that has `swap(item, items) -> Item | None`."""

    def __init__(self, base: Any) -> None:
        if not hasattr(base, "swap"):
            raise ValueError(f"task {base.name!r} cannot swap media")
        self.base = base
        self.name = f"ablation-{base.name}"

    def load(self) -> list[Item]:
        return self.base.load()

    def run(self, item: Item, items: Sequence[Item]) -> dict[str, Any]:
        original = self.base.run(item, items)
        swapped_item = self.base.swap(item, items)
        if swapped_item is None:
            raise SkipItem("no other item with different media to swap in")
        try:
            swapped = self.base.run(swapped_item, items)
        except SkipItem as e:
            raise SkipItem(f"swapped run skipped: {e}") from e
        return {"inputs": {"swapped_with": swapped_item.data.get("swapped_with")}, "original": original,
                "swapped": swapped, "scores": {}}

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        original = self.base.summarize([{"id": r["id"], **r["original"]} for r in records])
        swapped = self.base.summarize([{"id": r["id"], **r["swapped"]} for r in records])
        notes = [*original.pop(NOTES_KEY, []),
                 "drop = original - swapped: positive means the score fell when the media was swapped (for "
                 "distances such as FAD and KL, lower is better, so a negative drop is the expected sign)."]
        swapped.pop(NOTES_KEY, None)
        a, b = flatten(original), flatten(swapped)
        drop = {k: a[k] - b[k] for k in a if isinstance(a[k], float) and isinstance(b.get(k), float)}
        return {"original": original, "swapped": swapped, "drop": drop, NOTES_KEY: notes}

    def plots(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Plot]:
        return [Plot("Drop when the media is swapped (original - swapped)", "bars", summary["drop"])]
