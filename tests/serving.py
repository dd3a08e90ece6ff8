"""Start the real app (tiny profile, or a given model) on a free loopback port for tests that talk to it over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from app import build_app, serve
from mumu.pipeline import MuMuPipeline


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(profile: str = "tiny", model: str | None = None) -> Iterator[tuple[str, MuMuPipeline]]:
    """The app as app.py serves it, on 127.0.0.1; yields its URL and pipeline, closes it afterwards."""
    demo, pipeline, _ = build_app(profile, model=model)
    port = free_port()
    serve(demo, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", pipeline
    finally:
        demo.close()
