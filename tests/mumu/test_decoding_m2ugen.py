"""The published stop rule for converted models: stop at "\\n###" or after [AUD7], keep the reply's first line."""

from __future__ import annotations

import pytest
import torch

from mumu.decoding import GenerationSettings, _m2ugen_stop, _result, _Rows, generate
from tests.mumu.conftest import make_model, prompt_ids


def _feed(model, rows: _Rows, tokens: list[int]) -> None:
    hidden = torch.zeros(1, model.config.adapter.llm_width)
    for token in tokens:
        if rows.done[0]:
            break
        rows.advance(torch.tensor([token]), hidden)


def test_stops_at_newline_hashes_and_keeps_the_first_line():
    model = make_model(pipeline__stop_rule="m2ugen")
    tokenizer = model.tokenizer
    reply = tokenizer("A calm piano piece\n### Instruction: more", add_special_tokens=False).input_ids
    rows = _Rows([GenerationSettings()], list(model.ids.audio), model.ids.eos, _m2ugen_stop(model))
    _feed(model, rows, reply)
    assert rows.done[0]
    assert len(rows.tokens[0]) < len(reply)  # stopped at "\n###", before the rest
    assert _result(model, rows, 0).text == "A calm piano piece"


def test_stops_after_the_last_audio_token_without_eos():
    model = make_model(pipeline__stop_rule="m2ugen")
    words = model.tokenizer("Here is a music", add_special_tokens=False).input_ids
    rows = _Rows([GenerationSettings()], list(model.ids.audio), model.ids.eos, _m2ugen_stop(model))
    _feed(model, rows, [*words, *model.ids.audio, *words])
    assert rows.done[0] and rows.tokens[0] == [*words, *model.ids.audio]
    assert _result(model, rows, 0).audio_hidden.shape == (8, model.config.adapter.llm_width)


def test_unknown_stop_rule_is_rejected():
    model = make_model(pipeline__stop_rule="newline")
    with pytest.raises(ValueError, match="stop_rule must be one of"):
        generate(model, [prompt_ids(model)], settings=GenerationSettings(max_new_tokens=2))
