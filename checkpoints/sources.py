"""Resolve a component `source`: 'builtin:NAME' to its folder in the repo; local paths and Hub ids pass through.

A source starting with './' in a saved config.json is relative to the directory holding that config (a converted
checkpoint keeps the encoder copies its adapters were trained with beside its weights); anchor() makes it absolute.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "builtin:"
RELATIVE_PREFIX = "./"
BUILTINS = {"tiny-tokenizer": Path(__file__).resolve().parent / "tiny" / "tokenizer"}
TINY_TOKENIZER = f"{BUILTIN_PREFIX}tiny-tokenizer"  # the tokenizer of every tiny model (LLM and decoder captions)


def resolve_source(source: str) -> str:
    """Map 'builtin:NAME' to its directory; anything else is returned unchanged."""
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        if name not in BUILTINS:
            raise ValueError(f"unknown builtin source {source!r} (known: {sorted(BUILTINS)})")
        return str(BUILTINS[name])
    return source


def anchor(source: str | None, directory: str | Path) -> str | None:
    """A './'-relative source as a path inside directory; anything else unchanged."""
    if source is None or not source.startswith(RELATIVE_PREFIX):
        return source
    return str(Path(directory).resolve() / source[len(RELATIVE_PREFIX) :])
