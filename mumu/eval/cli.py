"""The `eval` subcommand: parse its options, build the model and the task, run it (see mumu.eval.runner)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from accelerate import PartialState

from generation.registry import DECODER_KINDS
from mumu.profiles import PROFILES

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
    source = ev.add_mutually_exclusive_group()
    source.add_argument("--model", help="MuMu checkpoint directory or Hub id")
    source.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    ev.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen", help="with --profile")
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


def _model(args: argparse.Namespace, device: str) -> Any:
    from mumu.builder import build_model
    from mumu.checkpoint import from_pretrained
    from mumu.profiles import get_profile

    if args.model:
        return from_pretrained(args.model, device=device)
    return build_model(get_profile(args.profile, decoder=args.decoder), device=device)


def _pipeline(args: argparse.Namespace, device: str, out_dir: Path) -> Any:
    from mumu.pipeline import MuMuPipeline

    if args.model:
        return MuMuPipeline.from_pretrained(args.model, device=device, out_dir=out_dir)
    return MuMuPipeline.from_profile(args.profile, decoder=args.decoder, device=device, out_dir=out_dir)


def build_task(name: str, args: argparse.Namespace, device: str) -> Any:
    """The task object for `name`, with its model and reference models loaded."""
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--batch-size and --limit must be >= 1")
    if name == "muchomusic":
        from mumu.eval.muchomusic import MuChoMusicTask

        return MuChoMusicTask(_model(args, device), args.data, args.media_root, args.batch_size, not args.no_swap)
    if name in ("captioning", "musicqa"):
        from mumu.eval.captioning import TextTask

        bertscore = None if args.bertscore_model == "none" else args.bertscore_model
        return TextTask(name, _model(args, device), args.data, args.media_root, args.batch_size, args.max_new_tokens,
                        bertscore, args.bertscore_layers)
    from mumu.eval.generation import GenerationTask
    from mumu.eval.references import ReferenceModels

    references = ReferenceModels(clap=args.clap, mert=args.mert, tagger=args.tagger,
                                 embeddings=tuple(args.embedding or ("clap",)), device=device)
    return GenerationTask(name, _pipeline(args, device, args.out / "audio"), references, args.data, args.media_root,
                          args.out, duration=args.duration, seed=args.seed)


def _state() -> PartialState:
    """The process group: GPUs under `accelerate launch`; CPU processes (gloo) under torchrun on a machine without
    CUDA, where accelerate only forms a group when told to use the CPU."""
    import torch

    return PartialState(cpu=not torch.cuda.is_available() and "WORLD_SIZE" in os.environ)


def eval_command(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run `mumu eval`; the summary on the main process, None on the others."""
    from mumu.eval.runner import run_eval

    state = _state()
    if args.task == "ablation":
        from mumu.eval.ablation import AblationTask

        if args.of is None:
            raise ValueError("ablation needs --of TASK (the task whose media is swapped)")
        task = AblationTask(build_task(args.of, args, str(state.device)))
    else:
        task = build_task(args.task, args, str(state.device))
    meta = {"task": args.task, "of": args.of, "model": args.model or f"profile:{args.profile}",
            "data": str(args.data), "processes": state.num_processes}
    result = run_eval(task, args.out, limit=args.limit, state=state, meta=meta,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    return result.summary
