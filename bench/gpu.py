"""Full-size serving speed and memory on a GPU, with random-init weights of the real shapes (no downloads).

One table: Llama-2-7B (with MuMu's LoRA) decode tokens/s at batch 1 in bf16 and 4-bit, time to first token at a
1k-token context, MusicGen-small/medium real-time factor, AudioLDM2 seconds for 10 s of audio at 25 steps, and the
peak GPU memory of the whole serving stack (LLM + MERT + ViT + ViViT + MusicGen-medium resident, each run once).
Without a CUDA GPU it says so and exits 0. Run from the repo root: python -m bench.gpu [--scratch DIR]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from transformers import BitsAndBytesConfig, LlamaForCausalLM

from adapters.mert import MusicEncoder
from adapters.vision import ImageEncoder, VideoEncoder
from bench.decoders import warmed_up
from generation.config import SamplingSettings
from mumu.llm import attach_lora, llama_config, quantization_config
from mumu.profiles import full

GIB = 2**30
BF16 = torch.bfloat16


def _timed(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def _llm(quantization: BitsAndBytesConfig | None, scratch: str | None) -> torch.nn.Module:
    """Llama-2-7B shapes, random init, with the full profile's LoRA; 4-bit goes through a saved copy, since
    bitsandbytes quantizes while loading."""
    cfg = full().llm
    config = llama_config(cfg, from_source=False)
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(config, dtype=BF16)
    if quantization is not None:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            model.save_pretrained(tmp)
            del model
            _free()
            model = LlamaForCausalLM.from_pretrained(tmp, quantization_config=quantization, device_map={"": 0},
                                                     dtype=BF16)
    model.requires_grad_(False)
    return attach_lora(model, cfg, [], train_tokens=False).eval()


def _decode_rate(model: torch.nn.Module, tokens: int) -> float:
    """Tokens/s of greedy decoding with the KV cache at batch 1 (prefill of a 16-token prompt subtracted)."""
    prompt = torch.randint(3, 32000, (1, 16), device="cuda")

    def run(n: int) -> float:
        return _timed(lambda: _generate(model, prompt, n))

    run(4)  # warm-up: kernels and allocator
    return (tokens - 1) / (run(tokens) - run(1))


def _first_token(model: torch.nn.Module, context: int) -> float:
    prompt = torch.randint(3, 32000, (1, context), device="cuda")
    _generate(model, prompt[:, :64], 1)  # warm-up
    return _timed(lambda: _generate(model, prompt, 1))


def _generate(model: torch.nn.Module, prompt: torch.Tensor, tokens: int) -> torch.Tensor:
    return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=tokens,
                          min_new_tokens=tokens, do_sample=False, pad_token_id=0)


def _encoders() -> tuple[MusicEncoder, ImageEncoder, VideoEncoder]:
    cfg = full()
    return (MusicEncoder.from_config(cfg.music_encoder, "cuda", BF16, weights=False).eval(),
            ImageEncoder.from_config(cfg.image_encoder, "cuda", BF16, weights=False).eval(),
            VideoEncoder.from_config(cfg.video_encoder, "cuda", BF16, weights=False).eval())


def _music_seconds(kind: str, size: str | None, dtype: torch.dtype, seconds: float, steps: int) -> tuple:
    """(decoder, seconds of compute for `seconds` of audio)."""
    cfg = full(decoder=kind, musicgen_size=size).decoder if size else full(decoder=kind).decoder
    decoder, cond = warmed_up(cfg, "cuda", dtype, steps)
    return decoder, _timed(lambda: decoder.generate(cond, SamplingSettings(duration=seconds, seed=0, steps=steps)))


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def _stack(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    """The serving stack resident at once: LLM rows, then encoders and MusicGen-medium on top, for the peak."""
    torch.cuda.reset_peak_memory_stats()
    llm = _llm(None, args.scratch)
    rows.append(("LLM decode, batch 1, bf16", f"{_decode_rate(llm, args.tokens):.1f} tok/s"))
    rows.append((f"time to first token, {args.context}-token context, bf16",
                 f"{_first_token(llm, args.context) * 1000:.0f} ms"))
    music, image, video = _encoders()
    with torch.no_grad():
        music(np.random.default_rng(0).standard_normal(24000 * 10).astype(np.float32) * 0.1)
        image([Image.new("RGB", (224, 224))])
        video([np.zeros((video.num_frames, 224, 224, 3), dtype=np.uint8)])
    decoder, compute = _music_seconds("musicgen", "medium", BF16, args.duration, 25)
    rows.append(("MusicGen-medium real-time factor, bf16", f"{args.duration / compute:.2f}x"))
    rows.append(("peak GPU memory, whole stack (LLM bf16 + encoders + MusicGen-medium)",
                 f"{torch.cuda.max_memory_allocated() / GIB:.1f} GiB"))
    del llm, music, image, video, decoder
    _free()


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 0 without a GPU (nothing to measure)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="decoded tokens per rate measurement")
    parser.add_argument("--context", type=int, default=1024, help="prompt tokens for time to first token")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of music per decoder run")
    parser.add_argument("--scratch", help="directory for the 4-bit run's saved bf16 copy (~13 GB; default: /tmp)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU on this machine, so nothing was measured; run it where a GPU is available")
        return 0
    rows: list[tuple[str, str]] = []
    _stack(args, rows)
    _, compute = _music_seconds("musicgen", "small", BF16, args.duration, 25)
    rows.append(("MusicGen-small real-time factor, bf16", f"{args.duration / compute:.2f}x"))
    _free()
    _, compute = _music_seconds("audioldm2", None, torch.float16, args.duration, 25)
    rows.append((f"AudioLDM2-music, {args.duration:g} s of audio, 25 steps, fp16", f"{compute:.1f} s"))
    _free()
    if importlib.util.find_spec("bitsandbytes") is None:
        rows.append(("LLM decode, batch 1, 4-bit", "not measured: bitsandbytes is not installed"))
    else:
        llm = _llm(quantization_config("4bit"), args.scratch)
        rows.append(("LLM decode, batch 1, 4-bit NF4", f"{_decode_rate(llm, args.tokens):.1f} tok/s"))
    width = max(len(name) for name, _ in rows)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
