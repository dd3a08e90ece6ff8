"""The `eval` subcommand: parse its options, build the model and the task, run it (see mumu.eval.runner)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from accelerate import PartialState

from mumu.model_args import add_model_args, choose_from_args
from mumu.model_source import LoadOptions, ModelChoice

UNDERSTANDING = ("muchomusic", "captioning", "musicqa")
GENERATION = ("text2music", "image2music", "video2music", "edit")
TASKS = (*UNDERSTANDING, *GENERATION, "ablation")
EMBEDDINGS = ("clap", "mert")
DEFAULT_CLAP = "laion/larger_clap_music"
DEFAULT_MERT = "m-a-p/MERT-v1-95M"
DEFAULT_TAGGER = "MIT/ast-finetuned-audioset-10-10-0.4593"


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register `eval` on the CLI's subcommands."""
    ev = commands.add_parser(
        "eval", help="benchmarks: MuChoMusic, captioning/MusicQA text metrics, generation metrics, ablation",
        description="Resumable: results.jsonl gets one line per item and a re-run skips finished items. Runs "
        "unchanged under `accelerate launch` (each process takes its share; the main process gathers and reports). "
        "Writes OUT/results.jsonl, OUT/summary.json and OUT/report.md (+ OUT/plots/).")
    ev.add_argument("task", choices=TASKS)
    add_model_args(ev)
    ev.add_argument("--data", required=True, type=Path, help="the benchmark file (see docs/evaluation.md)")
    ev.add_argument("--media-root", type=Path, help="folder the data's media paths are relative to")
    ev.add_argument("--out", required=True, type=Path, help="output folder (re-use it to resume)")
    ev.add_argument("--limit", type=int, help="only the first N items")
    ev.add_argument("--batch-size", type=int, default=4,
                    help="option rows per forward (muchomusic), replies per generate call (captioning, musicqa)")
    ev.add_argument("--of", choices=(*UNDERSTANDING, *GENERATION), help="ablation: the task whose media is swapped")
    ev.add_argument("--no-swap", action="store_true", help="muchomusic: skip the audio-swap replay")
    ev.add_argument("--max-new-tokens", type=int, default=128)
    ev.add_argument("--embedding", choices=EMBEDDINGS, action="append",
                    help="FAD embedding(s); repeat for several (default: clap)")
    ev.add_argument("--clap", default=DEFAULT_CLAP, help="CLAP model (FAD-CLAP and the text-audio score)")
    ev.add_argument("--mert", default=DEFAULT_MERT, help="MERT model for FAD-MERT")
    ev.add_argument("--tagger", default=DEFAULT_TAGGER, help="AudioSet tagger for KL (AST)")
    ev.add_argument("--bertscore-model", default="roberta-large",
                    help="BERTScore model (captioning, musicqa); 'none' to skip")
    ev.add_argument("--bertscore-layers", type=int, help="its layer (default: bert-score's table)")
    ev.add_argument("--duration", type=float, default=10.0, help="seconds of generated music (video: the clip's)")
    ev.add_argument("--seed", type=int, default=0)


def build_task(name: str, args: argparse.Namespace, model: ModelChoice, options: LoadOptions) -> Any:
    """The task object for `name`, with its model (loaded as `mumu chat` loads it: mumu.model_source) and reference
    models loaded. Understanding tasks load the model alone, generation tasks the pipeline with its decoder."""
    from mumu.model_source import load_model, load_pipeline

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--batch-size and --limit must be >= 1")
    if name == "muchomusic":
        from mumu.eval.muchomusic import MuChoMusicTask

        return MuChoMusicTask(load_model(model, options), args.data, args.media_root, args.batch_size,
                              not args.no_swap)
    if name in ("captioning", "musicqa"):
        from mumu.eval.captioning import TextTask

        bertscore = None if args.bertscore_model == "none" else args.bertscore_model
        return TextTask(name, load_model(model, options), args.data, args.media_root, args.batch_size,
                        args.max_new_tokens, bertscore, args.bertscore_layers)
    from mumu.eval.generation import GenerationTask
    from mumu.eval.references import ReferenceModels

    references = ReferenceModels(clap=args.clap, mert=args.mert, tagger=args.tagger,
                                 embeddings=tuple(args.embedding or ("clap",)), device=options.device)
    return GenerationTask(name, load_pipeline(model, options, args.out / "audio"), references, args.data,
                          args.media_root, args.out, duration=args.duration, seed=args.seed)


def _state() -> PartialState:
    """The process group: GPUs under `accelerate launch`; CPU processes (gloo) under torchrun on a machine without
    CUDA, where accelerate only forms a group when told to use the CPU."""
    import torch

    return PartialState(cpu=not torch.cuda.is_available() and "WORLD_SIZE" in os.environ)


def eval_command(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run `mumu eval`; the summary on the main process, None on the others."""
    from mumu.eval.runner import run_eval

    state = _state()
    if args.task == "ablation" and args.of is None:
        raise ValueError("ablation needs --of TASK (the task whose media is swapped)")
    model, options = choose_from_args(args, str(state.device))
    if args.task == "ablation":
        from mumu.eval.ablation import AblationTask

        task = AblationTask(build_task(args.of, args, model, options))
    else:
        task = build_task(args.task, args, model, options)
    # The model that ran (with --profile auto, the one auto chose) and why.
    meta = {"task": args.task, "of": args.of, "model": model.name if model.checkpoint else f"profile:{model.name}",
            "model_reason": model.reason, "data": str(args.data), "processes": state.num_processes}
    result = run_eval(task, args.out, limit=args.limit, state=state, meta=meta,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    return result.summary
