"""`python -m mumu`: command-line entry points (chat, info, edit, features, train, convert-upstream, eval)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from generation.config import SamplingSettings
from media.audio_out import FORMATS
from media.edit_file import edit_file
from media.edits import EditPlan, parse_trim
from media.errors import MediaError
from mumu.config import CONDITIONING_MODES
from mumu.decoding import MUSIC_MODES
from mumu.eval import cli as evaluation
from mumu.info import format_report, report
from mumu.profiles import DECODER_KINDS, PROFILES, get_profile
from mumu.training import run as training

EDIT_ORDER = "trim -> tempo -> pitch -> loop -> fades -> gain -> loudness"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mumu", description="MuMu-LLaMA multimodal music assistant")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="component tree, parameter counts and memory estimates")
    info.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    info.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    chat = commands.add_parser("chat", help="one chat turn with optional media; music on demand")
    source = chat.add_mutually_exclusive_group()
    source.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    source.add_argument("--checkpoint", help="MuMu checkpoint directory or Hub id")
    chat.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    chat.add_argument("--text", required=True)
    chat.add_argument("--audio", type=Path)
    chat.add_argument("--image", type=Path)
    chat.add_argument("--video", type=Path)
    chat.add_argument("--music", choices=MUSIC_MODES, default="auto")
    chat.add_argument("--duration", type=float, help="seconds of music (default: the video's length, else 10)")
    chat.add_argument("--seed", type=int, default=0)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    chat.add_argument("--top-p", type=float, default=1.0)
    chat.add_argument("--max-new-tokens", type=int)
    chat.add_argument("--out-dir", type=Path, default=Path("outputs"))
    chat.add_argument("--json", action="store_true", help='print one JSON object {"text", "audio", ...}')
    convert = commands.add_parser(
        "convert-upstream", help="import a published M2UGen / MuMu-LLaMA checkpoint.pth into a MuMu checkpoint",
        description="Reads checkpoint.pth memory-mapped; writes OUT/config.json, OUT/model.safetensors (trained "
        "tensors only) and OUT/conversion.json (the report, also printed). Components default to the published "
        "Hub ids.",
    )
    convert.add_argument("--checkpoint", required=True, type=Path, help="the published checkpoint.pth")
    convert.add_argument("--llm", required=True, help="base Llama-2 in HF format: a directory or Hub id")
    convert.add_argument("--out", required=True, type=Path, help="output directory")
    convert.add_argument("--mert", help="MERT directory or Hub id (default m-a-p/MERT-v1-330M)")
    convert.add_argument("--vit", help="ViT directory or Hub id (default google/vit-base-patch16-224)")
    convert.add_argument("--vivit", help="ViViT directory or Hub id (default google/vivit-b-16x2-kinetics400)")
    convert.add_argument("--decoder", help="music decoder directory or Hub id (default: the one it was trained for)")
    convert.add_argument("--conditioning", choices=CONDITIONING_MODES, default="caption",
                         help="how replies condition the decoder: caption (as the published app) or embeddings")
    edit = commands.add_parser(
        "edit", help="exact edits as signal operations",
        description=f"Exact edits, applied in this order: {EDIT_ORDER}. Levels are left alone unless --loudness "
        "or --gain is given.",
    )
    edit.add_argument("--input", required=True, type=Path)
    edit.add_argument("--out", required=True, type=Path, help=f"output file ({', '.join(FORMATS)})")
    edit.add_argument("--tempo", type=float, default=1.0, help="tempo factor keeping pitch (1.25 = 25%% faster)")
    edit.add_argument("--semitones", type=float, default=0.0, help="pitch shift keeping duration")
    edit.add_argument("--trim", help="START:END in seconds or m:ss, either side may be empty")
    edit.add_argument("--fade-in", type=float, default=0.0, help="seconds")
    edit.add_argument("--fade-out", type=float, default=0.0, help="seconds")
    edit.add_argument("--loop", type=int, default=1, help="play N times with click-free seams")
    edit.add_argument("--gain", type=float, default=0.0, help="dB")
    edit.add_argument("--loudness", type=float, help="target integrated loudness in LUFS (peak-safe)")
    edit.add_argument("--bit-depth", type=int, choices=(16, 24), default=16)
    training.add_commands(commands)
    evaluation.add_command(commands)
    return parser


def _edit(args: argparse.Namespace) -> dict:
    start, end = parse_trim(args.trim) if args.trim else (0.0, None)
    plan = EditPlan(tempo=args.tempo, semitones=args.semitones, trim_start=start, trim_end=end,
                    fade_in=args.fade_in, fade_out=args.fade_out, loop=args.loop, gain_db=args.gain,
                    loudness_lufs=args.loudness)
    written = edit_file(args.input, plan, args.out, bit_depth=args.bit_depth, metadata={"source": args.input.name})
    edited, rate = written.waveform, written.sample_rate
    return {"audio": str(written.path), "sample_rate": rate, "channels": 1 if edited.ndim == 1 else edited.shape[0],
            "seconds": round(edited.shape[-1] / rate, 3)}


def _chat(args: argparse.Namespace) -> dict:
    # Imported here: building a pipeline pulls in every model library, which info and edit do not need.
    from mumu.pipeline import ChatOptions, MuMuPipeline

    print("loading model...", file=sys.stderr, flush=True)
    if args.checkpoint:
        pipeline = MuMuPipeline.from_pretrained(args.checkpoint, out_dir=args.out_dir)
    else:
        pipeline = MuMuPipeline.from_profile(args.profile, decoder=args.decoder, out_dir=args.out_dir)
    sampling = SamplingSettings(duration=10.0 if args.duration is None else args.duration, seed=args.seed)
    options = ChatOptions(music=args.music, fit_video=args.duration is None, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, sampling=sampling)
    conv = pipeline.new_conversation()
    print("thinking...", file=sys.stderr, flush=True)
    reply = pipeline.chat(conv, args.text, audio=args.audio, image=args.image, video=args.video, options=options)
    return {"text": reply.text, "audio": reply.audio, "sample_rate": reply.sample_rate,
            "timings": {k: round(v, 4) for k, v in reply.timings.items()}}


def main(argv: list[str] | None = None) -> int:
    """Run a command; exit 2 on bad input with one line on stderr."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            data = report(get_profile(args.profile, decoder=args.decoder))
            print(json.dumps(data, indent=2) if args.json else format_report(data))
        elif args.command == "convert-upstream":
            from mumu.upstream.convert import convert

            result = convert(args.checkpoint, args.llm, args.out, mert=args.mert, vit=args.vit, vivit=args.vivit,
                             decoder=args.decoder, conditioning=args.conditioning)
            print(json.dumps(result.to_dict(), indent=2))
        elif args.command == "chat":
            data = _chat(args)
            if args.json:
                print(json.dumps(data))
            else:
                print(data["text"] + (f"\n[music: {data['audio']}]" if data["audio"] else ""))
        elif args.command == "features":
            print(json.dumps(training.features_command(args)))
        elif args.command == "train":
            summary = training.train_command(args)
            if summary is not None:  # under `accelerate launch`, only the main process reports
                print(json.dumps(summary))
        elif args.command == "eval":
            summary = evaluation.eval_command(args)
            if summary is not None:
                print(json.dumps(summary))
        else:
            print(json.dumps(_edit(args)))
    except (MediaError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
