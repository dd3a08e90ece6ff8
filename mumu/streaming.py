"""Generated token ids -> text deltas for streaming, equal in the end to the reply's own decoding."""

from __future__ import annotations

import re
import threading
from typing import Any

from mumu.modeling import MuMuModel

_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class Cancelled(Exception):
    """The caller stopped the turn; the conversation is left as it was before it."""


def byte_fallback_tokens(tokenizer: Any) -> frozenset[int]:
    """Ids of SentencePiece byte-fallback tokens ('<0x41>'), empty for tokenizers without them."""
    if tokenizer is None:
        return frozenset()
    return frozenset(i for piece, i in tokenizer.get_vocab().items() if _BYTE_PIECE.fullmatch(piece))


class TextStream:
    """Turns generated token ids into text deltas (decoding the whole reply so far keeps multi-byte pieces whole)."""

    def __init__(self, model: MuMuModel, emit: Any, stop: threading.Event | None, byte_tokens: frozenset[int]) -> None:
        self.model, self.emit, self.stop = model, emit, stop
        self.ids: list[int] = []
        self.sent = ""
        self.skip = {*model.ids.audio, model.ids.eos}
        self.byte_tokens = byte_tokens

    def __call__(self, row: int, token: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Cancelled("the turn was stopped")
        if self.emit is not None and token not in self.skip:
            self.ids.append(token)
            # A run of byte-fallback tokens decodes as one group: a later byte can turn earlier, already valid
            # characters into U+FFFD. Sending only once the run ends keeps the stream equal to the final text.
            if token not in self.byte_tokens:
                self._send(final=False)

    def flush(self) -> None:
        """Send whatever is left, including a trailing incomplete character, once generation ended."""
        if self.emit is not None:
            self._send(final=True)

    def _send(self, final: bool) -> None:
        text = self.model.tokenizer.decode(self.ids, skip_special_tokens=True)
        # Mid-stream, a trailing U+FFFD is usually half of a multi-byte character: wait for the rest.
        if text.startswith(self.sent) and len(text) > len(self.sent) and (final or not text.endswith("\ufffd")):
            self.emit(text[len(self.sent):])
            self.sent = text
