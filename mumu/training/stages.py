"""What each training stage updates, as in the paper, with the injection gates and the new token rows trained."""

from __future__ import annotations

from dataclasses import replace

from mumu.config import TrainableConfig

# Stage 1 aligns the encoders (adapters learn, no decoder targets yet); stage 2 aligns the decoder (the output
# projector learns from decoder text-encoder targets); stage 3 is instruction tuning. The gates, prefix queries,
# LoRA and [AUD] rows train in every stage: upstream froze the gates, so its features never reached the LLM.
STAGES: dict[int, TrainableConfig] = {
    1: TrainableConfig(adapters=True, injection=True, lora=True, norms=True, audio_tokens=True, projector=False),
    2: TrainableConfig(adapters=False, injection=True, lora=True, norms=True, audio_tokens=True, projector=True),
    3: TrainableConfig(adapters=False, injection=True, lora=True, norms=True, audio_tokens=True, projector=False),
}
# The data each stage was designed for (other kinds are allowed; the CLI mentions the mismatch).
STAGE_DATA: dict[int, tuple[str, ...]] = {
    1: ("mucaps", "coco", "muvideo-captions"),
    2: ("mucaps-decoder",),
    3: ("musicqa", "alpaca", "muimage", "muvideo", "muedit"),
}


def stage_trainable(
    stage: int, current: TrainableConfig | None = None, train_adapters: bool = False
) -> TrainableConfig:
    """The trainable set of a stage (adapters added on request); the model's own extra trained LLM tensors
    (current.llm_params) are kept."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage}")
    adapters = STAGES[stage].adapters or train_adapters
    return replace(STAGES[stage], adapters=adapters, llm_params=list(current.llm_params) if current else [])


def untrained_adapters_warning(stage: int, from_profile: str | None, train_adapters: bool) -> str | None:
    """What to say when a stage would learn on top of random, frozen understanding adapters; None when it won't.

    A fresh profile's adapters are random; stages 2 and 3 freeze them, so the media reach the LLM through fixed
    random projections. Those still carry what the encoders hear (a linear probe reads it from them), and with
    standardised features the tiny profile's stage 3 alone learns from them (docs/training.md), but nothing adapts
    the adapters to the task: trained ones are the better start.
    """
    if from_profile is None or train_adapters or STAGES[stage].adapters:
        return None
    return (f"warning: stage {stage} keeps the understanding adapters frozen, and those of a fresh --profile "
            f"{from_profile} are random: the media reach the LLM through fixed random projections. Train stage 1 "
            "first and start from its output (--checkpoint DIR), or pass --train-adapters to train them in this "
            "stage")
