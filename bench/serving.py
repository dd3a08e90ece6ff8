"""Many users at once: k concurrent turns through the turn scheduler vs the same k turns one after another.

On the mid-size random-init LLM of bench/decode.py (the tiny profile with a 1024-wide, 8-layer Llama) and the tiny
profile's MusicGen behind a real MuMuPipeline, for k in 1, 2, 4, 8, measured side by side in one run (serial and
concurrent interleaved, best of --repeats by wall time):

- serial: the k turns (each in its own new conversation, different prompts) sent one after another;
- concurrent: the k turns sent at once from k threads; the scheduler decodes them as one batch;
- total wall time of each, the ratio concurrent/serial (target at k=4: <= 0.5), new tokens per second overall, the
  p50/p95 latency of a turn (send to reply), and whether every turn's output is identical both ways.

Staggered arrivals (the staggered table): k text turns sent --gap-ms apart, once with continuous batching (each later
turn joins the running batch at its next step) and once per window (the scheduler's switch off: later turns wait for
the running batch to end), interleaved, best of --repeats; wall time from the first send to the last reply, latency
per turn from its own send, how many batches were started, and whether every turn's text equals the turn run alone.

Every measured run starts from one state (`steady_state`): the prefix cache emptied, then one unrelated turn served,
so it holds the template's preamble as on a running server, and none of the measured turns' own messages. The text
table is measured twice, with the prefix cache and without. The conversation table: one conversation of
CONVERSATION_TURNS text turns with the prefix cache and without, interleaved, best of --repeats per turn: the prompt's
length, the tokens reused, the time to the first token and to the reply, and whether the texts agree.

Text turns make exactly --tokens new tokens (bench.decode.forced_length bans EOS and [AUD]), greedy, music never.
Music turns (the music table) ask for music always: their replies are the 8 [AUD] tokens, then each makes a
--track-seconds track with the model's own decoder, its own seed per turn (the tracks of one batch share the decoder
and its settings, so the scheduler samples them as one batch); identical means the same text and the same samples in
the track's file. The last table is the decoder alone: k tracks (random conditioning, own seeds) made by one
generate_batch call vs one generate call each, and whether every track is the same both ways.

Run from the repo root: python -m bench.serving  (--help for the size, token count and repeats)
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import soundfile as sf
import torch

from bench.decode import SIZES, forced_length, mid_config
from bench.decoders import random_conditioning
from generation.config import SamplingSettings
from generation.interface import MusicDecoder
from mumu.builder import build_model
from mumu.decoder_pool import build_seeded_decoder
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.profiles import tiny

CONCURRENCY = (1, 2, 4, 8)
STAGGERED = (4, 8)
CONVERSATION_TURNS = 4
TARGET_AT_4 = 0.5
WARM_UP = "Hello!"
TOPICS = ("a slow piano ballad", "drums", "a bright brass fanfare for a parade", "rain", "a lullaby for strings",
          "an angry distorted guitar riff in drop D", "birdsong at dawn", "a synth arpeggio")


def build_pipeline(size: str, out_dir: str) -> MuMuPipeline:
    """A pipeline on the chosen LLM size, with the tiny profile's decoder."""
    config = mid_config() if size == "mid" else tiny()
    config.pipeline.max_batch = max(CONCURRENCY)
    return MuMuPipeline(build_model(config), build_seeded_decoder(config, config.decoder.kind), out_dir)


def text_turn(tokens: int) -> Callable[[int], ChatOptions]:
    """A text turn's options: exactly `tokens` new tokens (under forced_length), no music."""
    return lambda index: ChatOptions(music="never", max_new_tokens=tokens)


def music_turn(seconds: float) -> Callable[[int], ChatOptions]:
    """A music turn's options: the reply is the 8 [AUD] tokens, then a track of `seconds` with the turn's own seed."""
    return lambda index: ChatOptions(music="always", max_new_tokens=8,
                                     sampling=SamplingSettings(duration=seconds, seed=index))


def turn(pipeline: MuMuPipeline, index: int, options: ChatOptions) -> tuple[Any, float]:
    """One turn in a new conversation: its output (text, and the track's samples if any) and its latency (s)."""
    start = time.perf_counter()
    reply = pipeline.chat(pipeline.new_conversation(), f"Describe {TOPICS[index % len(TOPICS)]}.", options=options)
    latency = time.perf_counter() - start
    return (reply.text, None if reply.audio is None else sf.read(reply.audio)[0]), latency


