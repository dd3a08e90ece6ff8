"""Conversation -> token ids: the upstream Alpaca-style template or the tokenizer's chat template.

'm2ugen' is the published prompt exactly (BOS, then the Alpaca text tokenized as one string, no EOS after
replies): SentencePiece tokenizers mark only the start of a string with a space, so the piecewise 'alpaca'
rendering gives different ids around its joins.

Trusted template text is tokenized normally; every user- or model-written text goes through encode_text,
so '[AUD0]' or '</s>' typed by a user stays plain text. Assistant turns that produced music carry their
[AUD0..7] tokens, as training targets do, and every assistant turn ends with EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from choices import check_choice
from mumu.config import PromptTemplate
from mumu.tokens import SpecialIds, encode_text

ALPACA_HEADER = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.\n\n")
_SENTINEL = "\x00MUMU{}\x00"


@dataclass
class Message:
    """One turn of text: role 'user' or 'assistant'; music marks an assistant turn that produced music."""

    role: str
    text: str
    music: bool = False


def _plain(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def _assistant_tail(message: Message, ids: SpecialIds) -> list[int]:
    return (list(ids.audio) if message.music else []) + [ids.eos]


def assistant_tokens(tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, message: Message, template: str) -> list[int]:
    """The ids an assistant turn is written as: its text, [AUD0..n] when it made music, and the end of the turn.

    With 'alpaca' the turn ends with EOS; with 'chat' the template renders its own end-of-turn marker after the
    turn inside a conversation, and a reply being generated (or trained as the last turn) ends with EOS.
    """
    text = encode_text(tokenizer, message.text)
    if template == "alpaca":
        return text + _assistant_tail(message, ids)
    return text + (list(ids.audio) if message.music else [])


def _alpaca(tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, messages: list[Message]) -> list[int]:
    out = [ids.bos, *_plain(tokenizer, ALPACA_HEADER)]
    for message in messages:
        if message.role == "user":
            out += _plain(tokenizer, "### Instruction:\n") + encode_text(tokenizer, message.text)
            out += _plain(tokenizer, "\n\n### Response:")
        else:
            out += assistant_tokens(tokenizer, ids, message, "alpaca") + _plain(tokenizer, "\n\n")
    return out


def _m2ugen(tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, messages: list[Message]) -> list[int]:
    # The template text holds no special-token strings, so encoding it together with the untrusted texts as one
    # string (split_special_tokens) keeps '[AUD0]' typed by a user plain text.
    out, text = [ids.bos], ALPACA_HEADER
    for message in messages:
        if message.role == "user":
            text += f"### Instruction:\n{message.text}\n\n### Response:"
            continue
        text += message.text
        if message.music:  # published targets: reply, a space, then [AUD0..7]
            out += encode_text(tokenizer, text + " ") + list(ids.audio)
            text = ""
        text += "\n\n"
    return out + encode_text(tokenizer, text)


def _chat(tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, messages: list[Message], system: str | None):
    if not tokenizer.chat_template:
        raise ValueError("prompt template 'chat' needs a tokenizer with a chat template; use 'alpaca'")
    # Render with sentinels in place of the texts, then tokenize the texts separately as untrusted input.
    rendered = [{"role": m.role, "content": _SENTINEL.format(i)} for i, m in enumerate(messages)]
    if system:
        rendered.insert(0, {"role": "system", "content": system})
    template = tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
    out: list[int] = []
    for i, message in enumerate(messages):
        before, template = template.split(_SENTINEL.format(i), 1)
        out += _plain(tokenizer, before)
        out += assistant_tokens(tokenizer, ids, message, "chat") if message.role == "assistant" else encode_text(
            tokenizer, message.text)
    return out + _plain(tokenizer, template)


def build_prompt(
    tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, messages: list[Message], template: str = "alpaca",
    system: str | None = None,
) -> list[int]:
    """Token ids of the conversation, ending where the assistant's next reply starts."""
    check_choice(template, PromptTemplate, "template")
    if not messages or messages[-1].role != "user":
        raise ValueError("the conversation must end with a user turn")
    if template == "alpaca":
        return _alpaca(tokenizer, ids, messages)
    if template == "m2ugen":
        return _m2ugen(tokenizer, ids, messages)
    return _chat(tokenizer, ids, messages, system)


def fit_context(
    tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, messages: list[Message], budget: int,
    template: str = "alpaca", system: str | None = None,
) -> tuple[list[int], int]:
    """The prompt for the most recent turns that fit in `budget` tokens, and how many old turns were dropped."""
    for start in [i for i, m in enumerate(messages) if m.role == "user"]:
        prompt = build_prompt(tokenizer, ids, messages[start:], template, system)
        if len(prompt) <= budget:
            return prompt, start
    raise ValueError(f"the latest message alone needs more than the {budget}-token context; shorten it")
