"""Real-time factor of each music decoder: seconds of audio produced per second of compute.

Tiny decoders always (CPU); with --full, full-size random-init MusicGen-small/medium and AudioLDM2 in
bf16 (MusicGen) / fp16 (AudioLDM2), which is only sensible on a GPU. All rows come from one run.
Run from the repo root: python -m bench.decoders [--full] [--duration S]
"""

from __future__ import annotations

import argparse
import time

import torch

from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning
from generation.registry import build_decoder
from mumu.profiles import full, tiny


def _conditioning(decoder) -> Conditioning:
    embeds, masks = {}, {}
    for name, (tokens, width) in decoder.streams.items():
        n = tokens or 16
        embeds[name] = torch.randn(1, n, width) * 0.1
        masks[name] = torch.ones(1, n, dtype=torch.bool)
    return Conditioning(embeds=embeds, masks=masks)


def _rtf(name: str, cfg: DecoderConfig, device: str, dtype: torch.dtype | None, duration: float) -> None:
    decoder = build_decoder(cfg, device=device, dtype=dtype, weights=False)
    cond = _conditioning(decoder)
    cond.embeds = {k: v.to(device=device, dtype=dtype or torch.float32) for k, v in cond.embeds.items()}
    cond.masks = {k: v.to(device) for k, v in cond.masks.items()}
    settings = SamplingSettings(duration=duration, seed=0)
    decoder.generate(cond, SamplingSettings(duration=min(duration, 1.0), seed=0))  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = decoder.generate(cond, settings)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    precision = str(dtype or torch.float32).replace("torch.", "")
    print(f"{name:<28}{device:>6}{precision:>10}{out.seconds:>9.2f} s{seconds:>9.2f} s{out.seconds / seconds:>9.2f}x")


def main() -> None:
    """Print one row per decoder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also full-size random-init decoders (GPU)")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(f"{'decoder':<28}{'device':>6}{'dtype':>10}{'audio':>11}{'compute':>11}{'RTF':>10}")
    for kind in ("musicgen", "musicgen_melody", "audioldm2"):
        _rtf(f"tiny {kind}", tiny(decoder=kind).decoder, "cpu", None, args.duration)
    if args.full:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for label, kind, source, dtype in (
            ("MusicGen-small", "musicgen", "small", torch.bfloat16),
            ("MusicGen-medium", "musicgen", "medium", torch.bfloat16),
            ("AudioLDM2-music", "audioldm2", None, torch.float16),
        ):
            cfg = full(decoder=kind, musicgen_size=source).decoder if source else full(decoder=kind).decoder
            _rtf(label, cfg, device, dtype, args.duration)


if __name__ == "__main__":
    main()
