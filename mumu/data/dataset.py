"""A map-style training set: records tokenized once, media and decoder targets read from a feature store."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from mumu.data.collate import encode_record
from mumu.data.features import FeatureStore, caption_key, media_keys
from mumu.data.records import Record
from mumu.tokens import SpecialIds


@dataclass
class _Item:
    input_ids: list[int]
    labels: list[int]
    media: dict[str, str]
    target: str | None
    origin: str


class TrainingSet(Dataset):
    """Records as token ids plus feature-store keys; too-long records are dropped and counted in `too_long`.

    keys: media file -> store key, when the caller already hashed the files (hashing reads every file).
    """

    def __init__(
        self, records: list[Record], store: FeatureStore, tokenizer: PreTrainedTokenizerBase, ids: SpecialIds,
        media_root: Path, *, template: str = "alpaca", system: str | None = None, max_length: int = 2048,
        keys: dict[Path, str] | None = None,
    ) -> None:
        self.store = store
        self.items: list[_Item] = []
        self.too_long: list[str] = []
        keys = media_keys(records, media_root) if keys is None else keys
        for record in records:
            encoded = encode_record(record, tokenizer, ids, template=template, system=system, max_length=max_length)
            if encoded is None:
                self.too_long.append(record.origin)
                continue
            media = {modality: keys[media_root / rel] for modality, rel in record.media.items()}
            target = None if record.music_caption is None else caption_key(record.music_caption)
            self.items.append(_Item(*encoded, media, target, record.origin))
        if not self.items:
            raise ValueError(f"no record fits in {max_length} tokens (first: {self.too_long[:3]})")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {
            "input_ids": item.input_ids,
            "labels": item.labels,
            "media": {m: self.store.get(key)["features"] for m, key in item.media.items()},
            "targets": None if item.target is None else self.store.get(item.target),
        }


def split_records(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """A seeded held-out split: (train, eval); at least one record each when fraction > 0 and there are two."""
    if not 0 <= fraction < 1:
        raise ValueError(f"eval fraction must be in [0, 1), got {fraction}")
    if fraction == 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(records) - 1, max(1, round(len(records) * fraction)))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]
