"""Per-profile default training hyper-parameters: `full` keeps the paper's recipe, `tiny` the one it learns with.

The paper's recipe (lr 1e-4, batch 4 per device, no warmup, cosine to 1%) is sized for a pretrained 7B LLM over
tens of thousands of samples; on the random tiny profile it learns nothing in hundreds of steps (CE stays ~4).
The tiny values were measured with bench/learning_probe.py (docs/training.md lists the runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainDefaults:
    """The hyper-parameters `mumu train` uses when the command line does not set them."""

    lr: float
    batch_size: int
    warmup_steps: int
    min_lr_ratio: float


TRAIN_DEFAULTS: dict[str, TrainDefaults] = {
    "full": TrainDefaults(lr=1e-4, batch_size=4, warmup_steps=0, min_lr_ratio=0.01),
    "tiny": TrainDefaults(lr=3e-3, batch_size=16, warmup_steps=10, min_lr_ratio=0.1),
}
# Models of other profiles (converted upstream checkpoints, custom configs) train with the paper's recipe.
FALLBACK = "full"


def train_defaults(profile: str) -> TrainDefaults:
    """The defaults for a model's profile (the paper's recipe for a profile without its own)."""
    return TRAIN_DEFAULTS.get(profile, TRAIN_DEFAULTS[FALLBACK])


def describe() -> str:
    """One line for --help: every profile's defaults."""
    return "; ".join(f"{name}: " + ", ".join(f"{k}={v:g}" for k, v in asdict(d).items())
                     for name, d in TRAIN_DEFAULTS.items())


def fill_defaults(values: dict[str, float | int | None], profile: str) -> dict[str, float | int]:
    """values with every None replaced by the profile's default of the same name."""
    defaults = asdict(train_defaults(profile))
    return {k: defaults[k] if v is None and k in defaults else v for k, v in values.items()}
