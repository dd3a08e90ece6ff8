"""The model flags of every command that runs the model (chat, score-video, eval), and the choice they make.

One definition, so `--profile auto`, `--model` (default $MUMU_MODEL), `--quantize` and `--device-map` mean the same
everywhere, and every command loads through mumu.model_source: the fit check before any download, weights in the
device's precision (bf16 on a GPU), the LLM quantized or spread when asked.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from generation.registry import DECODER_KINDS
from mumu.config import DEVICE_MAPS, QUANTIZE_MODES
from mumu.model_source import MODEL_ENV, LoadOptions, ModelChoice, choose_model
from mumu.profiles import PROFILES

MODEL_HELP = "MuMu checkpoint directory, its Hub id, or a published M2UGen id"


def add_model_args(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """Which model a command runs and how it loads (scope: a prefix for the help texts)."""
    parser.add_argument("--profile", choices=(*sorted(PROFILES), "auto"), default="tiny",
                        help=f"{scope}auto: a trained model already here, else the default one downloaded if it fits, "
                        "else tiny")
    parser.add_argument("--model", "--checkpoint", dest="model", default=os.environ.get(MODEL_ENV) or None,
                        help=f"{scope}{MODEL_HELP} (default ${MODEL_ENV}); overrides --profile")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES,
                        help=f"{scope}load the frozen LLM quantized (CUDA, bitsandbytes)")
    parser.add_argument("--device-map", choices=DEVICE_MAPS, help=f"{scope}spread the LLM over GPU, CPU RAM and disk")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")


def choose_from_args(args: argparse.Namespace, device: str | None = None) -> tuple[ModelChoice, LoadOptions]:
    """The model the flags ask for on `device` (default: CUDA when there is one), saying on stderr which and why."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = LoadOptions(device, args.quantize, args.device_map)
    choice = choose_model(args.model, args.profile, args.decoder, options)
    print(choice.describe(), file=sys.stderr, flush=True)
    print("loading model...", file=sys.stderr, flush=True)
    return choice, options
