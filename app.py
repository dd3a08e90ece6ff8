"""Entry point for local use (and, with the demo issue, Hugging Face Spaces).

Until the Gradio demo lands, this builds the chosen profile and runs one real chat turn through the whole
pipeline (encoders/adapters/injection -> LoRA LLM -> [AUD] states -> projector -> music decoder -> file),
so a fresh install proves every part works end to end.
"""

from __future__ import annotations

import argparse
import sys

import torch

from generation.config import SamplingSettings
from generation.factory import build_decoder
from mumu.builder import build_model
from mumu.info import format_report, model_report
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.profiles import DECODER_KINDS, resolve_profile


def main(argv: list[str] | None = None) -> int:
    """Build the pipeline and answer one prompt with music."""
    parser = argparse.ArgumentParser(description="MuMu-LLaMA multimodal music assistant")
    parser.add_argument("--profile", choices=("tiny", "full", "auto"), default="auto")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    parser.add_argument("--text", default="Compose calm piano music for a rainy evening.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="outputs")
    args = parser.parse_args(argv)

    config, fallback = resolve_profile(args.profile, decoder=args.decoder)
    if fallback:
        print(f"NOTE: {fallback}", file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, decoder = build_model(config, device=device), build_decoder(config.decoder, device=device)
    print(format_report(model_report(model, decoder)))
    pipeline = MuMuPipeline(model, decoder, out_dir=args.out_dir)
    options = ChatOptions(music="always", max_new_tokens=32, sampling=SamplingSettings(duration=2.0, seed=args.seed))
    reply = pipeline.chat(pipeline.new_conversation(), args.text, options=options)
    print(f"\nuser: {args.text}\nassistant: {reply.text!r}")
    print(f"music: {reply.audio} ({reply.sample_rate} Hz); timings: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in reply.timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
