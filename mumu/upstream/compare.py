"""Read a pretrained component's weight files lazily, and check a checkpoint's copy of it against them by content.

Names cannot be trusted across versions (transformers 5 renamed many ViT/ViViT modules, EnCodec's weight norm is
stored differently, MERT ran as remote code), so a checkpoint tensor counts as matching when the component holds
a tensor of the same shape and the same values (compared in the lower of the two precisions).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open

from checkpoints.sources import resolve_source

Loader = Callable[[], torch.Tensor]
# Tensors a published state dict holds that no forward of ours reads, so there is nothing to compare:
# transformers 4.35 buffers the Hub files do not hold, and the pooler that upstream built with
# add_pooling_layer=True (randomly initialised, never trained, never run: the adapters read the token states).
SKIPPED_SUFFIXES = ("embed_positions.weights",)
SKIPPED_PREFIXES = {"vit": ("pooler.",), "vivit": ("pooler.",)}
# What a component's weights may come as: safetensors where the repo has them, else PyTorch .bin files (the
# published m-a-p/MERT-v1-330M and google/vivit-b-16x2-kinetics400 hold only pytorch_model.bin).
SAFETENSORS_FILES = ["*.json", "*model*.safetensors"]
BIN_FILES = ["*.json", "*model*.bin"]
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_SIGNATURE_VALUES = 16


def skipped(component: str, name: str) -> bool:
    """True for a tensor of this component that no forward reads (not compared, not written)."""
    return name.endswith(SKIPPED_SUFFIXES) or name.startswith(SKIPPED_PREFIXES.get(component, ()))


def local_dir(source: str, patterns: list[str]) -> Path:
    """A local directory as is; a Hub id downloaded (only files matching patterns) into the Hugging Face cache."""
    path = Path(resolve_source(source))
    if path.is_dir():
        return path
    if path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"no directory {source} (and it is not a Hugging Face Hub id)")
    return Path(snapshot_download(source, allow_patterns=patterns))


def component_dir(source: str) -> Path:
    """A component's configs and weights: safetensors where the repo publishes them, else its .bin files.

    Asking for safetensors first means a repo that has both is fetched once, in the safe format; a .bin-only repo
    costs one more listing. Offline, both calls return the cached snapshot, whichever format it holds.
    """
    directory = local_dir(source, SAFETENSORS_FILES)
    if weight_files(directory):
        return directory
    directory = local_dir(source, BIN_FILES)
    if not weight_files(directory):
        raise FileNotFoundError(f"{source} holds no model weight files (*model*.safetensors or *model*.bin)")
    return directory


def weight_files(directory: Path) -> list[Path]:
    """The directory's model weight files: its *model*.safetensors, else its *model*.bin."""
    files = sorted(p for p in directory.rglob("*.safetensors") if "model" in p.name)
    return files or sorted(p for p in directory.rglob("*.bin") if "model" in p.name)


def weight_loaders(directory: Path) -> dict[str, Loader]:
    """Every tensor in the directory's model weight files (safetensors, else .bin), loaded only when called."""
    files = weight_files(directory)
    if not files:
        raise FileNotFoundError(f"{directory} holds no model weight files (*model*.safetensors or *model*.bin)")
    loaders: dict[str, Loader] = {}
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
            loaders.update({key: _safetensors_loader(file, key) for key in keys})
        else:
            # Restricted to tensors (a .bin is a pickle, never unpickled with code allowed) and memory-mapped
            # unless it predates torch's zip format, which mmap needs.
            state = torch.load(file, map_location="cpu", mmap=zipfile.is_zipfile(file), weights_only=True)
            loaders.update({key: (lambda t=tensor: t) for key, tensor in state.items()})
    return loaders


def _safetensors_loader(file: Path, key: str) -> Loader:
    def load() -> torch.Tensor:
        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key)

    return load


def _lower(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    return a.dtype if a.element_size() <= b.element_size() else b.dtype


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes and equal values in the lower of the two precisions (fp16/bf16 copies of fp32 weights match)."""
    if a.shape != b.shape:
        return False
    low = _lower(a, b)
    if not low.is_floating_point:
        return torch.equal(a, b)
    return torch.equal(a.to(low), b.to(low))


def _signature(t: torch.Tensor, dtype: torch.dtype | None) -> tuple:
    head = t.reshape(-1)[:_SIGNATURE_VALUES]
    values = head.to(dtype).tolist() if dtype is not None else head.tolist()
    return (str(dtype), tuple(t.shape), tuple(values))


class ContentIndex:
    """A component's tensors, found by shape and leading values in each precision a copy of them may have."""

    def __init__(self, loaders: dict[str, Loader]) -> None:
        self.loaders = loaders
        self._index: dict[tuple, list[str]] = {}
        for name, load in loaders.items():
            tensor = load()
            dtypes = [d for d in _FLOAT_DTYPES if d.itemsize <= tensor.element_size()] \
                if tensor.dtype.is_floating_point else [None]
            for dtype in dtypes:
                self._index.setdefault(_signature(tensor, dtype), []).append(name)

    def find(self, name: str, tensor: torch.Tensor) -> str | None:
        """The component's name of a tensor equal to this one (its own name first), or None."""
        if name in self.loaders and same_values(tensor, self.loaders[name]()):
            return name
        dtypes = [d for d in _FLOAT_DTYPES if d.itemsize <= tensor.element_size()] \
            if tensor.dtype.is_floating_point else [None]
        for dtype in dtypes:
            for candidate in self._index.get(_signature(tensor, dtype), []):
                if same_values(tensor, self.loaders[candidate]()):
                    return candidate
        return None


@dataclass
class ComponentCheck:
    """How a checkpoint's copy of a frozen component compares with the given one."""

    component: str
    source: str
    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """Every checked tensor was found in the given component."""
        return not self.differing

    def summary(self) -> dict:
        """JSON-able result."""
        return {"source": self.source, "checked": self.checked, "skipped_unused": self.skipped[:10],
                "differing": len(self.differing), "differing_keys": self.differing[:10], "matches": self.matches}


def check_component(component: str, source: str, tensors: dict[str, torch.Tensor]) -> ComponentCheck:
    """Look for each checkpoint tensor (name -> tensor) among the component's tensors, by shape and values."""
    index = ContentIndex(weight_loaders(component_dir(source)))
    result = ComponentCheck(component, source)
    for name, tensor in tensors.items():
        if skipped(component, name):
            result.skipped.append(name)
            continue
        result.checked += 1
        if index.find(name, tensor) is None:
            result.differing.append(name)
    return result


def iter_prefixed(state: dict[str, torch.Tensor], prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(name without prefix, tensor) for the state's keys under prefix."""
    for key, tensor in state.items():
        if key.startswith(prefix):
            yield key[len(prefix):], tensor
