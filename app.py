"""Entry point for local use (and, with the demo issue, Hugging Face Spaces).

Until the Gradio demo lands, this builds the chosen profile, prints its component report and runs one
real turn through the whole model (tokenizer -> encoders/adapters/injection -> LoRA LLM -> [AUD] states ->
output projector), so a fresh install proves every part works end to end.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mumu.builder import build_model
from mumu.decoding import GenerationSettings, generate
from mumu.info import format_report, model_report
from mumu.profiles import DECODER_KINDS, resolve_profile
from mumu.tokens import encode_text


def main(argv: list[str] | None = None) -> int:
    """Build the model and answer one prompt with music conditioning."""
    parser = argparse.ArgumentParser(description="MuMu-LLaMA multimodal music assistant")
    parser.add_argument("--profile", choices=("tiny", "full", "auto"), default="auto")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen")
    parser.add_argument("--text", default="Compose calm piano music for a rainy evening.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config, fallback = resolve_profile(args.profile, decoder=args.decoder)
    if fallback:
        print(f"NOTE: {fallback}", file=sys.stderr)
    model = build_model(config, device="cuda" if torch.cuda.is_available() else "cpu")
    print(format_report(model_report(model)))
    prompt = [model.ids.bos, *encode_text(model.tokenizer, args.text)]
    settings = GenerationSettings(max_new_tokens=32, music="always", seed=args.seed)
    reply = generate(model, [prompt], settings=settings)[0]
    print(f"\nuser: {args.text}\nassistant: {reply.text!r}")
    with torch.no_grad():
        conditioning = model.project(reply.audio_hidden[None])
    for name, tensor in conditioning.embeds.items():
        kept = int(conditioning.masks[name].sum()) if name in conditioning.masks else tensor.shape[1]
        print(f"music conditioning for {config.decoder.kind}: {name} {tuple(tensor.shape)}, {kept} tokens kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
