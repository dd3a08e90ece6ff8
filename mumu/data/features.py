"""Frozen-model outputs computed once for a dataset: encoder features and the decoder's text-encoder targets.

On disk a store is a directory of safetensors shards plus `index.json` (entry key -> shard and tensor names).
Keys name content, not files: `music/<sha256 of the file>`, `image/...`, `video/...`, and
`target/<sha256 of the caption>` for the projector's training targets. The index also records a fingerprint of
the frozen components (encoders, decoder, seed of random-init parts), so a store made for other encoders is
refused instead of silently training on wrong features.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from generation.interface import MusicDecoder
from mumu.builder import FrozenEncoders
from mumu.config import MuMuConfig
from mumu.data.records import Record
from mumu.feature_cache import encode_file, file_digest
from mumu.modeling import MuMuModel

INDEX_NAME = "index.json"
STORE_VERSION = 1
SHARD_BYTES = 512 * 2**20


def fingerprint(config: MuMuConfig) -> str:
    """Hash of everything that determines the stored tensors (encoders, decoder text side, limits, init seed)."""
    parts = {name: json.loads(json.dumps(getattr(config, name).__dict__, default=str)) for name in
             ("music_encoder", "image_encoder", "video_encoder", "decoder", "limits")}
    parts["seed"] = config.seed
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def media_key(modality: str, path: Path) -> str:
    """Store key of a media file: its modality and content hash."""
    return f"{modality}/{file_digest(path)}"


def caption_key(caption: str) -> str:
    """Store key of a caption's decoder targets."""
    return f"target/{hashlib.sha256(caption.encode()).hexdigest()}"


