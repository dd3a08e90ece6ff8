"""`python -m mumu info`: parameter counts computed on the meta device, and the CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mumu.cli import main
from mumu.info import report
from mumu.profiles import full, tiny


@pytest.fixture(scope="module")
def full_report():
    return report(full())


def test_full_llm_is_about_6_7b_with_40m_lora(full_report):
    llm = full_report["components"]["llm"]
    # Llama-2-7B has 6,738,415,616 parameters (266,240 of them RMSNorm scales, which train as in the paper);
    # the 8 new rows in the embeddings and LM head add 65,536.
    norms = (2 * 32 + 1) * 4096
    assert llm["base"]["params"] + llm["norms"]["params"] == 6_738_415_616 + 2 * 8 * 4096
    assert llm["base"]["trainable"] == 0
    assert llm["norms"]["params"] == llm["norms"]["trainable"] == norms == 266_240
    assert llm["lora"]["params"] == 32 * (4 * 16 * 8192 + 3 * 16 * (4096 + 11008)) == 39_976_960
    assert llm["lora"]["trainable"] == llm["lora"]["params"]
    assert llm["audio_tokens"]["params"] == 2 * 8 * 4096


def test_full_encoders_match_published_sizes(full_report):
    enc = full_report["components"]["encoders"]
    assert 3.1e8 < enc["music"]["params"] < 3.3e8  # MERT-v1-330M (HuBERT-large body)
    assert 8.5e7 < enc["image"]["params"] < 8.7e7  # ViT-B/16 without pooler
    assert 8.8e7 < enc["video"]["params"] < 9.0e7  # ViViT-B/16x2
    assert all(e["trainable"] == 0 for e in enc.values())
    assert enc["music"]["source"] == "m-a-p/MERT-v1-330M"


def test_memory_estimates_scale_with_precision(full_report):
    mem = full_report["total"]["memory_gib"]
    assert mem["fp32"] == pytest.approx(2 * mem["bf16"], rel=1e-3)
    assert mem["bf16"] == pytest.approx(2 * mem["int8"], rel=1e-3)
    assert mem["int8"] == pytest.approx(2 * mem["int4"], rel=1e-3)
    assert 17 < mem["bf16"] < 19  # 7.8B MuMu parts + 2.0B MusicGen-medium


def test_tiny_report_counts_real_parameters():
    data = report(tiny())
    assert data["profile"] == "tiny"
    assert 0 < data["total"]["trainable"] < data["total"]["params"] < 2_000_000


def test_cli_json_is_one_object(capsys):
    assert main(["info", "--profile", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"profile", "decoder", "components", "total", "note", "estimate"}


def test_serving_estimate_matches_the_llama_2_7b_formulas(full_report):
    est = full_report["estimate"]
    # KV cache: keys and values, 32 layers x 32 heads x 128 dims, 2048 tokens, 2 bytes each: exactly 1 GiB.
    assert est["kv_cache"] == pytest.approx(2 * 32 * 32 * 128 * 2048 * 2 / 2**30, abs=1e-3) == 1.0
    # Prefill: fp32 logits over the 32,008-token vocabulary, plus one MLP's gate, up and product in bf16.
    assert est["prefill"] == pytest.approx((2048 * 32008 * 4 + 3 * 2048 * 11008 * 2) / 2**30, abs=1e-3)
    assert est["weights"] == pytest.approx(full_report["total"]["memory_gib"]["bf16"], abs=2e-3)
    # The prefix cache when full: 1024 tokens' keys and values, half the context's.
    assert est["prefix_cache"] == pytest.approx(est["kv_cache"] * 1024 / 2048, abs=1e-3)
    assert est["total_gib"] == pytest.approx(est["weights"] + est["kv_cache"] + est["prefill"] + est["prefix_cache"]
                                             + est["allowance"], abs=2e-3)


@pytest.mark.parametrize(("mode", "bytes_per_weight"), [("4bit", 0.5), ("8bit", 1.0)])
def test_quantized_estimate_shrinks_only_the_decoder_layer_linears(full_report, mode, bytes_per_weight):
    config = full()
    config.llm.quantize = mode
    est = report(config)["estimate"]
    # Llama-2-7B's decoder-layer Linear weights: 32 x (4 attention 4096^2 + 3 MLP 4096 x 11008) = 6,476,005,376;
    # embeddings, LM head, norms, LoRA and everything outside the LLM stay bf16.
    linears = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    saved = linears * (2 - bytes_per_weight) / 2**30
    assert est["quantize"] == mode
    assert est["weights"] == pytest.approx(full_report["estimate"]["weights"] - saved, abs=2e-3)


def test_cli_info_quantize_shows_the_smaller_memory(capsys):
    assert main(["info", "--profile", "full", "--quantize", "4bit", "--json"]) == 0
    quantized = json.loads(capsys.readouterr().out)["estimate"]
    assert main(["info", "--profile", "full", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)["estimate"]
    assert quantized["quantize"] == "4bit" and quantized["total_gib"] < plain["total_gib"] - 9
    assert main(["info", "--profile", "full", "--quantize", "4bit"]) == 0
    assert "LLM 4bit) + KV cache 1.00" in capsys.readouterr().out


def test_cli_info_reads_a_checkpoint_config_only(tmp_path, capsys):
    config = tiny()
    config.save(tmp_path)  # config.json alone: info needs no weights
    assert main(["info", "--model", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == report(tiny())["total"]


def test_cli_table_and_decoder_choice(capsys):
    assert main(["info", "--profile", "full", "--decoder", "audioldm2"]) == 0
    out = capsys.readouterr().out
    assert "decoder audioldm2" in out and "llm.lora" in out


def test_cli_bad_arguments_exit_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "mumu", "info", "--profile", "huge"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "invalid choice: 'huge'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("decoder", "low", "high"), [("musicgen", 1.9e9, 2.1e9), ("audioldm2", 1.0e9, 1.2e9)])
def test_full_report_includes_the_frozen_decoder(decoder, low, high):
    data = report(full(decoder=decoder))
    parts = {k: v for k, v in data["components"]["decoder"].items() if isinstance(v, dict)}
    assert low < sum(p["params"] for p in parts.values()) < high  # MusicGen-medium ~2.0B, AudioLDM2-music ~1.1B
    assert all(p["trainable"] == 0 for p in parts.values())
