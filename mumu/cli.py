"""`python -m mumu`: command-line entry points."""

from __future__ import annotations

import argparse
import json
import sys

from mumu.info import format_report, report
from mumu.profiles import DECODER_KINDS, PROFILES, get_profile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mumu", description="MuMu-LLaMA multimodal music assistant")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="component tree, parameter counts and memory estimates")
    info.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    info.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; 2 on bad input with one line on stderr."""
    args = _parser().parse_args(argv)
    if args.command == "info":
        try:
            data = report(get_profile(args.profile, decoder=args.decoder))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0
