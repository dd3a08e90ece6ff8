"""Streaming text deltas: the concatenated stream equals the reply's own decoding."""

from __future__ import annotations

import threading

import pytest

from mumu.streaming import Cancelled, TextStream, byte_fallback_tokens


def test_streamed_text_equals_the_reply_across_byte_fallback_runs(model):
    tokenizer = model.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<0x23>", "<0xE1>", "p", "<0xC3>", "<0xA9>", "x"])
    # '#' alone is valid, but decoded in one run with an incomplete 0xE1 it becomes U+FFFD
    assert tokenizer.decode(ids[:1]) == "#" and not tokenizer.decode(ids[:3]).startswith("#")
    deltas: list[str] = []
    stream = TextStream(model, deltas.append, None, byte_fallback_tokens(tokenizer))
    for token in ids:
        stream(0, token)
    stream.flush()
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)
    assert deltas[-1].endswith("éx")


def test_plain_tokens_stream_one_by_one_and_stop_cancels(model):
    tokenizer = model.tokenizer
    ids = tokenizer("calm piano music", add_special_tokens=False).input_ids
    deltas: list[str] = []
    stream = TextStream(model, deltas.append, None, byte_fallback_tokens(tokenizer))
    for token in [*ids, *model.ids.audio, model.ids.eos]:
        stream(0, token)
    stream.flush()
    assert len(deltas) == len(ids) and "".join(deltas) == tokenizer.decode(ids)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        TextStream(model, deltas.append, stop, frozenset())(0, ids[0])
