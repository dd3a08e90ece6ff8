"""Per-token decode cost at short vs long context, and our decoding loop vs plain transformers greedy generate.

For two random-init LLM sizes built through the project's builder (the tiny profile, and the tiny profile with a
mid-size Llama: hidden 1024, 8 layers), measured side by side in one run, best of --repeats, the variants interleaved:

a) the decode time per new token of `mumu.decoding.generate` (greedy, music="never", KV cache) at a short and a long
   prompt, as (time for N new tokens - time for 1 new token) / (N - 1) so the prompt prefill cancels out, and the
   ratio long/short (near 1 with the KV cache);
b) `mumu.decoding.generate` without media (the injection hooks then add only the learned prefix path) and with
   encoded music + image + video features, against `model.llm.generate(..., do_sample=False, min_new_tokens=N)`
   (transformers' own greedy loop and cache) on the same LLM, prompt and N: total time, per-token time and the
   overhead ratio ours/HF (target <= 1.10), and whether ours and HF produce the same tokens (they should: the gates
   are zero at init).

A forward hook on the LM head sets the EOS and [AUD] logits to -inf for every generator alike, so each run makes
exactly N tokens and greedy picks the same ones everywhere at the same cost. Media encoding is not timed.

Run from the repo root: python -m bench.decode  (--help for sizes, context lengths, N and repeats)
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from mumu.builder import build_model
from mumu.config import MuMuConfig
from mumu.decoding import GenerationSettings, generate
from mumu.feature_cache import encode
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.profiles import tiny

MID_LLAMA_ARCH: dict[str, Any] = dict(
    vocab_size=512, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
    num_key_value_heads=8, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)
SIZES = ("tiny", "mid")


def mid_config() -> MuMuConfig:
    """The tiny profile with its LLM swapped for a mid-size random-init Llama (adapters made as wide)."""
    config = tiny()
    config.llm.arch = dict(MID_LLAMA_ARCH)
    config.adapter.llm_width = MID_LLAMA_ARCH["hidden_size"]
    span = 3 * config.injection.group_size
    if span > MID_LLAMA_ARCH["num_hidden_layers"]:
        raise ValueError(f"injection needs {span} layers, the mid LLM has {MID_LLAMA_ARCH['num_hidden_layers']}")
    return config


@contextmanager
def forced_length(model: MuMuModel) -> Iterator[None]:
    """While active, the LM head gives EOS and [AUD] logits of -inf, so every generator runs to max_new_tokens."""
    banned = torch.tensor([model.ids.eos, *model.ids.audio], device=model.device)

    def hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        out[..., banned] = float("-inf")
        return out

    handle = model.llm.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def random_media(model: MuMuModel, seed: int = 0) -> MediaFeatures:
    """Frozen-encoder features of one random music clip, image and video (a batch of one row)."""
    rng = np.random.default_rng(seed)
    rate = model.config.music_encoder.sample_rate
    clip = (0.1 * rng.standard_normal(round(model.config.music_encoder.window_seconds * rate))).astype(np.float32)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    video = rng.integers(0, 256, (model.video_encoder.num_frames, 64, 64, 3), dtype=np.uint8)
    data = {"music": clip, "image": image, "video": video}
    return MediaFeatures(**{modality: [encode(model, modality, x)] for modality, x in data.items()})


def ours(model: MuMuModel, prompt: list[int], n: int, media: MediaFeatures | None = None) -> list[int]:
    """Greedy tokens from the project's KV-cached decoding loop (with the injection hooks)."""
    settings = GenerationSettings(max_new_tokens=n, temperature=0.0, music="never", use_cache=True)
    return generate(model, [prompt], media=media, settings=settings)[0].token_ids


def hf(model: MuMuModel, prompt: list[int], n: int) -> list[int]:
    """Greedy tokens from transformers' own generate on the same (peft-wrapped) LLM."""
    ids = torch.tensor([prompt], device=model.device)
    out = model.llm.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
    )
    return out[0, len(prompt):].tolist()


