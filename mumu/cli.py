"""`python -m mumu`: the command-line entry points (chat, info, edit, score-video, eval, features, train, convert)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from generation.config import SamplingSettings
from generation.registry import DECODER_KINDS
from media.audio_out import FORMATS
from media.edit_file import edit_file
from media.edits import EditPlan, parse_trim
from media.errors import MediaError
from media.score_mix import DuckSettings
from mumu.config import CONDITIONING_MODES, QUANTIZE_MODES
from mumu.decoding import MUSIC_MODES
from mumu.eval import cli as evaluation
from mumu.info import format_report, report
from mumu.model_args import MODEL_HELP, add_model_args, choose_from_args
from mumu.model_source import LoadOptions, ModelChoice, fitted, load_pipeline, peek_config
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.profiles import PROFILES, get_profile
from mumu.scoring import STEM_FORMATS, ScoreSettings, compose_for_video, parse_hit_points, score_video
from mumu.training import run as training

EDIT_ORDER = "trim -> tempo -> pitch -> loop -> fades -> gain -> loudness"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mumu", description="MuMu-LLaMA multimodal music assistant")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="component tree, parameter counts and memory estimates")
    info.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    info.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    info.add_argument("--model", help=MODEL_HELP + " (only its config.json is read)")
    info.add_argument("--quantize", choices=QUANTIZE_MODES, help="show memory with the frozen LLM quantized")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    chat = commands.add_parser("chat", help="one chat turn with optional media; music on demand")
    add_model_args(chat)
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
    _add_score_video(commands)
    training.add_commands(commands)
    evaluation.add_command(commands)
    return parser


def _load(args: argparse.Namespace, out_dir: str | Path) -> tuple[MuMuPipeline, ModelChoice]:
    """The pipeline the model flags ask for, saying on stderr which model runs and why."""
    choice, options = choose_from_args(args)
    return load_pipeline(choice, options, out_dir), choice


def _add_score_video(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser(
        "score-video", help="fit music to a video: downbeats on the cuts, ducked under speech, muxed",
        description="Writes OUT.mp4 (the clip with its new soundtrack), OUT.music.wav (the music stem), "
        "OUT.cues.json and OUT.cues.csv (hit points, cuts, speech, beats before and after fitting).",
    )
    score.add_argument("--video", required=True, type=Path)
    music = score.add_mutually_exclusive_group(required=True)
    music.add_argument("--music", type=Path, help="a track to fit to the clip")
    music.add_argument("--prompt", help="have the model make the music (it sees the clip), as long as the clip")
    score.add_argument("--out", required=True, type=Path, help="the scored video (.mp4)")
    score.add_argument("--hit-points", default="auto", help="auto (the scene cuts), none, or seconds: 1.5,4,7.25")
    score.add_argument("--duck", type=float, default=12.0, help="dB the music dips under speech (0 = off)")
    score.add_argument("--keep-original-audio", action="store_true", help="mix the clip's own audio in (and duck)")
    score.add_argument("--loudness", type=float, default=-14.0, help="integrated loudness of the result, LUFS")
    score.add_argument("--stem-format", choices=STEM_FORMATS, default="wav")
    score.add_argument("--seed", type=int, default=0, help="with --prompt")
    add_model_args(score, scope="with --prompt: ")
    score.add_argument("--json", action="store_true", help="print one JSON object (the cue sheet)")


def _score_video(args: argparse.Namespace) -> dict:
    settings = ScoreSettings(hit_points=parse_hit_points(args.hit_points), duck=DuckSettings(depth_db=args.duck),
                             keep_original_audio=args.keep_original_audio, loudness_lufs=args.loudness,
                             stem_format=args.stem_format).validate()
    music: Path | tuple = args.music
    if args.prompt is not None:
        with tempfile.TemporaryDirectory() as scratch:
            pipeline, _ = _load(args, scratch)
            print("composing...", file=sys.stderr, flush=True)
            music = compose_for_video(pipeline, args.video, args.prompt, args.seed)
    return score_video(args.video, music, args.out, settings).report()


def _print_score(data: dict) -> None:
    before, after = data["scores"]["before"], data["scores"]["after"]
    print(f"{data['outputs']['video']}: {data['clip']['duration']} s, {len(data['hit_points'])} hit points, "
          f"{len(data['music']['after']['missed'])} missed; BHS {_pct(before['bhs'])} -> {_pct(after['bhs'])}, "
          f"BCS {_pct(before['bcs'])} -> {_pct(after['bcs'])}; {data['mix']['loudness_lufs']} LUFS; "
          f"stem {data['outputs']['stem']}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _edit(args: argparse.Namespace) -> dict:
    start, end = parse_trim(args.trim) if args.trim else (0.0, None)
    plan = EditPlan(tempo=args.tempo, semitones=args.semitones, trim_start=start, trim_end=end,
                    fade_in=args.fade_in, fade_out=args.fade_out, loop=args.loop, gain_db=args.gain,
                    loudness_lufs=args.loudness)
    written = edit_file(args.input, plan, args.out, bit_depth=args.bit_depth, metadata={"source": args.input.name})
    edited, rate = written.waveform, written.sample_rate
    return {"audio": str(written.path), "sample_rate": rate, "channels": 1 if edited.ndim == 1 else edited.shape[0],
            "seconds": round(edited.shape[-1] / rate, 3)}


def _info(args: argparse.Namespace) -> dict:
    config = peek_config(args.model) if args.model else get_profile(args.profile, decoder=args.decoder)
    return report(fitted(config, LoadOptions(quantize=args.quantize)))


def _chat(args: argparse.Namespace) -> dict:
    pipeline, choice = _load(args, args.out_dir)
    sampling = SamplingSettings(duration=10.0 if args.duration is None else args.duration, seed=args.seed)
    options = ChatOptions(music=args.music, fit_video=args.duration is None, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, sampling=sampling)
    conv = pipeline.new_conversation()
    print("thinking...", file=sys.stderr, flush=True)
    reply = pipeline.chat(conv, args.text, audio=args.audio, image=args.image, video=args.video, options=options)
    return {"text": reply.text, "audio": reply.audio, "sample_rate": reply.sample_rate,
            "timings": {k: round(v, 4) for k, v in reply.timings.items()}, "model": choice.to_dict()}


def main(argv: list[str] | None = None) -> int:
    """Run a command; exit 2 on bad input with one line on stderr."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            data = _info(args)
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
        elif args.command == "score-video":
            data = _score_video(args)
            if args.json:
                print(json.dumps(data))
            else:
                _print_score(data)
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
