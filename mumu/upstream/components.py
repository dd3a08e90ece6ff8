"""The checkpoint's own copy of a frozen component, written as a local Hugging Face directory.

When a published file's MERT / ViT / ViViT / MusicGen differs from the given Hub component (in anything but
tensors no forward reads), the adapters were trained on the file's copy, so the converted model must run that
copy. It is written in the Hub component's own format (its config and processor files, its tensor names) so that
the component's usual from_pretrained loads it, legacy names and all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from mumu.upstream.compare import (
    ContentIndex,
    component_dir,
    local_dir,
    skipped,
    weight_files,
    weight_loaders,
)

COMPONENTS_DIR = "components"
WEIGHTS_FILE = "model.safetensors"
# Everything a component's from_pretrained reads besides its weights: configs, processor and tokenizer files.
SUPPORT_FILES = ["*.json", "*.model", "*.txt"]
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def local_source(name: str) -> str:
    """The config source of a written copy: relative to the converted checkpoint's directory."""
    return f"./{COMPONENTS_DIR}/{name}"


def write_checkpoint_copy(
    component: str, source: str, tensors: dict[str, torch.Tensor], out: Path
) -> Path:
    """Write out/components/<component>: the source's files with the checkpoint's tensors in place of its own."""
    source_dir = component_dir(source)
    folders = sorted({str(p.parent.relative_to(source_dir)) for p in weight_files(source_dir)})
    if folders != ["."]:
        # A pipeline (AudioLDM2's unet/, vae/, ...) keeps one model per folder; one flat file cannot stand in.
        raise ValueError(f"the checkpoint's {component} differs from {source}, whose weights sit in the folders "
                         f"{folders}: only single-folder components can be replaced by the checkpoint's copy; pass "
                         f"the component it was trained with (--{component} DIR_OR_ID)")
    loaders = weight_loaders(source_dir)
    weights = _placed(component, source, tensors, loaders)
    target = out / COMPONENTS_DIR / component
    target.mkdir(parents=True, exist_ok=True)
    _copy_configs(local_dir(source, SUPPORT_FILES), target)
    save_file(weights, str(target / WEIGHTS_FILE), metadata={"format": "pt", "copied_from": "checkpoint"})
    return target


def _placed(
    component: str, source: str, tensors: dict[str, torch.Tensor], loaders: dict
) -> dict[str, torch.Tensor]:
    """Every tensor of the source under its own name: the checkpoint's value where it holds that tensor."""
    names = _name_map(list(loaders))
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for name, tensor in tensors.items():
        if skipped(component, name):
            continue
        theirs = names.get(name)
        own = loaders[theirs]() if theirs is not None else None
        if own is not None and tuple(tensor.shape) == tuple(own.shape):
            out[theirs] = _wider(tensor, own)
        else:
            unplaced.append(name)
    if unplaced:
        # A tensor under a name the source lacks is fine when the source holds the same values elsewhere.
        index = ContentIndex(loaders)
        lost = [name for name in unplaced if index.find(name, tensors[name]) is None]
        if lost:
            raise ValueError(
                f"the checkpoint's {component} differs from {source}, but {len(lost)} of its tensors have no "
                f"counterpart by name or value in {source}, so its copy cannot be written in that format: "
                f"{lost[:8]}; pass the component it was trained with (--{component} DIR_OR_ID)")
    for name, load in loaders.items():
        if name not in out:
            out[name] = load().contiguous()
    return out


def _wider(tensor: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The checkpoint's values in the wider of the two dtypes (exact), so the copy loads as the source would."""
    if tensor.dtype.is_floating_point and own.dtype.is_floating_point and own.element_size() > tensor.element_size():
        return tensor.to(own.dtype).contiguous()
    return tensor.detach().clone().contiguous()


def _name_map(source_names: list[str]) -> dict[str, str]:
    """Checkpoint name -> the source's name of that tensor: the same name, else the one name that ends with it.

    A task-head checkpoint stores the base model under a prefix (google/vit-base-patch16-224 holds "vit.*" beside
    its classifier) while upstream's state dict holds the bare base model.
    """
    by_suffix: dict[str, list[str]] = {}
    for full in source_names:
        parts = full.split(".")
        for i in range(1, len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), []).append(full)
    names = {suffix: fulls[0] for suffix, fulls in by_suffix.items() if len(fulls) == 1}
    names.update({full: full for full in source_names})
    return names


def _copy_configs(source_dir: Path, target: Path) -> None:
    for path in sorted(source_dir.rglob("*")):
        # Weights (and a sharded index, which would name shards not written here) come from _placed.
        if path.is_file() and path.suffix not in _WEIGHT_SUFFIXES and not path.name.endswith(".index.json"):
            destination = target / path.relative_to(source_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)  # follows the Hub cache's symlinks to the blobs
