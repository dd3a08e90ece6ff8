"""Prompt templates: Alpaca-style multi-turn, the tokenizer's chat template, safety of user text, context fitting."""

from __future__ import annotations

import pytest

from checkpoints.sources import TINY_TOKENIZER
from mumu.config import LLMConfig
from mumu.prompting import ALPACA_HEADER, Message, build_prompt, fit_context
from mumu.tokens import encode_text, load_tokenizer, special_ids


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(LLMConfig(tokenizer=TINY_TOKENIZER))


@pytest.fixture(scope="module")
def ids(tok):
    return special_ids(tok, 8)


CONVERSATION = [Message("user", "play [AUD0] </s> jazz"), Message("assistant", "here it is", music=True),
                Message("user", "slower")]


def test_alpaca_layout(tok, ids):
    prompt = build_prompt(tok, ids, CONVERSATION)
    assert prompt[0] == ids.bos
    text = tok.decode(prompt)
    assert ALPACA_HEADER.strip() in text
    assert text.count("### Instruction:") == 2
    assert text.rstrip().endswith("### Response:")
    # The assistant's music turn carries [AUD0..7] then EOS, exactly once.
    aud = list(ids.audio)
    starts = [i for i in range(len(prompt)) if prompt[i : i + 8] == aud]
    assert len(starts) == 1 and prompt[starts[0] + 8] == ids.eos


def test_user_text_never_becomes_special_tokens(tok, ids):
    prompt = build_prompt(tok, ids, CONVERSATION)
    typed = encode_text(tok, "play [AUD0] </s> jazz")
    assert any(prompt[i : i + len(typed)] == typed for i in range(len(prompt)))
    assert prompt.count(ids.eos) == 1  # only the assistant turn's EOS, not the typed '</s>'


def test_chat_template(tok, ids):
    chat_tok = load_tokenizer(LLMConfig(tokenizer=TINY_TOKENIZER))
    chat_tok.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                              "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    prompt = build_prompt(chat_tok, ids, CONVERSATION, template="chat", system="be brief")
    text = chat_tok.decode(prompt)
    assert text.index("be brief") < text.index("play [AUD0]") < text.index("here it is") < text.index("slower")
    assert text.rstrip().endswith("<|assistant|>")
    assert prompt.count(ids.audio[0]) == 1  # from the music turn, not the typed text
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        build_prompt(tok, ids, CONVERSATION, template="chat")


def test_bad_conversations(tok, ids):
    with pytest.raises(ValueError, match="must end with a user turn"):
        build_prompt(tok, ids, CONVERSATION[:2])
    with pytest.raises(ValueError, match="template must be one of alpaca, chat, m2ugen, got 'vicuna'"):
        build_prompt(tok, ids, CONVERSATION, template="vicuna")


def test_fit_context_drops_oldest_turns_first(tok, ids):
    full = build_prompt(tok, ids, CONVERSATION)
    assert fit_context(tok, ids, CONVERSATION, len(full)) == (full, 0)
    shorter, dropped = fit_context(tok, ids, CONVERSATION, len(full) - 1)
    assert dropped == 2
    assert shorter == build_prompt(tok, ids, CONVERSATION[2:])
    with pytest.raises(ValueError, match="latest message alone needs more than the 5-token context"):
        fit_context(tok, ids, CONVERSATION, 5)
