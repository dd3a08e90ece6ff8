"""Where people speak in a soundtrack: Silero VAD, whose weights ship inside its pip package (no download)."""

from __future__ import annotations

import functools
import threading
import warnings

import librosa
import numpy as np
import torch

VAD_RATE = 16_000  # the rate Silero VAD runs at
_lock = threading.Lock()  # the model keeps recurrent state between calls


@functools.cache
def _model() -> torch.jit.ScriptModule:
    threads = torch.get_num_threads()
    # silero_vad sets torch's thread count to 1 when imported; the rest of the process keeps its own setting.
    from silero_vad import load_silero_vad

    with warnings.catch_warnings():
        # Its loader uses importlib.resources.path and torch.jit.load, both deprecated (not removed) upstream.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def speech_regions(
    wav: np.ndarray, sr: int, threshold: float = 0.5, min_speech: float = 0.25, min_silence: float = 0.1,
) -> list[tuple[float, float]]:
    """(start, end) seconds of each speech region of a mono waveform, in order; [] for none.

    threshold: Silero's speech probability above which a 32 ms window counts as speech; regions shorter than
    `min_speech` are dropped and gaps shorter than `min_silence` are bridged (Silero's own post-processing).
    """
    from silero_vad import get_speech_timestamps

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"speech detection needs a non-empty mono waveform, got shape {x.shape}")
    if sr != VAD_RATE:
        x = librosa.resample(x, orig_sr=sr, target_sr=VAD_RATE).astype(np.float32)
    with _lock, torch.inference_mode():
        found = get_speech_timestamps(torch.from_numpy(x), _model(), threshold=threshold, sampling_rate=VAD_RATE,
                                      min_speech_duration_ms=round(min_speech * 1000),
                                      min_silence_duration_ms=round(min_silence * 1000))
    return [(r["start"] / VAD_RATE, r["end"] / VAD_RATE) for r in found]
