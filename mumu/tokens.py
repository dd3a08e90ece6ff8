"""Tokenizer loading, the [AUD0..7] output tokens, and encoding user text so it can never produce them."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from checkpoints.sources import resolve_source
from mumu.config import LLMConfig


def audio_token_names(count: int) -> list[str]:
    """The output-token strings: [AUD0], [AUD1], ..."""
    return [f"[AUD{i}]" for i in range(count)]


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the model logic needs."""

    bos: int
    eos: int
    pad: int
    audio: tuple[int, ...]


def load_tokenizer(cfg: LLMConfig) -> PreTrainedTokenizerBase:
    """Load the LLM's tokenizer and register the [AUD] tokens as special tokens."""
    source = cfg.tokenizer or cfg.source
    if source is None:
        raise ValueError("llm.tokenizer (or llm.source) must name a tokenizer directory or Hub id")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(source))
    tokenizer.add_special_tokens(
        {"additional_special_tokens": audio_token_names(cfg.num_audio_tokens)},
        replace_extra_special_tokens=False,
    )
    if tokenizer.pad_token is None:
        # Padding is always masked (attention mask, labels -100), so reusing <unk> is safe.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def special_ids(tokenizer: PreTrainedTokenizerBase, num_audio_tokens: int) -> SpecialIds:
    """Collect bos/eos/pad/[AUD] ids, checking the [AUD] tokens are single, distinct tokens."""
    audio = tuple(tokenizer.convert_tokens_to_ids(audio_token_names(num_audio_tokens)))
    if len(set(audio)) != num_audio_tokens or tokenizer.unk_token_id in audio:
        raise ValueError(f"tokenizer does not hold the {num_audio_tokens} [AUD] tokens as single tokens: {audio}")
    return SpecialIds(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, audio)


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids for untrusted text: special-token strings such as '[AUD0]' or '</s>' stay plain text."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
