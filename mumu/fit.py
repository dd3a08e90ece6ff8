"""Does a model fit this machine? The served-memory estimate of `mumu info` against free GPU memory or RAM.

Checked before any download or load, so a machine that cannot hold the model hears so at once instead of after a
20 GB download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mumu.config import MuMuConfig
from mumu.info import GIB, report

MEMINFO = Path("/proc/meminfo")


class DoesNotFit(ValueError):
    """The model needs more memory than this machine has free; the message says how much and what to try."""


@dataclass
class Machine:
    """Where the model would live and how much memory is free there."""

    device: str
    available_gib: float
    where: str  # what was measured, for messages: "free GPU memory on cuda:0", "available RAM"


def precision(device: str) -> str:
    """Weights load in bf16 on a GPU (a 7B LLM in fp32 fills 28 GB) and fp32 on the CPU (bf16 matmuls are slow)."""
    return "bf16" if torch.device(device).type == "cuda" else "fp32"


def load_dtype(device: str) -> torch.dtype:
    """The torch dtype of precision(device)."""
    return torch.bfloat16 if precision(device) == "bf16" else torch.float32


def available_ram_gib() -> float:
    """RAM available to a new process: psutil when installed, else MemAvailable from /proc/meminfo."""
    try:
        import psutil
    except ImportError:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB  # the kernel reports kB
        raise OSError(f"{MEMINFO} has no MemAvailable line; cannot tell how much memory this machine has") from None
    return psutil.virtual_memory().available / GIB


def machine(device: str, device_map: str | None = None) -> Machine:
    """Free memory where the model would go; with --device-map auto, the GPU's free memory plus the RAM that
    accelerate offloads to."""
    if torch.device(device).type != "cuda":
        return Machine(device, available_ram_gib(), "available RAM")
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    gpu = free / GIB
    if device_map == "auto":
        return Machine(device, gpu + available_ram_gib(), "free GPU memory plus available RAM (--device-map auto)")
    return Machine(device, gpu, f"free GPU memory on {device}")


def check_fits(config: MuMuConfig, device: str, available: Machine | None = None) -> dict:
    """The memory estimate for config on device; DoesNotFit when it needs more than the machine has free."""
    estimate = report(config, precision(device))["estimate"]
    where = available or machine(device, config.llm.device_map)
    if estimate["total_gib"] > where.available_gib:
        raise DoesNotFit(f"the model needs {estimate['total_gib']:.1f} GiB ({_parts(estimate)}), this machine has "
                         f"{where.available_gib:.1f} GiB ({where.where}); {_advice(config, device)}")
    return estimate


def _parts(estimate: dict) -> str:
    weights = f"weights {estimate['weights']:.1f} in {estimate['precision']}"
    if estimate["quantize"]:
        weights += f" with the LLM {estimate['quantize']}"
    return f"{weights}, KV cache and activations {estimate['total_gib'] - estimate['weights']:.1f}"


def _advice(config: MuMuConfig, device: str) -> str:
    if torch.device(device).type != "cuda":  # bitsandbytes quantizes on CUDA only
        return "run it on a GPU, where --quantize 4bit or --device-map auto make it smaller"
    tries = []
    if config.llm.quantize != "4bit":
        tries.append("--quantize 4bit")
    if config.llm.device_map is None:
        tries.append("--device-map auto")
    return "try " + " or ".join(tries) if tries else "this machine cannot hold it"
