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


def stage_trainable(stage: int, current: TrainableConfig | None = None) -> TrainableConfig:
    """The trainable set of a stage; the model's own extra trained LLM tensors (current.llm_params) are kept."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage}")
    return replace(STAGES[stage], llm_params=list(current.llm_params) if current else [])
