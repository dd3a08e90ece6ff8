"""MuMu weights on disk: config.json plus only the tensors this project trains, in safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file, save_file

from mumu.builder import build_model
from mumu.config import CONFIG_NAME, MuMuConfig
from mumu.modeling import MuMuModel

WEIGHTS_NAME = "model.safetensors"


def save_pretrained(model: MuMuModel, directory: str | Path) -> Path:
    """Write config.json and model.safetensors (adapters, gates, prefixes, LoRA, [AUD] rows, projector)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.trained_state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "profile": model.config.profile})
    return directory


def is_hub_id(text: str) -> bool:
    """Whether text (not an existing path) can name a Hub repo rather than a missing local directory."""
    return not Path(text).is_absolute() and not text.startswith((".", "~")) and text.count("/") <= 1


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local directory as is; otherwise a Hub repo id fetched (config and weights only)."""
    path = Path(path_or_id)
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; a MuMu checkpoint is a directory with {CONFIG_NAME}")
    text = str(path_or_id)
    if not is_hub_id(text):
        raise FileNotFoundError(f"no checkpoint directory {text}")
    from mumu.upstream.hub import PUBLISHED, converted_checkpoint  # the converter is only needed for these ids

    if text in PUBLISHED:
        return converted_checkpoint(text)
    try:
        local = snapshot_download(text, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError) as e:
        raise OSError(f"could not get checkpoint {text!r} from the Hugging Face Hub: {e}") from e
    return Path(local)


def load_trained(model: MuMuModel, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the model; any missing, unexpected or mis-shaped key is an error naming it."""
    expected = model.trained_state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [f"{k}: saved {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(weights)) if weights[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            "checkpoint does not match the model config:"
            + (f"\n  missing ({len(missing)}): {missing[:8]}" if missing else "")
            + (f"\n  unexpected ({len(unexpected)}): {unexpected[:8]}" if unexpected else "")
            + (f"\n  shape mismatch: {shapes[:8]}" if shapes else "")
        )
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(weights[name].to(target.dtype))


def from_pretrained(
    path_or_id: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
    config: MuMuConfig | None = None,
) -> MuMuModel:
    """Build the model its config.json describes (components from their sources) and load the trained tensors."""
    directory = resolve_checkpoint(path_or_id)
    config = config or MuMuConfig.load(directory)
    model = build_model(config, device=device, dtype=dtype)
    load_trained(model, load_file(str(directory / WEIGHTS_NAME), device=str(model.device)))
    return model
