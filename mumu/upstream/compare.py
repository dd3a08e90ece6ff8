"""Read a pretrained component's weight files lazily, and check a checkpoint's copy of it against them by content.

Names cannot be trusted across versions (transformers 5 renamed many ViT/ViViT modules, EnCodec's weight norm is
stored differently, MERT ran as remote code), so a checkpoint tensor counts as matching when the component holds
a tensor of the same shape and the same values (compared in the lower of the two precisions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open

from checkpoints.sources import resolve_source

Loader = Callable[[], torch.Tensor]
# Buffers the published (transformers 4.35) state dicts hold and the Hub files do not: nothing to compare.
SKIPPED_SUFFIXES = ("embed_positions.weights",)
_SIGNATURE_VALUES = 16


def local_dir(source: str, patterns: list[str]) -> Path:
    """A local directory as is; a Hub id downloaded (only files matching patterns) into the Hugging Face cache."""
    path = Path(resolve_source(source))
    if path.is_dir():
        return path
    if path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"no directory {source} (and it is not a Hugging Face Hub id)")
    return Path(snapshot_download(source, allow_patterns=patterns))


def weight_loaders(directory: Path) -> dict[str, Loader]:
    """Every tensor in the directory's model weight files (safetensors, else .bin), loaded only when called."""
    files = sorted(p for p in directory.rglob("*.safetensors") if "model" in p.name)
    if files:
        loaders: dict[str, Loader] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
            for key in keys:
                loaders[key] = _safetensors_loader(file, key)
        return loaders
    bins = sorted(p for p in directory.rglob("*.bin") if "model" in p.name)
    if not bins:
        raise FileNotFoundError(f"{directory} holds no model weight files (*model*.safetensors or *model*.bin)")
    loaders = {}
    for file in bins:
        state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        loaders.update({key: (lambda t=tensor: t) for key, tensor in state.items()})
    return loaders


def _safetensors_loader(file: Path, key: str) -> Loader:
    def load() -> torch.Tensor:
        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key)

    return load


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes and equal values in the lower of the two precisions (fp16 copies of fp32 weights match)."""
    if a.shape != b.shape:
        return False
    low = a.dtype if a.element_size() <= b.element_size() else b.dtype
    if not low.is_floating_point:
        return torch.equal(a, b)
    return torch.equal(a.to(low), b.to(low))


def _signature(t: torch.Tensor) -> tuple:
    head = t.reshape(-1)[:_SIGNATURE_VALUES]
    values = head.to(torch.float16).tolist() if t.dtype.is_floating_point else head.tolist()
    return (tuple(t.shape), tuple(values))


@dataclass
class ComponentCheck:
    """How a checkpoint's copy of a frozen component compares with the given one."""

    component: str
    source: str
    checked: int = 0
    differing: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """Every checked tensor was found in the given component."""
        return not self.differing

    def summary(self) -> dict:
        """JSON-able result."""
        return {"source": self.source, "checked": self.checked, "differing": len(self.differing),
                "differing_keys": self.differing[:10], "matches": self.matches}


def check_component(
    component: str, source: str, tensors: dict[str, torch.Tensor], patterns: list[str]
) -> ComponentCheck:
    """Look for each checkpoint tensor (name -> tensor) among the component's tensors, by shape and values."""
    loaders = weight_loaders(local_dir(source, patterns))
    index: dict[tuple, list[Loader]] = {}
    for loader in loaders.values():
        index.setdefault(_signature(loader()), []).append(loader)
    result = ComponentCheck(component, source)
    for name, tensor in tensors.items():
        if name.endswith(SKIPPED_SUFFIXES):
            continue
        result.checked += 1
        candidates = index.get(_signature(tensor), [])
        if not any(same_values(tensor, load()) for load in candidates):
            result.differing.append(name)
    return result


def iter_prefixed(state: dict[str, torch.Tensor], prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(name without prefix, tensor) for the state's keys under prefix."""
    for key, tensor in state.items():
        if key.startswith(prefix):
            yield key[len(prefix):], tensor
