"""Prefix caching: the keys and values of token sequences decoded before, reused by later prompts that begin alike.

Every turn's prompt begins with the template's preamble, and a conversation's next prompt begins with its previous
prompt and reply. A position's keys and values depend only on the tokens up to it and on the row's modality inputs:
the injected term of a position depends on its own query and the row's adapter tokens (mumu/injection.py), and a row
without a modality gets exactly what it gets when no row has it. So an entry is keyed by its tokens and by the exact
adapter tokens of the row (`media_key`), and a prompt reuses the longest common prefix it shares with any entry of its
key: its prefill then feeds only the rest (mumu/batch_tensors.py lays the reused columns into the batch's cache).
The shape of the batch that computed an entry changes its values in their last float bits only, as batching does
(mumu/scheduler.py).

The cache is bounded by the tokens it holds (least recently used entries go first); its memory is that many tokens'
keys and values (mumu.info counts it in the memory estimate). An entry whose tokens begin
another entry's replaces it: the longer one serves every prompt the shorter one served. Hand-written rather than
transformers' cache classes: those hold one batch's running cache, not a store of many sequences looked up by prefix.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mumu.injection import ModalityInput

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, the keys and values of one sequence: (kv_heads, length, head_dim) each."""


@dataclass(frozen=True)
class Reused:
    """The first `length` tokens of a prompt, found in the cache, and their keys and values."""

    length: int
    kv: KeyValues


@dataclass
class _Entry:
    tokens: np.ndarray
    kv: KeyValues

    def __len__(self) -> int:
        return len(self.tokens)


def media_key(inputs: dict[str, ModalityInput | None], row: int) -> Hashable:
    """What a row's keys and values depend on besides its tokens: each modality's adapter tokens, when it has them."""
    key = []
    for name in sorted(inputs):
        item = inputs[name]
        if item is None or not bool(item.present[row]):
            key.append((name, None))
        else:
            data = item.tokens[row].detach().float().cpu().numpy()
            key.append((name, hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()))
    return tuple(key)


class PrefixCache:
    """Keys and values of earlier sequences by (media key, tokens), at most `max_tokens` in all; thread-safe.

    No cache at all (None where one is taken) is prefix caching off; a cache always holds something.
    """

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"the prefix cache's size is {max_tokens} tokens; expected 1 or more (no cache is off)")
        self.max_tokens = max_tokens
        self._entries: collections.OrderedDict[int, tuple[Hashable, _Entry]] = collections.OrderedDict()
        self._next_id = 0
        self._tokens = 0
        self._lock = threading.Lock()
        self.lookups = 0
        self.reused_tokens = 0

    @property
    def tokens(self) -> int:
        """Tokens held now."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: Sequence[int], key: Hashable) -> Reused | None:
        """The longest prefix of `tokens` held for `key`, leaving at least the last token to feed (None: no match)."""
        query = np.asarray(tokens[:-1], dtype=np.int64)
        with self._lock:
            self.lookups += 1
            best, best_id = 0, None
            for entry_id, (entry_key, entry) in self._entries.items():
                if entry_key == key and (n := _common_prefix(entry.tokens, query)) > best:
                    best, best_id = n, entry_id
            if best_id is None:
                return None
            self._entries.move_to_end(best_id)
            entry = self._entries[best_id][1]
            self.reused_tokens += best
            return Reused(best, [(k[:, :best], v[:, :best]) for k, v in entry.kv])

    def store(self, tokens: Sequence[int], kv: KeyValues, key: Hashable) -> None:
        """Keep a sequence's keys and values (copied by the caller; not aliased to a running batch's tensors)."""
        entry = _Entry(np.asarray(tokens, dtype=np.int64), kv)
        if len(entry) == 0 or len(entry) > self.max_tokens:
            return
        with self._lock:
            for entry_id, (entry_key, held) in list(self._entries.items()):
                if entry_key != key:
                    continue
                shared = _common_prefix(held.tokens, entry.tokens)
                if shared == len(entry.tokens):  # held already, within a longer entry
                    self._entries.move_to_end(entry_id)
                    return
                if shared == len(held.tokens):  # the new entry extends it
                    self._remove(entry_id)
            self._entries[self._next_id] = (key, entry)
            self._next_id += 1
            self._tokens += len(entry)
            while self._tokens > self.max_tokens:
                self._remove(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tokens = 0

    def _remove(self, entry_id: int) -> None:
        self._tokens -= len(self._entries.pop(entry_id)[1])


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n
