"""A Hugging Face cache filled the way the hub client fills it, from local "remote" repo directories.

No network: the fake `snapshot_download` lists a local directory as the Hub would list a repo, filters it with the
client's own pattern matcher, lays each file into the cache with the client's own cache functions (blob named by
content hash, snapshot symlink, refs/main) and then returns what the real `snapshot_download` finds there with
local_files_only, so the code under test reads a genuine cache layout.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants, scan_cache_dir
from huggingface_hub.file_download import (
    _cache_commit_hash_for_specific_revision,
    _create_symlink,
    repo_folder_name,
)
from huggingface_hub.utils import filter_repo_objects

REVISION = "main"


def commit_of(remote: Path) -> str:
    """A stable 40-hex commit hash for a remote directory's content."""
    digest = hashlib.sha1()
    for path in sorted(p for p in remote.rglob("*") if p.is_file()):
        digest.update(path.relative_to(remote).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_files(cache: Path, repo_id: str, remote: Path, names: list[str]) -> Path:
    """Lay `names` of the remote repo into the cache as hf_hub_download does; the snapshot folder."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = commit_of(remote)
    for name in names:
        data = (remote / name).read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        pointer = storage / "snapshots" / commit / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(pointer), new_blob=False)
    _cache_commit_hash_for_specific_revision(str(storage), REVISION, commit)
    return storage / "snapshots" / commit


class FakeHub:
    """Serves local directories as Hub repos into a cache; records every download request."""

    def __init__(self, cache: Path, repos: dict[str, Path]) -> None:
        self.cache = cache
        self.repos = repos
        self.requests: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        self._real = huggingface_hub.snapshot_download

    def snapshot_download(self, repo_id: str, *, allow_patterns=None, **kwargs) -> str:
        """Download (into the cache) the files of repo_id matching allow_patterns, then read the cache back."""
        remote = self.repos[repo_id]
        listing = [p.relative_to(remote).as_posix() for p in sorted(remote.rglob("*")) if p.is_file()]
        wanted = list(filter_repo_objects(listing, allow_patterns=allow_patterns))
        self.requests.append((repo_id, tuple(allow_patterns or ()), tuple(wanted)))
        cache_files(self.cache, repo_id, remote, wanted)
        return self._real(repo_id, allow_patterns=allow_patterns, local_files_only=True, cache_dir=str(self.cache))

    def cached_files(self, repo_id: str) -> set[str]:
        """What the client's own cache scanner sees of repo_id."""
        info = scan_cache_dir(self.cache)
        repo = next(r for r in info.repos if r.repo_id == repo_id)
        return {f.file_name for rev in repo.revisions for f in rev.files}


def use_cache(monkeypatch, cache: Path, offline: bool) -> None:
    """Point the hub client (and transformers through it) at cache; offline forbids any network call."""
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def copy_tree(source: Path, target: Path) -> Path:
    """A remote repo directory made from a saved local one."""
    shutil.copytree(source, target)
    return target
