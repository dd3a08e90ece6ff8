"""The published stop rule for converted models: stop at "\\n###" or after [AUD7], keep the reply's first line."""

from __future__ import annotations

import pytest
import torch

from mumu.config import PipelineConfig
from mumu.decoding import GenerationSettings, _m2ugen_stop, _result, _Rows
from tests.mumu.conftest import make_model


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


def test_unknown_stop_rule_is_rejected_when_the_config_is_made():
    with pytest.raises(ValueError, match=r"PipelineConfig\.stop_rule must be one of eos, m2ugen, got 'newline'"):
        PipelineConfig(stop_rule="newline")
