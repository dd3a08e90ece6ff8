"""The one error type raised for any unusable media input."""

from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """A media file cannot be used: the message names the file, the problem and what is accepted."""

    def __init__(self, path: str | Path | None, problem: str, accepted: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.accepted = accepted
        where = f"'{Path(self.path).name}'" if self.path else "input"
        message = f"{where}: {problem}"
        if accepted:
            message += f" (accepted: {accepted})"
        super().__init__(message)
