"""Entry point for local use and Hugging Face Spaces: build the pipeline once, launch the Gradio demo."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile

import gradio as gr
import torch

from demo.ui import build_demo
from generation.registry import DECODER_KINDS, build_decoder
from mumu.builder import build_model
from mumu.pipeline import MuMuPipeline
from mumu.profiles import resolve_profile


def build_app(profile: str = "auto", decoder: str = "musicgen") -> tuple[gr.Blocks, MuMuPipeline]:
    """Load the models once and build the UI; generated files live in a temp area removed at exit."""
    config, fallback = resolve_profile(profile, decoder=decoder)
    if fallback:
        print(f"NOTE: {fallback}", file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = tempfile.mkdtemp(prefix="mumu-demo-")
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    pipeline = MuMuPipeline(build_model(config, device=device), build_decoder(config.decoder, device=device), out_dir)
    banner = None
    if config.profile == "tiny":
        banner = ("running the offline tiny profile: its weights are random, so answers are gibberish and music is "
                  "noise. Install the full weights (see checkpoints/README.md) for real results.")
    return build_demo(pipeline, banner), pipeline


def serve(demo: gr.Blocks, host: str, port: int, block: bool = True) -> None:
    """Launch with the demo's queue limits; never a public share link."""
    demo.queue(default_concurrency_limit=1, max_size=32).launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(description="MuMu-LLaMA multimodal music assistant (web demo)")
    parser.add_argument("--profile", choices=("tiny", "full", "auto"), default="auto")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    # Spaces (and other hosts) set these variables; locally the demo stays on the loopback interface.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    demo, _ = build_app(args.profile, args.decoder)
    serve(demo, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
