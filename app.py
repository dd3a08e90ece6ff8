"""Entry point for local use and Hugging Face Spaces: choose the model, build the pipeline once, launch the demo."""

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
from generation.registry import DECODER_KINDS
from mumu.config import DEVICE_MAPS, QUANTIZE_MODES
from mumu.model_source import MODEL_ENV, LoadOptions, ModelChoice, choose_model, load_pipeline
from mumu.pipeline import MuMuPipeline

QUANTIZE_ENV = "MUMU_QUANTIZE"  # for Spaces, which start app.py without arguments


def build_app(
    profile: str = "auto", decoder: str = "musicgen", model: str | None = None, quantize: str | None = None,
    device_map: str | None = None,
) -> tuple[gr.Blocks, MuMuPipeline, ModelChoice]:
    """Choose and load the model once and build the UI; generated files live in a temp area removed at exit."""
    options = LoadOptions("cuda" if torch.cuda.is_available() else "cpu", quantize, device_map)
    choice = choose_model(model, profile, decoder, options)
    print(choice.describe(), file=sys.stderr, flush=True)
    out_dir = tempfile.mkdtemp(prefix="mumu-demo-")
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    pipeline = load_pipeline(choice, options, out_dir)
    return build_demo(pipeline, choice.describe()), pipeline, choice


def serve(demo: gr.Blocks, host: str, port: int, block: bool = True) -> None:
    """Launch with the demo's queue limits; never a public share link."""
    demo.queue(default_concurrency_limit=1, max_size=32).launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted; a model that cannot be had or held is one line and exit 2."""
    parser = argparse.ArgumentParser(description="MuMu-LLaMA multimodal music assistant (web demo)")
    parser.add_argument("--model", default=os.environ.get(MODEL_ENV) or None,
                        help=f"MuMu checkpoint directory, its Hub id, or a published M2UGen id (default ${MODEL_ENV}); "
                        "overrides --profile")
    parser.add_argument("--profile", choices=("tiny", "full", "auto"), default="auto",
                        help="auto: a trained model already here, else download the default one if it fits, else tiny")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default=os.environ.get(QUANTIZE_ENV) or None,
                        help=f"load the frozen LLM quantized (CUDA, bitsandbytes; default ${QUANTIZE_ENV})")
    parser.add_argument("--device-map", choices=DEVICE_MAPS, help="spread the LLM over GPU, CPU RAM and disk")
    # Spaces (and other hosts) set these variables; locally the demo stays on the loopback interface.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    try:
        demo, _, _ = build_app(args.profile, args.decoder, args.model, args.quantize, args.device_map)
    except (ValueError, OSError) as e:  # DoesNotFit is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    serve(demo, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
