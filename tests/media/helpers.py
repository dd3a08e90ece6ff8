"""Assertions shared by the media-loading tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from media.errors import MediaError


def rejects(path: Path, problem: str) -> pytest.RaisesExc[MediaError]:
    """Expect a MediaError naming the file and the problem."""
    return pytest.raises(MediaError, match=rf"'{re.escape(path.name)}': .*{problem}")
