"""Per-browser-session state: one conversation and its files, removed when the session ends."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from mumu.conversation import Conversation
from mumu.pipeline import MuMuPipeline


@dataclass
class Session:
    """What one browser tab owns; nothing user-specific lives in module globals."""

    conversation: Conversation
    tracks: list[str] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)  # chat length before each completed turn, for undo
    sent: list[dict] = field(default_factory=list)  # each completed turn's message, for retry


def new_session(pipeline: MuMuPipeline) -> Session:
    """A fresh session with its own conversation (and output folder under the app's temp area)."""
    return Session(pipeline.new_conversation())


def close_session(session: Session | None) -> None:
    """Delete the session's generated files (called by Gradio when the session expires or the tab closes)."""
    if session is not None:
        shutil.rmtree(session.conversation.out_dir, ignore_errors=True)