class FeatureStore:
    """key -> {name: tensor}. In memory, or read lazily from a directory written by `save`."""

    def __init__(self, fingerprint: str, entries: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        self.fingerprint = fingerprint
        self._memory: dict[str, dict[str, torch.Tensor]] = dict(entries or {})
        self._disk: dict[str, tuple[Path, list[str]]] = {}
        self._open: dict[Path, Any] = {}  # shard -> open safetensors handle (memory-mapped; header parsed once)

    @classmethod
    def open(cls, directory: str | Path, expected_fingerprint: str | None = None) -> FeatureStore:
        """Open a store directory; with expected_fingerprint, refuse one made with other frozen components."""
        directory = Path(directory)
        try:
            index = json.loads((directory / INDEX_NAME).read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{directory} is not a feature store: no {INDEX_NAME} (make one with "
                                    "`python -m mumu features`)") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{directory / INDEX_NAME} is not valid JSON: {e}") from e
        if index.get("version") != STORE_VERSION:
            raise ValueError(f"{directory}: feature store version {index.get('version')}, expected {STORE_VERSION}")
        if expected_fingerprint is not None and index["fingerprint"] != expected_fingerprint:
            raise ValueError(f"{directory} was computed with other encoders/decoder (fingerprint "
                             f"{index['fingerprint']}, this model {expected_fingerprint}); recompute it")
        store = cls(index["fingerprint"])
        for key, (shard, names) in index["entries"].items():
            store._disk[key] = (directory / shard, names)
        return store

    def __contains__(self, key: str) -> bool:
        return key in self._memory or key in self._disk

    def __len__(self) -> int:
        return len(self._memory.keys() | self._disk.keys())

    def keys(self) -> set[str]:
        """Every stored key."""
        return set(self._memory) | set(self._disk)

    def get(self, key: str) -> dict[str, torch.Tensor]:
        """The tensors of one entry (KeyError naming the key if absent)."""
        if key in self._memory:
            return self._memory[key]
        if key not in self._disk:
            raise KeyError(f"feature store has no entry {key!r}")
        shard, names = self._disk[key]
        if shard not in self._open:
            self._open[shard] = safe_open(str(shard), framework="pt")
        handle = self._open[shard]
        return {name: handle.get_tensor(f"{key}:{name}") for name in names}

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Add an entry in memory."""
        self._memory[key] = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}

    def save(self, directory: str | Path, shard_bytes: int = SHARD_BYTES) -> Path:
        """Write index.json and safetensors shards of at most ~shard_bytes.

        Saving back into the directory the store was opened from only adds shards for the new entries: existing
        shards are neither rewritten nor touched while they may still be read, and the index is replaced atomically.
        """
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        entries: dict[str, tuple[str, list[str]]] = {}
        todo = []
        for key in sorted(self.keys()):
            stored = self._disk.get(key)
            if key not in self._memory and stored is not None and stored[0].parent.resolve() == directory:
                entries[key] = (stored[0].name, stored[1])
            else:
                todo.append(key)
        run = uuid.uuid4().hex[:8]  # new shard names never collide with ones an earlier run wrote
        shard: dict[str, torch.Tensor] = {}
        size, number = 0, 0

        def name(n: int) -> str:
            return f"features-{run}-{n:05d}.safetensors"

        for key in todo:
            tensors = self.get(key)
            nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
            if shard and size + nbytes > shard_bytes:
                number += 1
                save_file(shard, str(directory / name(number)))
                shard, size = {}, 0
            for tensor_name, tensor in tensors.items():
                shard[f"{key}:{tensor_name}"] = tensor
            entries[key] = (name(number + 1), sorted(tensors))
            size += nbytes
        if shard:
            save_file(shard, str(directory / name(number + 1)))
        index = {"version": STORE_VERSION, "fingerprint": self.fingerprint, "entries": entries}
        partial = directory / f"{INDEX_NAME}.{run}.tmp"
        partial.write_text(json.dumps(index, indent=1) + "\n")
        partial.replace(directory / INDEX_NAME)
        return directory


def media_keys(records: Iterable[Record], media_root: Path) -> dict[Path, str]:
    """The store key of every media file the records name, each file read and hashed once."""
    keys: dict[Path, str] = {}
    for record in records:
        for modality, rel in record.media.items():
            path = media_root / rel
            if path not in keys:
                keys[path] = media_key(modality, path)
    return keys


def needed_keys(
    records: list[Record], media_root: Path, keys: dict[Path, str] | None = None
) -> tuple[dict[str, tuple[str, Path]], dict[str, str]]:
    """What a dataset needs: media key -> (modality, file), and target key -> caption."""
    keys = keys if keys is not None else media_keys(records, media_root)
    media: dict[str, tuple[str, Path]] = {}
    targets: dict[str, str] = {}
    for record in records:
        for modality, rel in record.media.items():
            media[keys[media_root / rel]] = (modality, media_root / rel)
        if record.music_caption is not None:
            targets[caption_key(record.music_caption)] = record.music_caption
    return media, targets


def fill(
    store: FeatureStore, encoders: MuMuModel | FrozenEncoders, make_decoder: Callable[[], MusicDecoder],
    records: list[Record], media_root: Path, progress: Any = None, keys: dict[Path, str] | None = None,
) -> dict[str, int]:
    """Compute whatever the records need and the store lacks; returns how many entries were computed per kind.

    make_decoder is called only when some caption's targets are missing: a decoder is needed for its text encoder
    alone, and loading it (billions of parameters at full size) is wasted when the store already has every target.
    """
    media, targets = needed_keys(records, media_root, keys)
    todo_media = {k: v for k, v in media.items() if k not in store}
    todo_targets = {k: v for k, v in targets.items() if k not in store}
    decoder = make_decoder() if todo_targets else None
    counts = {"music": 0, "image": 0, "video": 0, "target": 0}
    steps = len(todo_media) + len(todo_targets)
    bar = progress(total=steps, desc="features", unit="item") if progress and steps else None
    with torch.inference_mode():
        for key, (modality, path) in todo_media.items():
            store.put(key, {"features": encode_file(encoders, modality, path, encoders.config.limits)})
            counts[modality] += 1
            if bar is not None:
                bar.update()
        for key, caption in todo_targets.items():
            states, masks = decoder.text_targets([caption])
            tensors = {}
            for name, value in states.items():
                tensors[name] = value[0][masks[name][0]]  # only the caption's own tokens; the collator re-pads
            store.put(key, tensors)
            counts["target"] += 1
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return counts
