"""Many users at once: k concurrent text turns through the turn scheduler vs the same k turns one after another.

On the mid-size random-init LLM of bench/decode.py (the tiny profile with a 1024-wide, 8-layer Llama) behind a real
MuMuPipeline, for k in 1, 2, 4, 8, measured side by side in one run (serial and concurrent interleaved, best of
--repeats by wall time):

- serial: the k turns (each in its own new conversation, different prompts) sent one after another;
- concurrent: the k turns sent at once from k threads; the scheduler decodes them as one batch;
- total wall time of each, the ratio concurrent/serial (target at k=4: <= 0.5), new tokens per second overall, the
  p50/p95 latency of a turn (send to reply), and whether every turn's text is identical both ways.

Every turn makes exactly --tokens new tokens (bench.decode.forced_length bans EOS and [AUD]), greedy, music never.

Run from the repo root: python -m bench.serving  (--help for the size, token count and repeats)
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from typing import Any

import numpy as np
import torch

from bench.decode import SIZES, forced_length, mid_config
from mumu.builder import build_model
from mumu.decoder_pool import build_seeded_decoder
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.profiles import tiny

CONCURRENCY = (1, 2, 4, 8)
TARGET_AT_4 = 0.5
TOPICS = ("a slow piano ballad", "drums", "a bright brass fanfare for a parade", "rain", "a lullaby for strings",
          "an angry distorted guitar riff in drop D", "birdsong at dawn", "a synth arpeggio")


def build_pipeline(size: str, out_dir: str) -> MuMuPipeline:
    """A pipeline on the chosen LLM size (the tiny decoder: music is not measured here)."""
    config = mid_config() if size == "mid" else tiny()
    config.pipeline.max_batch = max(CONCURRENCY)
    return MuMuPipeline(build_model(config), build_seeded_decoder(config, config.decoder.kind), out_dir)


def turn(pipeline: MuMuPipeline, index: int, tokens: int) -> tuple[str, float]:
    """One text turn in a new conversation: its reply text and its latency in seconds."""
    start = time.perf_counter()
    reply = pipeline.chat(pipeline.new_conversation(), f"Describe {TOPICS[index % len(TOPICS)]}.",
                          options=ChatOptions(music="never", max_new_tokens=tokens))
    return reply.text, time.perf_counter() - start


def serial(pipeline: MuMuPipeline, k: int, tokens: int) -> tuple[float, list[str], list[float]]:
    """The k turns one after another: total wall time, texts, latencies."""
    start = time.perf_counter()
    results = [turn(pipeline, i, tokens) for i in range(k)]
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def concurrent(pipeline: MuMuPipeline, k: int, tokens: int) -> tuple[float, list[str], list[float]]:
    """The k turns sent at once from k threads: total wall time, texts, latencies."""
    results: list[Any] = [None] * k

    def run(i: int) -> None:
        results[i] = turn(pipeline, i, tokens)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def measure(pipeline: MuMuPipeline, k: int, tokens: int, repeats: int) -> dict[str, Any]:
    """Best-of-repeats serial and concurrent runs of k turns, interleaved so load drift hits both alike."""
    best = {"serial": (math.inf, [], []), "concurrent": (math.inf, [], [])}
    identical = True
    sizes_before = len(pipeline.scheduler.text.batch_sizes)
    for _ in range(repeats):
        texts = {}
        for name, run in (("serial", serial), ("concurrent", concurrent)):
            wall, texts[name], latencies = run(pipeline, k, tokens)
            best[name] = min(best[name], (wall, texts[name], latencies), key=lambda r: r[0])
        identical &= texts["serial"] == texts["concurrent"]
    batches = list(pipeline.scheduler.text.batch_sizes)[sizes_before:]
    row: dict[str, Any] = {"k": k, "identical": identical, "largest_batch": max(batches)}
    for name, (wall, _, latencies) in best.items():
        row[name] = {"wall_s": wall, "tokens_per_s": k * tokens / wall, "p50_s": float(np.percentile(latencies, 50)),
                     "p95_s": float(np.percentile(latencies, 95))}
    row["ratio"] = best["concurrent"][0] / best["serial"][0]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the measured rows."""
    lines = ["| concurrent turns | serial wall (s) | concurrent wall (s) | ratio | tokens/s serial | tokens/s "
             "concurrent | p50 / p95 latency serial (s) | p50 / p95 latency concurrent (s) | largest batch "
             "| identical text |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, c = r["serial"], r["concurrent"]
        lines.append(f"| {r['k']} | {s['wall_s']:.2f} | {c['wall_s']:.2f} | {r['ratio']:.2f} | {s['tokens_per_s']:.0f} "
                     f"| {c['tokens_per_s']:.0f} | {s['p50_s']:.2f} / {s['p95_s']:.2f} | {c['p50_s']:.2f} / "
                     f"{c['p95_s']:.2f} | {r['largest_batch']} | {'yes' if r['identical'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; exit 1 when the k=4 target is missed or any output differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="mid")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per turn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out_dir:
        pipeline = build_pipeline(args.size, out_dir)
        pipeline.model.to(args.device)
        print(f"{args.size} LLM, {args.tokens} new tokens per turn, device {args.device}, torch threads "
              f"{torch.get_num_threads()}, batch window {pipeline.scheduler.window_s * 1000:g} ms, load average "
              f"before {os.getloadavg()[0]:.2f}")
        with forced_length(pipeline.model):
            turn(pipeline, 0, 2)  # warm-up
            rows = [measure(pipeline, k, args.tokens, args.repeats) for k in CONCURRENCY]
    print(table(rows))
    at4 = next(r for r in rows if r["k"] == 4)["ratio"]
    ok = at4 <= TARGET_AT_4 and all(r["identical"] for r in rows)
    print(f"target: 4 concurrent turns in <= {TARGET_AT_4}x the serial time; measured {at4:.2f}x "
          f"({'met' if ok else 'MISSED'}); load average after {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
