"""Generation with the KV cache vs recomputing the whole prefix every step (what upstream M2UGen does).

Prints both timings measured side by side in one run and their ratio. Run from the repo root: python -m bench.kv_cache
"""

from __future__ import annotations

import argparse
import time

from mumu.builder import build_model
from mumu.decoding import GenerationSettings, generate
from mumu.profiles import tiny


def _time(model, prompt, settings, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate(model, [prompt], settings=settings)[0]
        best = min(best, time.perf_counter() - start)
    return best, out.token_ids


def main() -> None:
    """Time cached and uncached greedy decoding of the same tokens."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = build_model(tiny())
    prompt = [model.ids.bos] + [5 + i % 400 for i in range(args.prompt_tokens - 1)]
    common = dict(max_new_tokens=args.new_tokens, music="never")
    cached, a = _time(model, prompt, GenerationSettings(use_cache=True, **common), args.repeats)
    uncached, b = _time(model, prompt, GenerationSettings(use_cache=False, **common), args.repeats)
    assert a == b, "cached and uncached decoding must produce the same tokens"
    print(f"tiny profile, {args.prompt_tokens} prompt + {len(a)} new tokens (best of {args.repeats})")
    print(f"kv cache   {cached:8.3f} s")
    print(f"recompute  {uncached:8.3f} s")
    print(f"speed-up   {uncached / cached:8.2f}x")


if __name__ == "__main__":
    main()
