"""`python -m mumu features` and `python -m mumu train`: arguments, and wiring data, features and the trainer."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from generation.registry import DECODER_KINDS, build_decoder
from mumu.builder import FrozenEncoders, build_encoders, build_model
from mumu.checkpoint import from_pretrained, resolve_checkpoint
from mumu.config import MuMuConfig
from mumu.data.dataset import TrainingSet, split_records
from mumu.data.features import FeatureStore, fill, fingerprint, media_keys, needed_keys
from mumu.data.records import DATA_KINDS, Record, parse_data_arg, read_all
from mumu.modeling import MuMuModel
from mumu.profiles import PROFILES, get_profile
from mumu.training.defaults import describe, fill_defaults
from mumu.training.stages import STAGE_DATA, stage_trainable, untrained_adapters_warning
from mumu.training.trainer import PRECISIONS, STATE_NAME, Trainer, TrainSettings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _model_and_data_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    source.add_argument("--checkpoint", help="start from a MuMu checkpoint directory or Hub id (e.g. stage 1's)")
    parser.add_argument("--decoder", choices=DECODER_KINDS, default="musicgen", help="with --profile")
    kinds = "; ".join(f"{k}: {v}" for k, v in DATA_KINDS.items())
    parser.add_argument("--data", required=True, help=f"KIND=PATH[,KIND=PATH...]. Kinds: {kinds}")
    parser.add_argument("--media-root", required=True, type=Path, help="media paths in the data are relative to it")
    parser.add_argument("--base-dtype", choices=sorted(DTYPES), default="float32",
                        help="dtype of the frozen parts (bfloat16 halves memory on GPU; trained tensors stay float32)")


def add_commands(commands: Any) -> None:
    """Register the `features` and `train` subcommands."""
    features = commands.add_parser(
        "features", help="run the frozen encoders and decoder text encoder once over a dataset",
        description="Stores encoder features of every media file and the decoder's text-encoder targets of every "
        "music caption (safetensors shards + index.json), so training never re-runs frozen models. Re-running "
        "into the same --out only computes what is missing.")
    _model_and_data_args(features)
    features.add_argument("--out", required=True, type=Path)
    train = commands.add_parser(
        "train", help="train one stage (1 encoders, 2 decoder, 3 instructions) on accelerate",
        description="Multi-GPU: `accelerate launch -m mumu train ...` (DDP); FSDP or DeepSpeed through "
        "`accelerate launch --config_file CONFIG`. The output directory loads with `mumu chat --checkpoint OUT`; its "
        f"config.json records the run's settings. Per-profile defaults (--checkpoint: its profile's) -- {describe()}.")
    _model_and_data_args(train)
    train.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    train.add_argument("--features", type=Path, help="a store from `mumu features`; what it lacks is computed once")
    length = train.add_mutually_exclusive_group(required=True)
    length.add_argument("--max-steps", type=int)
    length.add_argument("--epochs", type=int)
    train.add_argument("--out", required=True, type=Path)
    train.add_argument("--batch-size", type=int, help="per device (default: the profile's)")
    train.add_argument("--grad-accum", type=int, default=1)
    train.add_argument("--lr", type=float, help="peak learning rate (default: the profile's)")
    train.add_argument("--min-lr-ratio", type=float, help="cosine floor as a fraction of --lr (default: the profile's)")
    train.add_argument("--weight-decay", type=float, default=0.05, help="weight matrices only")
    train.add_argument("--warmup-steps", type=int, help="(default: the profile's)")
    train.add_argument("--max-grad-norm", type=float, default=1.0)
    train.add_argument("--mse-weight", type=float, default=1.0)
    train.add_argument("--max-length", type=int, help="tokens per sample (default: the config's context)")
    train.add_argument("--eval-fraction", type=float, default=0.05, help="held-out share of the records")
    train.add_argument("--eval-every", type=int, default=0, help="steps (0: only at the end)")
    train.add_argument("--save-every", type=int, default=0, help="steps (0: only at the end)")
    train.add_argument("--log-every", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--mixed-precision", choices=PRECISIONS, default="no", help="bf16/fp16 autocast (GPU)")
    train.add_argument("--train-adapters", action="store_true",
                       help="also train the understanding adapters (stages 2 and 3 freeze them; stage 1 trains them)")
    train.add_argument("--resume", help="a checkpoint directory from an earlier run, or 'latest' (in --out)")


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _model(args: argparse.Namespace) -> MuMuModel:
    dtype = DTYPES[args.base_dtype]
    if args.checkpoint:
        return from_pretrained(args.checkpoint, dtype=dtype)
    return build_model(get_profile(args.profile, decoder=args.decoder), dtype=dtype)


def _records(args: argparse.Namespace) -> list[Record]:
    records, reports = read_all(parse_data_arg(args.data), args.media_root)
    for report in reports:
        _note(report.summary())
    return records


def _fill(
    store: FeatureStore, encoders: MuMuModel | FrozenEncoders, records: list[Record], media_root: Path,
    keys: dict[Path, str], device: torch.device,
) -> dict[str, int]:
    return fill(store, encoders, lambda: build_decoder(encoders.config.decoder, device=device), records, media_root,
                progress=tqdm, keys=keys)


def features_command(args: argparse.Namespace) -> dict[str, Any]:
    """Compute and store what the dataset needs from the frozen models (the LLM is never loaded)."""
    config = MuMuConfig.load(resolve_checkpoint(args.checkpoint)) if args.checkpoint else get_profile(
        args.profile, decoder=args.decoder)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoders = build_encoders(config, device=device, dtype=DTYPES[args.base_dtype])
    records = _records(args)
    key = fingerprint(config)
    store = FeatureStore.open(args.out, key) if (args.out / "index.json").is_file() else FeatureStore(key)
    counts = _fill(store, encoders, records, args.media_root, media_keys(records, args.media_root), device)
    store.save(args.out)
    return {"out": str(args.out), "computed": counts, "entries": len(store), "fingerprint": key}


def _resume_dir(spec: str, out: Path) -> Path:
    if spec != "latest":
        return Path(spec)
    candidates = [p for p in [*out.glob("checkpoint-*"), out] if (p / STATE_NAME).is_file()]
    if not candidates:
        raise FileNotFoundError(f"--resume latest: no checkpoint with {STATE_NAME} under {out}")
    return max(candidates, key=lambda p: _saved_step(p))


def _saved_step(directory: Path) -> int:
    # Memory-mapped: only the position is read, not the optimiser state (gigabytes at full size).
    state = torch.load(directory / STATE_NAME, map_location="cpu", weights_only=True, mmap=True)
    return int(state["position"]["step"])


def _fit_standardizers(model: MuMuModel, store: FeatureStore, records: list[Record], media_root: Path,
                       keys: dict[Path, str]) -> dict[str, tuple[int, int]]:
    """Fit the model's unfitted feature statistics on the training records' media (each file once); returns
    modality -> (files, feature vectors) of those fitted."""
    files: dict[str, list[str]] = {}  # modality -> store keys, in record order
    for key, (modality, _) in needed_keys(records, media_root, keys)[0].items():
        files.setdefault(modality, []).append(key)
    fitted = model.fit_standardizers({m: (store.get(k)["features"] for k in ks) for m, ks in files.items()})
    return {m: (len(files[m]), vectors) for m, vectors in fitted.items()}


def train_command(args: argparse.Namespace) -> dict[str, Any] | None:
    """Train one stage and save the result (plus periodic checkpoints) under --out; the summary on rank 0 only."""
    if args.base_dtype != "float32" and args.mixed_precision == "no":
        raise ValueError(f"--base-dtype {args.base_dtype} needs --mixed-precision bf16 or fp16: the trained tensors "
                         "stay float32 and only autocast lets them work with the half-precision frozen ones")
    model = _model(args)
    warning = untrained_adapters_warning(args.stage, None if args.checkpoint else args.profile, args.train_adapters)
    if warning:
        _note(warning)
    model.config.trainable = stage_trainable(args.stage, model.config.trainable, args.train_adapters)
    model.set_trainable()
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()  # trained tensors in float32 whatever the frozen parts use
    records = _records(args)
    unusual = sorted({r.kind for r in records} - set(STAGE_DATA[args.stage]))
    if unusual:
        _note(f"note: stage {args.stage} was designed for {', '.join(STAGE_DATA[args.stage])}; also training on "
              f"{', '.join(unusual)}")
    key = fingerprint(model.config)
    store = FeatureStore.open(args.features, key) if args.features else FeatureStore(key)
    keys = media_keys(records, args.media_root)  # every media file is read and hashed once
    computed = _fill(store, model, records, args.media_root, keys, model.device)
    if args.features and any(computed.values()):
        _note(f"note: {args.features} lacked {sum(computed.values())} entries; computed them for this run")
    train_records, eval_records = split_records(records, args.eval_fraction, args.seed)
    fitted = _fit_standardizers(model, store, train_records, args.media_root, keys)
    if fitted:
        _note("fitted feature statistics (adapter.standardize) on the training data: "
              + ", ".join(f"{m} from {files} files ({vectors} vectors)" for m, (files, vectors) in fitted.items()))
    cfg = model.config.pipeline
    options = dict(template=cfg.template, system=cfg.system, max_length=args.max_length or cfg.max_context_tokens,
                   keys=keys)
    train_set = TrainingSet(train_records, store, model.tokenizer, model.ids, args.media_root, **options)
    eval_set = TrainingSet(eval_records, store, model.tokenizer, model.ids, args.media_root, **options) \
        if eval_records else None
    if train_set.too_long:
        _note(f"note: {len(train_set.too_long)} records do not fit in {options['max_length']} tokens and were "
              f"left out (first: {train_set.too_long[:3]})")
    chosen = fill_defaults(dict(lr=args.lr, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
                                min_lr_ratio=args.min_lr_ratio), model.config.profile)
    settings = TrainSettings(
        stage=args.stage, max_steps=args.max_steps, epochs=args.epochs, grad_accum=args.grad_accum,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, mse_weight=args.mse_weight,
        eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every, seed=args.seed,
        mixed_precision=args.mixed_precision, **chosen)
    model.config.training = asdict(settings)  # saved into the output's config.json with the weights
    trainer = Trainer(model, train_set, eval_set, settings, args.out)
    if args.resume:
        trainer.resume(_resume_dir(args.resume, args.out))
    summary = trainer.run()
    if not trainer.accelerator.is_main_process:
        return None
    summary.update(records={"train": len(train_set), "eval": 0 if eval_set is None else len(eval_set)},
                   features_computed=computed)
    return summary
