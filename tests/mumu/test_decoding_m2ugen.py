"""The published stop rule for converted models: stop at "\\n###" or after [AUD7], keep the reply's first line."""

from __future__ import annotations

import pytest
import torch

from mumu.config import PipelineConfig
from mumu.decoding import DecodeRequest, _m2ugen_stop, _result, _Row
from tests.mumu.conftest import make_model


def _row(model) -> _Row:
    return _Row(model, DecodeRequest([model.ids.eos]), _m2ugen_stop(model))


def _feed(model, row: _Row, tokens: list[int]) -> None:
    hidden = torch.zeros(model.config.adapter.llm_width)
    for token in tokens:
        if row.done:
            break
        row.advance(token, hidden)


def test_stops_at_newline_hashes_and_keeps_the_first_line():
    model = make_model(pipeline__stop_rule="m2ugen")
    tokenizer = model.tokenizer
    reply = tokenizer("A calm piano piece\n### Instruction: more", add_special_tokens=False).input_ids
    row = _row(model)
    _feed(model, row, reply)
    assert row.done
    assert len(row.tokens) < len(reply)  # stopped at "\n###", before the rest
    assert _result(model, row).text == "A calm piano piece"


def test_stops_after_the_last_audio_token_without_eos():
    model = make_model(pipeline__stop_rule="m2ugen")
    words = model.tokenizer("Here is a music", add_special_tokens=False).input_ids
    row = _row(model)
    _feed(model, row, [*words, *model.ids.audio, *words])
    assert row.done and row.tokens == [*words, *model.ids.audio]
    assert _result(model, row).audio_hidden.shape == (8, model.config.adapter.llm_width)


def test_unknown_stop_rule_is_rejected_when_the_config_is_made():
    with pytest.raises(ValueError, match=r"PipelineConfig\.stop_rule must be one of eos, m2ugen, got 'newline'"):
        PipelineConfig(stop_rule="newline")
