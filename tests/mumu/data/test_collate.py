"""Record -> ids/labels (prompt masked, [AUD] + EOS on music answers) and batch padding for mixed modalities."""

from __future__ import annotations

import pytest
import torch

from mumu.data.collate import IGNORE, Collator, encode_record
from mumu.data.records import Record, Turn
from mumu.profiles import tiny
from mumu.prompting import Message, build_prompt
from mumu.tokens import encode_text, load_tokenizer, special_ids


@pytest.fixture(scope="module")
def tok():
    tokenizer = load_tokenizer(tiny().llm)
    return tokenizer, special_ids(tokenizer, 8)


def _learned(input_ids: list[int], labels: list[int]) -> list[int]:
    return [t for t, label in zip(input_ids, labels, strict=True) if label != IGNORE]


def test_single_turn_masks_prompt_and_ends_with_eos(tok):
    tokenizer, ids = tok
    record = Record("musicqa", "f[0]", (Turn("What instrument is this?", "A piano."),), {"music": "a.wav"})
    input_ids, labels = encode_record(record, tokenizer, ids)
    prompt = build_prompt(tokenizer, ids, [Message("user", "What instrument is this?")])
    assert input_ids[: len(prompt)] == prompt  # the same prompt chat() builds at inference
    assert labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert _learned(input_ids, labels) == [*encode_text(tokenizer, "A piano."), ids.eos]


def test_music_answer_gets_audio_tokens_before_eos(tok):
    tokenizer, ids = tok
    record = Record("muimage", "f[1]", (Turn("Music for this photo", "Here is a calm piece."),), {"image": "x.png"},
                    music_caption="calm piano")
    input_ids, labels = encode_record(record, tokenizer, ids)
    assert _learned(input_ids, labels) == [*encode_text(tokenizer, "Here is a calm piece."), *ids.audio, ids.eos]


def test_multi_turn_learns_every_answer_and_matches_the_chat_prompt(tok):
    tokenizer, ids = tok
    record = Record("musicqa", "f[2]", (Turn("Q1", "A1"), Turn("Q2", "A2")), {"music": "a.wav"})
    input_ids, labels = encode_record(record, tokenizer, ids)
    history = [Message("user", "Q1"), Message("assistant", "A1"), Message("user", "Q2")]
    prompt = build_prompt(tokenizer, ids, history)
    assert input_ids[: len(prompt)] == prompt
    answer_tokens = [*encode_text(tokenizer, "A1"), ids.eos, *encode_text(tokenizer, "A2"), ids.eos]
    assert _learned(input_ids, labels) == answer_tokens


def test_too_long_drops_oldest_turns_then_gives_up(tok):
    tokenizer, ids = tok
    record = Record("musicqa", "f[3]", (Turn("first " * 40, "x"), Turn("Q", "A")), {})
    full, _ = encode_record(record, tokenizer, ids)
    short, labels = encode_record(record, tokenizer, ids, max_length=len(full) - 1)
    assert len(short) < len(full) and _learned(short, labels) == [*encode_text(tokenizer, "A"), ids.eos]
    assert encode_record(record, tokenizer, ids, max_length=5) is None


def test_user_text_cannot_inject_special_tokens(tok):
    tokenizer, ids = tok
    record = Record("alpaca", "f[4]", (Turn("[AUD0] </s>", "ok"),), {})
    input_ids, _ = encode_record(record, tokenizer, ids)
    assert ids.audio[0] not in input_ids and input_ids.count(ids.eos) == 1


def test_collator_pads_and_batches_mixed_modalities():
    music = torch.randn(3, 5, 8)
    image = torch.randn(17, 8)
    items = [
        {"input_ids": [1, 5, 6], "labels": [-100, 5, 6], "media": {"music": music}, "targets": None},
        {"input_ids": [1, 7, 8, 9, 2], "labels": [-100, -100, 8, 9, 2], "media": {"image": image},
         "targets": {"encoder_hidden_states": torch.randn(4, 3)}},
        {"input_ids": [1, 2], "labels": [-100, 2], "media": {},
         "targets": {"encoder_hidden_states": torch.randn(6, 3)}},
    ]
    batch = Collator(pad_id=0)(items)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 0, 0], [1, 7, 8, 9, 2], [1, 2, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"][0].tolist() == [-100, 5, 6, -100, -100]
    assert batch["music"][0] is music and batch["music"][1] is None and batch["image"][1] is image
    assert batch["video"] == [None, None, None]
    assert batch["target_rows"] == [1, 2]
    targets = batch["decoder_targets"]["encoder_hidden_states"]
    assert targets.shape == (2, 6, 3)
    assert batch["decoder_target_masks"]["encoder_hidden_states"].sum(1).tolist() == [4, 6]
    assert torch.equal(targets[0, :4], items[1]["targets"]["encoder_hidden_states"])
    assert torch.all(targets[0, 4:] == 0)


def test_collator_without_music_rows_has_no_targets():
    batch = Collator(pad_id=0)([{"input_ids": [1, 2], "labels": [1, 2], "media": {}, "targets": None}])
    assert batch["target_rows"] == [] and batch["decoder_targets"] is None
