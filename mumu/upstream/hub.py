"""The published Hub checkpoints: downloaded and converted once into a local cache, then loaded from there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from mumu.config import CONFIG_NAME
from mumu.upstream.convert import REPORT_NAME, WEIGHTS_NAME, convert

PUBLISHED_FILE = "checkpoint.pth"
PUBLISHED = {  # Hub id -> the decoder its projector was trained for
    "M2UGen/M2UGen-MusicGen-small": "facebook/musicgen-small",
    "M2UGen/M2UGen-MusicGen-medium": "facebook/musicgen-medium",
    "M2UGen/M2UGen-AudioLDM2": "cvssp/audioldm2-music",
}
DEFAULT_LLM = "meta-llama/Llama-2-7b-hf"
LLM_ENV = "MUMU_UPSTREAM_LLM"  # the base LLM published ids are converted against, else DEFAULT_LLM
CACHE_ENV = "MUMU_CONVERTED_CACHE"


def cache_root() -> Path:
    """Where converted copies live: $MUMU_CONVERTED_CACHE, else <HF_HOME>/mumu-converted."""
    return Path(os.environ.get(CACHE_ENV) or Path(constants.HF_HOME) / "mumu-converted")


def converted_dir(repo_id: str) -> Path:
    """The cache directory of one published checkpoint's converted copy."""
    return cache_root() / repo_id.replace("/", "--")


def base_llm() -> str:
    """The base LLM a published checkpoint is converted against: $MUMU_UPSTREAM_LLM, else Llama-2-7B."""
    return os.environ.get(LLM_ENV) or DEFAULT_LLM


def converted_copy(repo_id: str) -> Path | None:
    """The converted copy of a published id when it is complete (all the converter writes), else None."""
    target = converted_dir(repo_id)
    complete = all((target / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME, REPORT_NAME))
    return target if complete else None


def converted_checkpoint(repo_id: str, llm: str | None = None) -> Path:
    """A MuMu checkpoint directory for a published Hub id: converted on first use, reused afterwards."""
    if repo_id not in PUBLISHED:
        raise ValueError(f"{repo_id!r} is not a published M2UGen checkpoint (known: {sorted(PUBLISHED)})")
    done = converted_copy(repo_id)
    if done is not None:
        return done
    target = converted_dir(repo_id)
    try:
        path = hf_hub_download(repo_id, PUBLISHED_FILE)
    except (HfHubHTTPError, LocalEntryNotFoundError) as e:
        raise OSError(f"could not download {PUBLISHED_FILE} of {repo_id}: {e}") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    # Converted next to the target and renamed into place, so an interrupted run never leaves a half copy.
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        convert(path, llm or base_llm(), work, decoder=PUBLISHED[repo_id])
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
