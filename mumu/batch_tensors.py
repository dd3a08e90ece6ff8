"""The tensors of a left-padded decoding batch that rows join and leave: token ids, attention mask, KV cache and the
rows' modality inputs.

Rows are left-padded to a common length. Padding columns are masked, so a row's attention and its positions (counted
over its own unmasked columns) do not depend on the other rows or on how much padding it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from mumu.injection import ModalityInput
from mumu.prefix_cache import KeyValues, Reused


@dataclass
class BatchTensors:
    """ids, mask: (B, L), left-padded; the last column is what the next forward feeds.

    cache: the keys and values of every column but the last (None when decoding without a KV cache).
    inputs: each modality's adapter tokens for the B rows (None: no row has it).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    cache: DynamicCache | None
    inputs: dict[str, ModalityInput | None]

    @classmethod
    def prompts(cls, prompts: list[list[int]], pad: int, device: torch.device, use_cache: bool,
                inputs: dict[str, ModalityInput | None], reused: list[Reused | None] | None = None) -> BatchTensors:
        """Prompts left-padded, with a cache of the columns reused from the prefix cache (the first forward feeds
        the rest).

        reused: per row, the keys and values of its first tokens (mumu.prefix_cache), or None. The reused columns
        of every row end at one column and the rest of every row ends at the last one, each part left-padded, so a
        row with both parts and shorter ones than the longest has masked padding between them.
        """
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        lengths = [0 if r is None else r.length for r in (reused or [None] * len(prompts))]
        cached = max(lengths)
        fed = max(len(p) - n for p, n in zip(prompts, lengths, strict=True))
        ids = torch.full((len(prompts), cached + fed), pad, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
            ids[i, cached - n : cached] = torch.tensor(p[:n], dtype=torch.long, device=device)
            ids[i, cached + fed - (len(p) - n) :] = torch.tensor(p[n:], device=device)
            mask[i, cached - n : cached] = 1
            mask[i, cached + fed - (len(p) - n) :] = 1
        cache = DynamicCache() if use_cache else None
        if cached:
            cache = _reused_cache(reused, cached)
        return cls(ids, mask, cache, inputs)

    def row_sequence(self, row: int) -> tuple[list[int], KeyValues]:
        """One row's tokens in the cache (padding left out) and copies of their keys and values."""
        columns = self.mask[row, : self.ids.shape[1] - 1].nonzero()[:, 0]
        kv = [(layer.keys[row].index_select(1, columns), layer.values[row].index_select(1, columns))
              for layer in self.cache.layers]
        return self.ids[row, columns].tolist(), kv

    @property
    def positions(self) -> torch.Tensor:
        """(B, L): each column's position within its own row (padding counts nothing)."""
        return (self.mask.cumsum(-1) - 1).clamp_min(0)

    def extended(self, tokens: torch.Tensor) -> BatchTensors:
        """The batch with each row's next token (B,) appended as a new last column."""
        ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        return BatchTensors(ids, mask, self.cache, self.inputs)

    def merged(self, other: BatchTensors, pad: int) -> BatchTensors:
        """This batch's rows, then `other`'s, the shorter side left-padded to the longer one's length."""
        length = max(self.ids.shape[1], other.ids.shape[1])
        ids = torch.cat([_pad_left(self.ids, length, pad), _pad_left(other.ids, length, pad)])
        mask = torch.cat([_pad_left(self.mask, length, 0), _pad_left(other.mask, length, 0)])
        cache = None
        if self.cache is not None and other.cache is not None:
            cache = DynamicCache([
                (torch.cat([_pad_left(a.keys, length - 1, 0), _pad_left(b.keys, length - 1, 0)]),
                 torch.cat([_pad_left(a.values, length - 1, 0), _pad_left(b.values, length - 1, 0)]))
                for a, b in zip(self.cache.layers, other.cache.layers, strict=True)])
        inputs = {m: _cat_inputs(self.inputs[m], other.inputs[m], len(self.ids), len(other.ids)) for m in self.inputs}
        return BatchTensors(ids, mask, cache, inputs)

    def selected(self, rows: list[int]) -> BatchTensors:
        """Only the given rows, without the leading columns that are padding in all of them."""
        index = torch.tensor(rows, device=self.ids.device)
        mask = self.mask[index]
        start = int(mask.any(0).nonzero()[0, 0])
        cache = None
        if self.cache is not None:
            cache = DynamicCache([(layer.keys[index, :, start:], layer.values[index, :, start:])
                                  for layer in self.cache.layers])
        inputs = {m: None if x is None else ModalityInput(x.tokens[index], x.present[index])
                  for m, x in self.inputs.items()}
        return BatchTensors(self.ids[index, start:], mask[:, start:], cache, inputs)


def _reused_cache(reused: list[Reused | None], length: int) -> DynamicCache:
    """The rows' reused keys and values, each left-padded to `length` columns (zeros for rows that reuse none); each
    layer stays on its own device (a model split over several)."""
    like = next(r for r in reused if r is not None).kv

    def rows(layer: int, part: int) -> torch.Tensor:
        empty = like[layer][part][:, :0]
        return torch.stack([_pad_left(empty if r is None else r.kv[layer][part], length, 0)
                            for r in reused])

    return DynamicCache([(rows(layer, 0), rows(layer, 1)) for layer in range(len(like))])


def _pad_left(x: torch.Tensor, length: int, value: float) -> torch.Tensor:
    """Pad dim 1 (ids, mask) or dim -2 (cached keys/values: batch, heads, length, dim) on the left to `length`."""
    dim = 1 if x.dim() == 2 else -2
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    return F.pad(x, (missing, 0) if dim == 1 else (0, 0, missing, 0), value=value)


def _cat_inputs(a: ModalityInput | None, b: ModalityInput | None, rows_a: int, rows_b: int) -> ModalityInput | None:
    if a is None and b is None:
        return None
    like = a if a is not None else b
    a = a or ModalityInput(like.tokens.new_zeros(rows_a, *like.tokens.shape[1:]), like.present.new_zeros(rows_a))
    b = b or ModalityInput(like.tokens.new_zeros(rows_b, *like.tokens.shape[1:]), like.present.new_zeros(rows_b))
    return ModalityInput(torch.cat([a.tokens, b.tokens]), torch.cat([a.present, b.present]))