def best_of(jobs: dict[str, Callable[[], list[int]]], repeats: int) -> tuple[dict[str, float], dict[str, list[int]]]:
    """Best wall time of each job over repeats, jobs interleaved round-robin so load drift hits them all alike."""
    best = dict.fromkeys(jobs, math.inf)
    tokens: dict[str, list[int]] = {}
    for _ in range(repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            tokens[name] = job()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, tokens


def measure(model: MuMuModel, short: int, long: int, n: int, repeats: int) -> dict[str, Any]:
    """All timings for one model: decode per token at both contexts, and ours (with/without media) vs HF."""
    if n < 2:
        raise ValueError("need at least 2 new tokens to separate decode from prefill")

    def prompt(length: int) -> list[int]:
        return [model.ids.bos] + [5 + i % 400 for i in range(length - 1)]

    short_p, long_p = prompt(short), prompt(long)
    media = random_media(model)
    jobs: dict[str, Callable[[], list[int]]] = {}
    for k in (n, 1):
        jobs[f"ours short {k}"] = lambda k=k: ours(model, short_p, k)
        jobs[f"ours long {k}"] = lambda k=k: ours(model, long_p, k)
        jobs[f"media short {k}"] = lambda k=k: ours(model, short_p, k, media)
        jobs[f"hf short {k}"] = lambda k=k: hf(model, short_p, k)
    with forced_length(model):
        ours(model, short_p, 2, media)  # warm-up: first-call allocations and lazy init stay out of the timings
        hf(model, short_p, 2)
        times, tokens = best_of(jobs, repeats)
    for name, got in tokens.items():
        want = int(name.rsplit(" ", 1)[1])
        if len(got) != want:
            raise RuntimeError(f"{name}: generated {len(got)} tokens, expected exactly {want}")

    def per_token(name: str) -> float:
        return (times[f"{name} {n}"] - times[f"{name} 1"]) / (n - 1)

    return dict(
        params=sum(p.numel() for p in model.llm.get_base_model().parameters()),
        short_tok=per_token("ours short"), long_tok=per_token("ours long"),
        ours_total=times[f"ours short {n}"], media_total=times[f"media short {n}"], hf_total=times[f"hf short {n}"],
        ours_tok=per_token("ours short"), media_tok=per_token("media short"), hf_tok=per_token("hf short"),
        same=tokens[f"ours short {n}"] == tokens[f"hf short {n}"] and tokens["ours short 1"] == tokens["hf short 1"],
        same_media=tokens[f"media short {n}"] == tokens[f"hf short {n}"],
    )


def main() -> None:
    """Measure both LLM sizes and print one table with a column per size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--new-tokens", type=int, default=32, help="N new tokens per timed generation")
    parser.add_argument("--short-context", type=int, default=32, help="short prompt length (both sizes)")
    parser.add_argument("--long-context", type=int, default=1024, help="long prompt length, tiny LLM")
    parser.add_argument("--mid-long-context", type=int, default=512, help="long prompt length, mid LLM")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    results: dict[str, dict[str, Any]] = {}
    longs = {"tiny": args.long_context, "mid": args.mid_long_context}
    for size in args.sizes:
        model = build_model(tiny() if size == "tiny" else mid_config())
        with torch.inference_mode():
            results[size] = measure(model, args.short_context, longs[size], args.new_tokens, args.repeats)
        del model
    n, short = args.new_tokens, args.short_context
    ms = 1e3

    def row(label: str, fmt: Callable[[dict[str, Any]], str]) -> None:
        print(f"{label:<44}" + "".join(f"{fmt(results[s]):>14}" for s in args.sizes))

    print(f"greedy, music='never', {n} new tokens (forced), best of {args.repeats}; "
          f"per token = (t[{n} new] - t[1 new]) / {n - 1}")
    print(f"{'':<44}" + "".join(f"{s:>14}" for s in args.sizes))
    row("LLM parameters", lambda r: f"{r['params'] / 1e6:.2f} M")
    print("a) decode per new token, ours (KV cache)")
    row(f"  prompt {short} tokens", lambda r: f"{r['short_tok'] * ms:.2f} ms")
    row("  prompt long (" + " / ".join(str(longs[s]) for s in args.sizes) + " tokens)",
        lambda r: f"{r['long_tok'] * ms:.2f} ms")
    row("  ratio long/short", lambda r: f"{r['long_tok'] / r['short_tok']:.2f}x")
    print(f"b) generate {n} tokens after a {short}-token prompt: total (per new token)")
    row("  ours, no media", lambda r: f"{r['ours_total'] * ms:.0f} ({r['ours_tok'] * ms:.2f})")
    row("  ours, music+image+video", lambda r: f"{r['media_total'] * ms:.0f} ({r['media_tok'] * ms:.2f})")
    row("  HF model.llm.generate", lambda r: f"{r['hf_total'] * ms:.0f} ({r['hf_tok'] * ms:.2f})")
    row("  overhead ours/HF, total", lambda r: f"{r['ours_total'] / r['hf_total']:.2f}x")
    row("  overhead ours/HF, per token", lambda r: f"{r['ours_tok'] / r['hf_tok']:.2f}x")
    row("  overhead ours+media/HF, total", lambda r: f"{r['media_total'] / r['hf_total']:.2f}x")
    row("  overhead ours+media/HF, per token", lambda r: f"{r['media_tok'] / r['hf_tok']:.2f}x")
    row("  same tokens ours vs HF", lambda r: "yes" if r["same"] else "no")
    row("  same tokens ours+media vs HF (gates 0)", lambda r: "yes" if r["same_media"] else "no")
    print("times in ms; overhead target <= 1.10x")


if __name__ == "__main__":
    main()
