"""The memory check: what a machine has free, and the refusal that says how much is needed and what to try."""

from __future__ import annotations

import sys

import pytest

from mumu import fit
from mumu.fit import DoesNotFit, Machine, available_ram_gib, check_fits
from mumu.info import report
from mumu.profiles import full


def test_ram_comes_from_meminfo_without_psutil(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8388608 kB\nMemFree:         524288 kB\nMemAvailable:    3145728 kB\n")
    monkeypatch.setattr(fit, "MEMINFO", meminfo)
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if psutil were not installed
    assert available_ram_gib() == 3.0  # 3,145,728 kB
    meminfo.write_text("MemTotal:       8388608 kB\n")
    with pytest.raises(OSError, match="has no MemAvailable line"):
        available_ram_gib()


def test_psutil_and_the_kernel_agree():
    kernel = next(int(line.split()[1]) for line in fit.MEMINFO.read_text().splitlines()
                  if line.startswith("MemAvailable:")) / 2**20
    assert available_ram_gib() == pytest.approx(kernel, rel=0.1)  # read moments apart; memory moves a little


def test_gpu_refusal_names_the_numbers_and_the_ways_out():
    config = full()
    needs = report(config, "bf16")["estimate"]
    with pytest.raises(DoesNotFit) as refused:
        check_fits(config, "cuda", Machine("cuda", 15.5, "free GPU memory on cuda"))
    assert str(refused.value) == (
        f"the model needs {needs['total_gib']:.1f} GiB (weights {needs['weights']:.1f} in bf16, KV cache and "
        f"activations {needs['total_gib'] - needs['weights']:.1f}), this machine has 15.5 GiB (free GPU memory on "
        "cuda); try --quantize 4bit or --device-map auto")
    config.llm.quantize = "4bit"  # what a 16 GB card needs: the 4-bit estimate fits
    assert check_fits(config, "cuda", Machine("cuda", 15.5, "free GPU memory on cuda"))["total_gib"] < 15.5


def test_full_model_in_bf16_fits_a_24_gb_card_but_not_a_16_gb_one():
    total = report(full(), "bf16")["estimate"]["total_gib"]
    assert 16 < total < 22  # 24 GB cards show ~22 GiB free; the README's hardware claims rest on this
