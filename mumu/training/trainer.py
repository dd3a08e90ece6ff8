"""The training loop on HF accelerate: `accelerate launch -m mumu train ...` runs it unchanged on many GPUs.

One process per device (DDP, or FSDP / DeepSpeed through an accelerate config file). Gradient accumulation,
clipping, warmup + cosine, mixed precision (bf16/fp16 autocast on GPU), separate CE / MSE logging to JSONL (and
TensorBoard when installed), held-out evaluation, checkpoints of the trained tensors only, and an exact resume:
the data order is a pure function of (seed, epoch), and optimiser, schedule, RNG and position are saved.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mumu.checkpoint import WEIGHTS_NAME, load_trained, save_pretrained
from mumu.data.collate import Collator
from mumu.data.dataset import TrainingSet
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.training.optim import build_optimizer, warmup_cosine

STATE_NAME = "training_state.pt"
LOG_NAME = "train_log.jsonl"
PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class TrainSettings:
    """Everything that shapes a run (saved with every checkpoint so a resume can check it matches)."""

    stage: int
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mse_weight: float = 1.0
    eval_every: int = 0
    save_every: int = 0
    log_every: int = 1
    seed: int = 0
    mixed_precision: str = "no"

    def validate(self) -> TrainSettings:
        """Clear errors for impossible settings."""
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_steps or epochs")
        if (self.max_steps or self.epochs or 0) < 1:
            raise ValueError("max_steps / epochs must be >= 1")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise ValueError("need lr > 0, weight_decay >= 0 and max_grad_norm > 0")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}")
        return self


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # micro-batches of the current epoch already consumed


class _Log:
    """JSONL lines (and TensorBoard scalars when the package is installed), main process only."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out / LOG_NAME
        self.board = None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.board = None
            else:
                self.board = SummaryWriter(str(out / "tensorboard"))

    def write(self, split: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _forward(model: Any, batch: dict[str, Any], mse_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    media = MediaFeatures(music=batch["music"], image=batch["image"], video=batch["video"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                media=media, decoder_targets=batch["decoder_targets"],
                decoder_target_masks=batch["decoder_target_masks"], target_rows=batch["target_rows"],
                mse_weight=mse_weight)
    parts = {"ce": out.ce_loss.item()}
    if out.mse_loss is not None:
        parts.update(mse=out.mse_loss.item(), mask=out.mask_loss.item())
    return out.loss, parts


class Trainer:
    """Runs one stage over a TrainingSet (and an optional held-out set), writing everything under `out`."""

    def __init__(
        self, model: MuMuModel, train_set: TrainingSet, eval_set: TrainingSet | None, settings: TrainSettings,
        out: str | Path,
    ) -> None:
        self.settings = settings.validate()
        self.out = Path(out)
        # Rows without some modality leave that adapter unused in a step: DDP must not wait for its gradients.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        # AcceleratorState is a process-wide singleton that refuses new precision settings: a second run in one
        # process (a notebook, the learning probe) starts from a fresh one. The process-group state (PartialState,
        # what `accelerate launch` sets up) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(mixed_precision=settings.mixed_precision, kwargs_handlers=[ddp])
        deepspeed = self.accelerator.state.deepspeed_plugin
        if deepspeed is not None:
            # DeepSpeed's engine steps inside backward(); it cannot see this loop's accumulation boundaries.
            if settings.grad_accum != 1:
                raise ValueError("with DeepSpeed use --grad-accum 1 and set gradient_accumulation_steps in the "
                                 "accelerate/DeepSpeed config instead")
            deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = settings.batch_size
        set_seed(settings.seed)
        self.train_set, self.eval_set = train_set, eval_set
        self.collate = Collator(model.ids.pad)
        per_epoch = math.ceil(math.ceil(len(train_set) / settings.batch_size) / self.accelerator.num_processes)
        self.total_steps = settings.max_steps or math.ceil(per_epoch / settings.grad_accum) * settings.epochs
        optimizer = build_optimizer(model, settings.lr, settings.weight_decay)
        scheduler = warmup_cosine(optimizer, min(settings.warmup_steps, self.total_steps), self.total_steps,
                                  settings.min_lr_ratio)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.position = _Position()
        self.log = _Log(self.out, self.accelerator.is_main_process)

    # Data ------------------------------------------------------------------------------------------------------
    def _epoch_loader(self, epoch: int, skip: int) -> DataLoader:
        # The order is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have.
        order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(self.settings.seed + epoch))
        loader = DataLoader(self.train_set, batch_size=self.settings.batch_size, sampler=order.tolist(),
                            collate_fn=self.collate)
        loader = self.accelerator.prepare_data_loader(loader)
        return self.accelerator.skip_first_batches(loader, skip) if skip else loader

    # Checkpoints -----------------------------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Trained tensors + config (loadable with `mumu chat --checkpoint`) and the state needed to resume."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_pretrained(self.accelerator.unwrap_model(self.model), directory)
            state = {"position": asdict(self.position), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "rng": torch.get_rng_state(),
                     "settings": asdict(self.settings)}
            torch.save(state, directory / STATE_NAME)
        self.accelerator.wait_for_everyone()
        return directory

    def resume(self, directory: str | Path) -> None:
        """Continue from a checkpoint written by `save`: weights, optimiser, schedule, RNG and data position."""
        directory = Path(directory)
        path = directory / STATE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{directory} has no {STATE_NAME}: not a training checkpoint to resume")
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["settings"]
        for key in ("stage", "batch_size", "grad_accum", "seed"):
            if saved[key] != getattr(self.settings, key):
                raise ValueError(f"cannot resume: {directory} was trained with {key}={saved[key]}, "
                                 f"this run has {getattr(self.settings, key)}")
        model = self.accelerator.unwrap_model(self.model)
        load_trained(model, load_file(str(directory / WEIGHTS_NAME), device=str(model.device)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.position = _Position(**state["position"])

    # Loop ------------------------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Mean CE (and MSE where targets exist) over the held-out set, weighted by batch size."""
        if self.eval_set is None or len(self.eval_set) == 0:
            return {}
        loader = self.accelerator.prepare_data_loader(
            DataLoader(self.eval_set, batch_size=self.settings.batch_size, collate_fn=self.collate))
        self.model.eval()
        names = ("ce", "mse", "mask")
        totals = torch.zeros(2, len(names), dtype=torch.float64, device=self.accelerator.device)  # sums, rows
        with torch.no_grad():
            for batch in loader:
                _, parts = _forward(self.model, batch, self.settings.mse_weight)
                rows = {"ce": len(batch["input_ids"]), "mse": len(batch["target_rows"]),
                        "mask": len(batch["target_rows"])}
                for i, name in enumerate(names):
                    if name in parts:
                        totals[0, i] += parts[name] * rows[name]
                        totals[1, i] += rows[name]
        totals = self.accelerator.reduce(totals, reduction="sum")  # every process evaluated its own share
        self.model.train()
        return {name: float(totals[0, i] / totals[1, i]) for i, name in enumerate(names) if totals[1, i] > 0}

    def run(self) -> dict[str, Any]:
        """Train until total_steps; returns the last train and eval numbers and where the model was saved."""
        s, pos, acc = self.settings, self.position, self.accelerator
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=pos.step, desc=f"stage {s.stage}", unit="step",
                   disable=not acc.is_main_process)
        last: dict[str, float] = {}
        window: list[dict[str, float]] = []
        tick = time.perf_counter()
        while pos.step < self.total_steps:
            loader = self._epoch_loader(pos.epoch, pos.batch)
            batches = len(loader) + pos.batch
            for batch in loader:
                pos.batch += 1
                boundary = pos.batch % s.grad_accum == 0 or pos.batch == batches
                with acc.no_sync(self.model) if not boundary else nullcontext():
                    loss, parts = _forward(self.model, batch, s.mse_weight)
                    acc.backward(loss / s.grad_accum)
                window.append(parts)
                if not boundary:
                    continue
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                pos.step += 1
                bar.update()
                last = {k: sum(p[k] for p in window if k in p) / sum(k in p for p in window)
                        for k in {k for p in window for k in p}}
                last.update(lr=self.scheduler.get_last_lr()[0], epoch=pos.epoch)
                if grad_norm is not None:  # None where the backend (DeepSpeed) clips inside its own step
                    last["grad_norm"] = float(grad_norm)
                window = []
                if pos.step % s.log_every == 0 or pos.step == self.total_steps:
                    last["seconds"] = round(time.perf_counter() - tick, 3)
                    self.log.write("train", pos.step, last)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in last.items() if k in ("ce", "mse")})
                if s.eval_every and pos.step % s.eval_every == 0 and pos.step < self.total_steps:
                    self.log.write("eval", pos.step, self.evaluate())
                if s.save_every and pos.step % s.save_every == 0 and pos.step < self.total_steps:
                    self.save(self.out / f"checkpoint-{pos.step}")
                if pos.step >= self.total_steps:
                    break
            else:
                pos.epoch, pos.batch = pos.epoch + 1, 0
        bar.close()
        final_eval = self.evaluate()
        if final_eval:
            self.log.write("eval", pos.step, final_eval)
        self.save(self.out)
        self.log.close()
        return {"steps": pos.step, "train": last, "eval": final_eval, "out": str(self.out)}
