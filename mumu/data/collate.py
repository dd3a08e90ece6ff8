"""Records -> token ids with prompt masking, and a collator that pads mixed-modality batches.

A record's conversation is rendered with the same prompt template the chat pipeline uses, so training and
inference see identical token sequences. Only assistant turns are learned (everything else is -100); the last
assistant turn ends with [AUD0..n] when it produces music, then EOS.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase

from mumu.config import MODALITIES
from mumu.data.records import Record
from mumu.prompting import Message, assistant_tokens, build_prompt
from mumu.tokens import SpecialIds

IGNORE = -100


def _messages(record: Record, start: int) -> list[Message]:
    out: list[Message] = []
    last = len(record.turns) - 1
    for i, turn in enumerate(record.turns[start:], start):
        music = i == last and record.music_caption is not None
        out += [Message("user", turn.user), Message("assistant", turn.assistant, music=music)]
    return out


def _render(
    record: Record, start: int, tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, template: str,
    system: str | None,
) -> tuple[list[int], list[int]]:
    messages = _messages(record, start)
    input_ids: list[int] = []
    labels: list[int] = []
    for i in range(1, len(messages), 2):
        prompt = build_prompt(tokenizer, ids, messages[:i], template, system)
        # The conversation so far (earlier answers included) must be rendered exactly as it was learned.
        if prompt[: len(input_ids)] != input_ids:
            raise ValueError(f"prompt template {template!r} renders earlier turns differently once later turns "
                             "follow, so turns cannot be masked by prefix")
        answer = assistant_tokens(tokenizer, ids, messages[i], template)
        if i == len(messages) - 1 and answer[-1:] != [ids.eos]:
            answer = [*answer, ids.eos]
        labels += [IGNORE] * (len(prompt) - len(input_ids)) + answer
        input_ids = prompt + answer
    return input_ids, labels


def encode_record(
    record: Record, tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, *, template: str = "alpaca",
    system: str | None = None, max_length: int = 2048,
) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) for a record, dropping its oldest turns to fit max_length; None if the last turn cannot."""
    for start in range(len(record.turns)):
        input_ids, labels = _render(record, start, tokenizer, ids, template, system)
        if len(input_ids) <= max_length:
            return input_ids, labels
    return None


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    return pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True, padding_value=value)


class Collator:
    """Pads a list of dataset items into one batch dict the trainer feeds to MuMuModel.forward.

    Items are dicts: input_ids, labels (lists), media {modality: features tensor}, targets ({stream: (N, W)}) or
    None. Padding is on the right and masked; rows without a modality get None in that modality's list; decoder
    targets are stacked for the rows that produce music only (target_rows), padded with a validity mask.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch the items."""
        input_ids = _pad([it["input_ids"] for it in items], self.pad_id)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(input_ids.shape[1])[None] < lengths[:, None]).long(),
            "labels": _pad([it["labels"] for it in items], IGNORE),
        }
        for modality in MODALITIES:
            batch[modality] = [it["media"].get(modality) for it in items]
        rows = [i for i, it in enumerate(items) if it.get("targets") is not None]
        batch["target_rows"] = rows
        batch["decoder_targets"] = batch["decoder_target_masks"] = None
        if rows:
            streams = items[rows[0]]["targets"]
            batch["decoder_targets"], batch["decoder_target_masks"] = {}, {}
            for name in streams:
                states = [items[i]["targets"][name] for i in rows]
                batch["decoder_targets"][name] = pad_sequence(states, batch_first=True)
                sizes = torch.tensor([len(s) for s in states])
                batch["decoder_target_masks"][name] = torch.arange(max(sizes))[None] < sizes[:, None]
        return batch
