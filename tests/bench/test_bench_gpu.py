"""bench/gpu.py measures only on a CUDA GPU; elsewhere it says so and exits 0 (CI and this project's CPUs)."""

from __future__ import annotations

import torch

from bench import gpu


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0
    assert capsys.readouterr().out == ("bench/gpu.py: no CUDA GPU on this machine, so nothing was measured; run it "
                                       "where a GPU is available\n")
