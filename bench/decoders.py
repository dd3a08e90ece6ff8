"""Real-time factor of each music decoder: seconds of audio produced per second of compute.

Tiny decoders always (CPU); with --full, full-size random-init MusicGen-small/medium and AudioLDM2 in
bf16 (MusicGen) / fp16 (AudioLDM2), which is only sensible on a GPU. Each decoder gets a short row (--duration,
10 s) and a long-form row (--long, 70 s: MusicGen makes it in windows of codes, decoded once) side by side.
All rows come from one run. Run from the repo root: python -m bench.decoders [--full] [--duration S] [--long S]
"""

from __future__ import annotations

import argparse
import time

import torch

from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, MusicDecoder
from generation.registry import build_decoder
from mumu.profiles import full, tiny


def warmed_up(cfg: DecoderConfig, device: str, dtype: torch.dtype | None, steps: int = 25):
    """A full-size or tiny random-init decoder on `device`, random conditioning for it, and one short warm-up run."""
    decoder = build_decoder(cfg, device=device, dtype=dtype, weights=False)
    cond = random_conditioning(decoder, device, dtype)
    decoder.generate(cond, SamplingSettings(duration=1.0, seed=0, steps=steps))
    return decoder, cond


def random_conditioning(decoder: MusicDecoder, device: str, dtype: torch.dtype | None) -> Conditioning:
    """Random embeddings (scaled like a projector's) for every stream the decoder reads, 16 tokens where any fit."""
    embeds, masks = {}, {}
    for name, (tokens, width) in decoder.streams.items():
        n = tokens or 16
        embeds[name] = (torch.randn(1, n, width) * 0.1).to(device=device, dtype=dtype or torch.float32)
        masks[name] = torch.ones(1, n, dtype=torch.bool, device=device)
    return Conditioning(embeds=embeds, masks=masks)


def _rtf(name: str, cfg: DecoderConfig, device: str, dtype: torch.dtype | None, durations: list[float]) -> None:
    decoder, cond = warmed_up(cfg, device, dtype)
    precision = str(dtype or torch.float32).replace("torch.", "")
    for duration in durations:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = decoder.generate(cond, SamplingSettings(duration=duration, seed=0))
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        windows = out.info.get("windows", 1)
        print(f"{name:<28}{device:>6}{precision:>10}{out.seconds:>9.2f} s{windows:>8}{seconds:>9.2f} s"
              f"{out.seconds / seconds:>9.2f}x", flush=True)


def main() -> None:
    """Print one row per decoder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also full-size random-init decoders (GPU)")
    parser.add_argument("--duration", type=float, default=10.0, help="the short row's seconds of audio")
    parser.add_argument("--long", type=float, default=70.0, help="the long-form row's seconds of audio")
    args = parser.parse_args()
    durations = [args.duration, args.long]
    print(f"{'decoder':<28}{'device':>6}{'dtype':>10}{'audio':>11}{'windows':>8}{'compute':>11}{'RTF':>10}")
    for kind in ("musicgen", "musicgen_melody", "audioldm2"):
        _rtf(f"tiny {kind}", tiny(decoder=kind).decoder, "cpu", None, durations)
    if args.full:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for label, kind, source, dtype in (
            ("MusicGen-small", "musicgen", "small", torch.bfloat16),
            ("MusicGen-medium", "musicgen", "medium", torch.bfloat16),
            ("AudioLDM2-music", "audioldm2", None, torch.float16),
        ):
            cfg = full(decoder=kind, musicgen_size=source).decoder if source else full(decoder=kind).decoder
            _rtf(label, cfg, device, dtype, durations)


if __name__ == "__main__":
    main()
