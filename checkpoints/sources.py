"""Resolve a component `source`: 'builtin:NAME' to its folder in the repo; local paths and Hub ids pass through."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "builtin:"
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
