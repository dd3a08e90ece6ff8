"""ZeroGPU: how long a turn may hold the GPU (from the music it asks for), and the spaces.GPU hook that reserves it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import soundfile as sf

from demo.session import Session
from mumu.pipeline import MuMuPipeline

# Seconds of GPU time. Generous on purpose: ZeroGPU aborts a call that outlives its reservation, while a larger
# reservation only lowers the queue priority (a user's quota is charged for the time actually used).
MIN_SECONDS = 60  # ZeroGPU's default; covers encoding the attachments and the LLM's reply
MAX_SECONDS = 600
TEXT_SECONDS = 30
MUSICGEN_SECONDS_PER_SECOND = 4.0  # autoregressive: 50 steps per second of music, twice the batch with guidance
AUDIOLDM2_SECONDS_PER_STEP = 0.3  # one UNet pass per step for a 10 s clip (two with guidance)...
AUDIOLDM2_STEP_SECONDS_PER_SECOND = 0.05  # ...and the latent grows with the length
LOAD_SECONDS = 120  # a decoder used for the first time is read from disk or downloaded inside the reservation
SCORE_SECONDS = 300  # scoring a video: analysis and fitting, plus the music when the model makes it


def gpu_seconds(music: str, seconds: float, decoder: str, steps: float, loaded: bool = True) -> int:
    """A generous but bounded GPU reservation for one turn making `seconds` of music with `decoder`."""
    total = float(TEXT_SECONDS)
    if music != "never":  # "auto" may make music: reserve for it
        if decoder == "audioldm2":
            total += max(1.0, steps) * (AUDIOLDM2_SECONDS_PER_STEP + AUDIOLDM2_STEP_SECONDS_PER_SECOND * seconds)
        else:
            total += MUSICGEN_SECONDS_PER_SECOND * seconds
        if not loaded:
            total += LOAD_SECONDS
    return int(min(MAX_SECONDS, max(MIN_SECONDS, round(total))))


def turn_seconds(
    pipeline: MuMuPipeline, message: dict[str, Any] | None, session: Session | None, music: str, duration: float,
    seed: float, random_seed: bool, guidance: float, temperature: float, top_p: float, steps: float,
    edit: str | None, fit_video: bool = True, decoder: str | None = None,
) -> int:
    """gpu_seconds for a /chat or /retry call, from the same arguments the handler gets (bad values: the minimum)."""
    try:
        kind = decoder or pipeline.config.decoder.kind
        limit = pipeline.config.decoder.max_duration
        seconds = min(float(duration), limit)
        conv = session.conversation if session is not None else None
        files = [f if isinstance(f, str) else f.get("path") for f in (message or {}).get("files") or []]
        has_video = any(pipeline.classify(f) == "video" for f in files) or (conv is not None and "video" in conv.active)
        if fit_video and has_video:  # the music may last as long as the clip
            seconds = limit
        if edit and conv is not None and any(item.id == edit for item in conv.media) and \
                pipeline.edit_mode(kind) == "continue":
            # continuation: the decoder also re-reads the source, and the total is what it generates
            seconds = min(limit, seconds + sf.info(str(conv.item(edit).path)).duration)
        return gpu_seconds(music, seconds, kind, float(steps), loaded=kind in pipeline.loaded_decoders)
    except (TypeError, ValueError, OSError):  # the handler refuses the bad input at once
        return MIN_SECONDS


def on_gpu(fn: Callable[..., Any], duration: Callable[..., int] | int = 120) -> Callable[..., Any]:
    """On Hugging Face ZeroGPU, run fn with a GPU attached (spaces.GPU); elsewhere fn unchanged.

    duration: seconds, or a function of fn's arguments returning them (spaces.GPU calls it before each call).
    """
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def zero_gpu() -> bool:
    """Whether this runs on a ZeroGPU Space (the `spaces` package reads the same variable)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def chat_concurrency(pipeline: MuMuPipeline) -> int:
    """How many chat calls Gradio lets run at once, and the scheduler's mode to match.

    Off ZeroGPU, concurrent calls reach the turn scheduler, which decodes them as one batch: two batches' worth may
    run (one decoding, the next one gathering). On ZeroGPU every call gets its own GPU slice in its own process, so
    the scheduler stays out of the way (each turn decodes alone in its call) and Gradio alone bounds the calls.
    """
    pipeline.scheduler.batching = not zero_gpu()
    return 2 * pipeline.config.pipeline.max_batch
