"""A local Hugging Face Hub for tests: huggingface_hub's own client (hf_hub_download, snapshot_download, model_info)
talks to it through an in-process httpx transport, so the cache it writes is laid out exactly as the client lays it
out (blobs, refs, snapshots), and offline mode reads that cache with the client's own code.

Only the network call is replaced: the routes below answer as huggingface.co does for the requests the client makes
(model info, the file tree, HEAD and GET of /resolve/), with the headers it reads (X-Repo-Commit, ETag,
Content-Length, X-Error-Code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook


class LocalHub:
    """Repos of local files, served to huggingface_hub; `requests` records every (method, path) it answered."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Path]] = {}
        self.requests: list[tuple[str, str]] = []
        self.gated: set[str] = set()  # repos whose licence this client has not accepted (auth-check answers 403)

    def add(self, repo_id: str, files: dict[str, Path] | Path) -> None:
        """A repo from {name in repo: local file} or from every file under a directory."""
        if isinstance(files, Path):
            files = {str(p.relative_to(files)): p for p in sorted(files.rglob("*")) if p.is_file()}
        self.repos[repo_id] = dict(files)

    def downloads(self, repo_id: str) -> list[str]:
        """Files of repo_id fetched with GET so far."""
        prefix = f"/{repo_id}/resolve/"
        return [path.split("/", 5)[-1] for method, path in self.requests if method == "GET" and path.startswith(prefix)]

    @contextmanager
    def serving(self) -> Iterator[LocalHub]:
        """huggingface_hub's client talks to this hub inside the block (and to nothing else)."""
        set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(self._handle), follow_redirects=True,
                                                 event_hooks={"request": [hf_request_event_hook]}))
        try:
            yield self
        finally:
            set_client_factory(default_client_factory)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if repo_id in self.gated:
                return _error(403, "GatedRepo")
            if repo_id not in self.repos:
                return _error(404, "RepositoryNotFound")
            if rest == ["auth-check"]:
                return httpx2.Response(200, json={})
            if rest[:1] == ["tree"]:
                return httpx2.Response(200, json=[{"type": "file", "path": name, "size": file.stat().st_size,
                                                   "oid": _digest(file)[:40]}
                                                  for name, file in self.repos[repo_id].items()])
            return httpx2.Response(200, json=self._info(repo_id))
        repo_id, rest = "/".join(parts[:2]), parts[2:]
        if repo_id not in self.repos or rest[:1] != ["resolve"]:
            return _error(404, "RepositoryNotFound")
        file = self.repos[repo_id].get("/".join(rest[2:]))
        if file is None:
            return _error(404, "EntryNotFound")
        headers = {constants.HUGGINGFACE_HEADER_X_REPO_COMMIT: _commit(repo_id), "ETag": f'"{_digest(file)}"',
                   "Content-Length": str(file.stat().st_size)}
        return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else file.read_bytes())

    def _info(self, repo_id: str) -> dict:
        siblings = [{"rfilename": name, "size": file.stat().st_size} for name, file in self.repos[repo_id].items()]
        return {"id": repo_id, "modelId": repo_id, "sha": _commit(repo_id), "private": False, "siblings": siblings}


def _error(status: int, code: str) -> httpx2.Response:
    return httpx2.Response(status, headers={"X-Error-Code": code}, json={"error": code})


def _commit(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def _digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()