def steady_state(pipeline: MuMuPipeline) -> None:
    """Empty the prefix cache, then serve one unrelated turn: a running server holds the template's preamble, not
    the measured turns' own messages (each measured run starts from this state, serial and concurrent alike)."""
    if pipeline.scheduler.prefix_cache is not None:
        pipeline.scheduler.prefix_cache.clear()
        pipeline.chat(pipeline.new_conversation(), WARM_UP, options=text_turn(2)(0))


def serial(pipeline: MuMuPipeline, k: int, options: Callable[[int], ChatOptions]) -> tuple[float, list, list[float]]:
    """The k turns one after another: total wall time, outputs, latencies."""
    start = time.perf_counter()
    results = [turn(pipeline, i, options(i)) for i in range(k)]
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def concurrent(pipeline: MuMuPipeline, k: int, options: Callable[[int], ChatOptions], gap_s: float = 0.0,
               ) -> tuple[float, list, list[float]]:
    """The k turns sent from k threads, turn i gap_s * i after the first: total wall time, outputs, latencies."""
    results: list[Any] = [None] * k

    def run(i: int) -> None:
        time.sleep(gap_s * i)
        results[i] = turn(pipeline, i, options(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def _same(a: list, b: list) -> bool:
    return all(ta == tb and (wa is None) == (wb is None) and (wa is None or np.array_equal(wa, wb))
               for (ta, wa), (tb, wb) in zip(a, b, strict=True))


def measure(pipeline: MuMuPipeline, k: int, options: Callable[[int], ChatOptions], tokens: int,
            repeats: int) -> dict[str, Any]:
    """Best-of-repeats serial and concurrent runs of k turns, interleaved so load drift hits both alike."""
    best = {"serial": (math.inf, [], []), "concurrent": (math.inf, [], [])}
    identical = True
    scheduler = pipeline.scheduler
    before = {"text": len(scheduler.text.batch_sizes), "music": len(scheduler.music.batch_sizes)}
    for _ in range(repeats):
        outputs = {}
        for name, run in (("serial", serial), ("concurrent", concurrent)):
            steady_state(pipeline)
            wall, outputs[name], latencies = run(pipeline, k, options)
            best[name] = min(best[name], (wall, outputs[name], latencies), key=lambda r: r[0])
        identical &= _same(outputs["serial"], outputs["concurrent"])
    row: dict[str, Any] = {"k": k, "identical": identical}
    for stage, queue in (("text", scheduler.text), ("music", scheduler.music)):
        row[f"largest_{stage}_batch"] = max(list(queue.batch_sizes)[before[stage]:], default=0)
    for name, (wall, _, latencies) in best.items():
        row[name] = {"wall_s": wall, "tokens_per_s": k * tokens / wall, "p50_s": float(np.percentile(latencies, 50)),
                     "p95_s": float(np.percentile(latencies, 95))}
    row["ratio"] = best["concurrent"][0] / best["serial"][0]
    return row


def staggered(pipeline: MuMuPipeline, k: int, gap_s: float, tokens: int, repeats: int) -> dict[str, Any]:
    """k text turns arriving gap_s apart, with continuous batching (later turns join the running batch) and per
    window (they wait for the next batch), best of repeats, interleaved; outputs compared with the turns alone."""
    scheduler = pipeline.scheduler
    steady_state(pipeline)
    alone = serial(pipeline, k, text_turn(tokens))[1]
    best = {True: (math.inf, []), False: (math.inf, [])}
    batches = {True: 0, False: 0}
    identical = True
    for _ in range(repeats):
        for continuous in (True, False):
            scheduler.continuous = continuous
            steady_state(pipeline)
            before = len(scheduler.text.batch_sizes)
            wall, outputs, latencies = concurrent(pipeline, k, text_turn(tokens), gap_s)
            batches[continuous] = len(scheduler.text.batch_sizes) - before
            best[continuous] = min(best[continuous], (wall, latencies), key=lambda r: r[0])
            identical &= _same(alone, outputs)
    scheduler.continuous = True
    row: dict[str, Any] = {"k": k, "gap_ms": gap_s * 1000, "identical": identical}
    for name, continuous in (("continuous", True), ("per_window", False)):
        wall, latencies = best[continuous]
        row[name] = {"wall_s": wall, "p50_s": float(np.percentile(latencies, 50)),
                     "p95_s": float(np.percentile(latencies, 95)), "batches": batches[continuous]}
    row["ratio"] = row["continuous"]["wall_s"] / row["per_window"]["wall_s"]
    return row


@contextmanager
def prefix_caching(pipeline: MuMuPipeline, on: bool) -> Iterator[None]:
    """While active, the scheduler's prefix cache is used (on) or not (off)."""
    cache = pipeline.scheduler.prefix_cache
    pipeline.scheduler.prefix_cache = cache if on else None
    try:
        yield
    finally:
        pipeline.scheduler.prefix_cache = cache


def talk(pipeline: MuMuPipeline, turns: int, tokens: int) -> list[dict[str, Any]]:
    """One conversation of `turns` text turns from the steady state: per turn, its prompt's length, the tokens it
    reused from the prefix cache, the time to its first token (the prefill's end) and to its reply, and its text."""
    steady_state(pipeline)
    scheduler, conv, rows = pipeline.scheduler, pipeline.new_conversation(), []
    submit, lengths, first = scheduler.submit, [], []

    def timed(prompt: list[int], *args: Any, on_token: Callable[[int, int], None], **kw: Any) -> Any:
        lengths.append(len(prompt))
        return submit(prompt, *args, on_token=lambda row, token: (first or first.append(time.perf_counter()),
                                                                  on_token(row, token)), **kw)

    scheduler.submit = timed
    try:
        for i in range(turns):
            first.clear()
            reused = scheduler.prefix_cache.reused_tokens if scheduler.prefix_cache is not None else 0
            start = time.perf_counter()
            reply = pipeline.chat(conv, f"Now tell me about {TOPICS[i % len(TOPICS)]}.", options=text_turn(tokens)(i))
            if scheduler.prefix_cache is not None:
                reused = scheduler.prefix_cache.reused_tokens - reused
            rows.append({"prompt": lengths[-1], "reused": reused, "first_s": first[0] - start,
                         "reply_s": time.perf_counter() - start, "text": reply.text})
    finally:
        del scheduler.submit  # the instance attribute; the method shows again
    return rows


def conversation(pipeline: MuMuPipeline, turns: int, tokens: int, repeats: int) -> list[dict[str, Any]]:
    """The conversation with the prefix cache and without, interleaved, best of repeats per turn and measure."""
    runs: dict[str, list[list[dict[str, Any]]]] = {"on": [], "off": []}
    for _ in range(repeats):
        for on in ("on", "off"):
            with prefix_caching(pipeline, on == "on"):
                runs[on].append(talk(pipeline, turns, tokens))
    rows = []
    for i in range(turns):
        row: dict[str, Any] = {"turn": i + 1, "prompt": runs["on"][0][i]["prompt"],
                               "reused": runs["on"][0][i]["reused"],
                               "identical": len({run[i]["text"] for on in runs for run in runs[on]}) == 1}
        for on in runs:
            for measure_ in ("first_s", "reply_s"):
                row[f"{measure_}_{on}"] = min(run[i][measure_] for run in runs[on])
        rows.append(row)
    return rows


def conversation_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the conversation rows."""
    lines = ["| turn | prompt tokens | reused from the cache | first token, cache off (s) | first token, cache on (s) "
             "| ratio | reply, cache off (s) | reply, cache on (s) | identical text |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['turn']} | {r['prompt']} | {r['reused']} | {r['first_s_off']:.2f} | {r['first_s_on']:.2f} | "
              f"{r['first_s_on'] / r['first_s_off']:.2f} | {r['reply_s_off']:.2f} | {r['reply_s_on']:.2f} | "
              f"{'yes' if r['identical'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def staggered_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the staggered-arrival rows."""
    lines = ["| turns | every (ms) | per-window wall (s) | continuous wall (s) | ratio | p50 / p95 latency per-window "
             "(s) | p50 / p95 latency continuous (s) | batches per-window / continuous | identical text |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, c = r["per_window"], r["continuous"]
        lines.append(f"| {r['k']} | {r['gap_ms']:g} | {w['wall_s']:.2f} | {c['wall_s']:.2f} | {r['ratio']:.2f} | "
                     f"{w['p50_s']:.2f} / {w['p95_s']:.2f} | {c['p50_s']:.2f} / {c['p95_s']:.2f} | "
                     f"{w['batches']} / {c['batches']} | {'yes' if r['identical'] else 'NO'} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], music: bool = False) -> str:
    """A Markdown table of the measured rows (music: the largest music batch too, and identical tracks)."""
    kind, same = ("music turns", "identical text and track") if music else ("turns", "identical text")
    lines = [f"| concurrent {kind} | serial wall (s) | concurrent wall (s) | ratio | tokens/s serial | tokens/s "
             "concurrent | p50 / p95 latency serial (s) | p50 / p95 latency concurrent (s) | largest text batch "
             + ("| largest music batch " if music else "") + f"| {same} |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if music else "") + "---|"]
    for r in rows:
        s, c = r["serial"], r["concurrent"]
        lines.append(f"| {r['k']} | {s['wall_s']:.2f} | {c['wall_s']:.2f} | {r['ratio']:.2f} | {s['tokens_per_s']:.0f} "
                     f"| {c['tokens_per_s']:.0f} | {s['p50_s']:.2f} / {s['p95_s']:.2f} | {c['p50_s']:.2f} / "
                     f"{c['p95_s']:.2f} | {r['largest_text_batch']} | "
                     + (f"{r['largest_music_batch']} | " if music else "")
                     + f"{'yes' if r['identical'] else 'NO'} |")
    return "\n".join(lines)


def decoder_batches(decoder: MusicDecoder, k: int, seconds: float, repeats: int) -> dict[str, Any]:
    """Best-of-repeats wall time of k tracks one by one vs as one batch, interleaved, and whether they are identical."""
    device = str(next(decoder.components["decoder"].parameters()).device)
    conds = [random_conditioning(decoder, device, None) for _ in range(k)]
    settings = [SamplingSettings(duration=seconds, seed=i) for i in range(k)]
    best = {"one_by_one": math.inf, "batch": math.inf}
    identical = True
    for _ in range(repeats):
        start = time.perf_counter()
        alone = [decoder.generate(c, s).waveform for c, s in zip(conds, settings, strict=True)]
        best["one_by_one"] = min(best["one_by_one"], time.perf_counter() - start)
        start = time.perf_counter()
        batch = [a.waveform for a in decoder.generate_batch(conds, settings, [None] * k)]
        best["batch"] = min(best["batch"], time.perf_counter() - start)
        identical &= all(np.array_equal(a, b) for a, b in zip(alone, batch, strict=True))
    return {"k": k, **best, "ratio": best["batch"] / best["one_by_one"], "identical": identical}


def decoder_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the decoder-alone rows."""
    lines = ["| tracks | one by one (s) | one batch (s) | ratio | identical tracks |", "|---|---|---|---|---|"]
    lines += [f"| {r['k']} | {r['one_by_one']:.2f} | {r['batch']:.2f} | {r['ratio']:.2f} | "
              f"{'yes' if r['identical'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; exit 1 when the k=4 target is missed or any output differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="mid")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per turn")
    parser.add_argument("--track-seconds", type=float, default=2.0, help="length of each music turn's track")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=250.0, help="time between staggered text turns")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out_dir:
        pipeline = build_pipeline(args.size, out_dir)
        pipeline.model.to(args.device)
        for module in pipeline.decoder.components.values():
            module.to(args.device)
        print(f"{args.size} LLM, {args.tokens} new tokens per text turn, {args.track_seconds:g} s tracks per music "
              f"turn, device {args.device}, torch threads {torch.get_num_threads()}, batch window "
              f"{pipeline.scheduler.window_s * 1000:g} ms, load average before {os.getloadavg()[0]:.2f}")
        with forced_length(pipeline.model):
            turn(pipeline, 0, text_turn(2)(0))  # warm-up
            rows = [measure(pipeline, k, text_turn(args.tokens), args.tokens, args.repeats) for k in CONCURRENCY]
            with prefix_caching(pipeline, False):
                uncached = [measure(pipeline, k, text_turn(args.tokens), args.tokens, args.repeats)
                            for k in CONCURRENCY]
            talk = conversation(pipeline, CONVERSATION_TURNS, args.tokens, args.repeats)
            arrivals = [staggered(pipeline, k, args.gap_ms / 1000, args.tokens, args.repeats) for k in STAGGERED]
        turn(pipeline, 0, music_turn(0.2)(0))  # warm-up
        music = [measure(pipeline, k, music_turn(args.track_seconds), 8, args.repeats) for k in CONCURRENCY]
        tracks = [decoder_batches(pipeline.decoder, k, args.track_seconds, args.repeats) for k in CONCURRENCY]
    print(table(rows))
    print()
    print(table(uncached))
    print()
    print(conversation_table(talk))
    print()
    print(staggered_table(arrivals))
    print()
    print(table(music, music=True))
    print()
    print(decoder_table(tracks))
    at4 = next(r for r in rows if r["k"] == 4)["ratio"]
    uncached_at4 = next(r for r in uncached if r["k"] == 4)["ratio"]
    music_at4 = next(r for r in music if r["k"] == 4)["ratio"]
    ok = at4 <= TARGET_AT_4 and all(r["identical"] for r in rows + uncached + talk + arrivals + music + tracks)
    print(f"target: 4 concurrent turns in <= {TARGET_AT_4}x the serial time; measured {at4:.2f}x for text "
          f"({uncached_at4:.2f}x with the prefix cache off), {music_at4:.2f}x for music turns "
          f"({'met' if ok else 'MISSED'}); load average after {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
