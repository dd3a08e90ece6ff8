"""Choosing the model: --model / $MUMU_MODEL and every `auto` decision, against a Hugging Face cache written by
huggingface_hub's own client (tests/local_hub.py replaces only the network), and the memory check before download."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory
from safetensors.torch import load_file

from generation.config import SamplingSettings
from mumu import model_source
from mumu.builder import build_model
from mumu.checkpoint import save_pretrained
from mumu.config import MuMuConfig
from mumu.fit import DoesNotFit, Machine
from mumu.info import report
from mumu.llm import check_quantize
from mumu.model_source import MODEL_ENV, LoadOptions, choose_model, load_pipeline
from mumu.pipeline import ChatOptions
from mumu.profiles import tiny
from mumu.upstream import convert as convert_module
from mumu.upstream.convert import REPORT_NAME
from mumu.upstream.hub import CACHE_ENV, converted_dir
from tests.converted import build_tiny_published
from tests.local_hub import LocalHub

REPO = "mumu-test/tiny-trained"
ROOMY = Machine("cpu", 64.0, "available RAM")
CRAMPED = Machine("cpu", 0.5, "available RAM")  # the tiny model needs ~1 GiB with the runtime allowance


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MuMu checkpoint directory as save_pretrained writes it, with gates moved off zero as training does."""
    model = build_model(tiny())
    with torch.no_grad():
        model.injection.gates.fill_(0.5)
    return save_pretrained(model, tmp_path_factory.mktemp("trained"))


@pytest.fixture(autouse=True)
def machine_state(tmp_path, monkeypatch):
    """An empty Hugging Face cache and converted cache, online, no $MUMU_MODEL; REPO is auto's default model."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "converted"))
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.setattr(model_source, "DEFAULT_MODELS", dict.fromkeys(model_source.DEFAULT_MODELS, REPO))


@pytest.fixture
def hub(trained):
    local = LocalHub()
    local.add(REPO, trained)
    with local.serving():
        yield local


def _reply(choice, tmp_path):
    pipeline = load_pipeline(choice, LoadOptions(), tmp_path / "out")
    return pipeline, pipeline.chat(pipeline.new_conversation(), "hi", options=ChatOptions(music="never",
                                                                                          max_new_tokens=3))


def test_a_checkpoint_directory_runs_as_saved(trained, tmp_path, monkeypatch):
    choice = choose_model(str(trained), machine=ROOMY)
    assert (choice.how, choice.checkpoint) == ("given", trained)
    assert choice.reason == f"--model {trained} (a MuMu checkpoint directory)"
    pipeline, reply = _reply(choice, tmp_path)
    assert reply.text is not None
    assert torch.equal(pipeline.model.injection.gates, torch.full_like(pipeline.model.injection.gates, 0.5))
    monkeypatch.setenv(MODEL_ENV, str(trained))  # a Space sets the variable instead of the flag
    from_env = choose_model(profile="tiny", machine=ROOMY)
    assert from_env.checkpoint == trained and from_env.reason.startswith(f"${MODEL_ENV} {trained}")


def test_auto_downloads_the_default_model_once_then_runs_offline(hub, tmp_path, monkeypatch):
    first = choose_model(profile="auto", machine=ROOMY)
    assert first.how == "downloaded" and first.name == REPO
    assert first.reason.startswith(f"auto: {REPO} was downloaded")
    assert sorted(hub.downloads(REPO)) == ["config.json", "model.safetensors"]
    # The cache is the client's own layout: the ref names the commit whose snapshot holds the files.
    repo_cache = Path(constants.HF_HUB_CACHE) / "models--mumu-test--tiny-trained"
    commit = (repo_cache / "refs" / "main").read_text()
    assert first.checkpoint == repo_cache / "snapshots" / commit
    asked = len(hub.requests)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    again = choose_model(profile="auto", machine=ROOMY)
    assert (again.how, again.checkpoint) == ("local", first.checkpoint)
    assert again.reason == f"auto: {REPO} is already on this machine"
    _, reply = _reply(again, tmp_path)
    assert reply.text is not None
    assert len(hub.requests) == asked  # nothing went to the network


def test_a_hub_id_is_fetched_then_found_in_the_cache(hub, monkeypatch):
    first = choose_model(REPO, machine=ROOMY)
    assert first.how == "given" and first.reason == f"--model {REPO} (downloaded from the Hugging Face Hub)"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    again = choose_model(REPO, machine=ROOMY)
    assert again.checkpoint == first.checkpoint
    assert again.reason == f"--model {REPO} (already on this machine)"


def test_too_big_is_refused_before_the_weights_download(hub):
    needs = report(tiny(), "fp32")["estimate"]["total_gib"]
    with pytest.raises(DoesNotFit) as refused:
        choose_model(REPO, machine=CRAMPED)
    assert str(refused.value).startswith(f"the model needs {needs:.1f} GiB (weights 0.0 in fp32, KV cache and "
                                         f"activations {needs:.1f}), this machine has 0.5 GiB (available RAM); ")
    assert hub.downloads(REPO) == ["config.json"]  # its config, never its weights
    choice = choose_model(profile="auto", machine=CRAMPED)
    assert choice.how == "tiny" and choice.checkpoint is None
    assert choice.reason.startswith(f"auto: {REPO} was not downloaded: the model needs {needs:.1f} GiB")
    assert choice.describe().startswith("running the offline tiny profile: its weights are random")
    assert hub.downloads(REPO) == ["config.json"]  # the cached config answered; still no weights


def test_offline_with_nothing_cached_runs_tiny_and_says_why(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    choice = choose_model(profile="auto", machine=ROOMY)
    assert choice.how == "tiny"
    assert choice.reason == (f"auto: no trained model is on this machine and the Hub is off (HF_HUB_OFFLINE=1), "
                             f"so {REPO} cannot be downloaded")
    assert hub.requests == []


def test_unreachable_hub_runs_tiny_and_says_why():
    def refuse(request):
        raise httpx2.ConnectError("name resolution failed", request=request)

    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(refuse)))
    try:
        choice = choose_model(profile="auto", machine=ROOMY)
    finally:
        set_client_factory(default_client_factory)
    assert choice.how == "tiny"
    assert choice.reason == (f"auto: no trained model is on this machine and {REPO} could not be had from the "
                             "Hugging Face Hub (ConnectError: name resolution failed)")


def test_no_access_to_the_gated_llm_is_found_out_before_downloading(monkeypatch):
    published = "M2UGen/M2UGen-MusicGen-small"
    monkeypatch.setattr(model_source, "DEFAULT_MODELS", dict.fromkeys(model_source.DEFAULT_MODELS, published))
    monkeypatch.delenv(model_source.LLM_ENV, raising=False)
    local = LocalHub()
    local.add(published, {"checkpoint.pth": Path(__file__)})
    local.gated.add("meta-llama/Llama-2-7b-hf")
    with local.serving():
        choice = choose_model(profile="auto", machine=ROOMY)
        with pytest.raises(OSError, match=r"converting M2UGen/M2UGen-MusicGen-small needs the base LLM meta-llama/"
                                          r"Llama-2-7b-hf, which cannot be downloaded here \(GatedRepoError\)"):
            choose_model(published, machine=ROOMY)
    assert choice.how == "tiny"
    assert choice.reason.startswith(f"auto: no trained model is on this machine and {published} could not be had "
                                    "from the Hugging Face Hub (OSError: converting")
    assert local.downloads(published) == []


def _as_converted(trained: Path, repo_id: str) -> Path:
    """trained laid out as a finished conversion of repo_id: config, weights and the converter's report."""
    copy = converted_dir(repo_id)
    shutil.copytree(trained, copy)
    (copy / REPORT_NAME).write_text(json.dumps({"source": repo_id}))
    return copy


def test_a_converted_copy_counts_as_local_only_with_its_components(trained, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    copy = _as_converted(trained, "M2UGen/M2UGen-MusicGen-small")
    choice = choose_model(profile="auto", machine=ROOMY)
    assert (choice.how, choice.name, choice.checkpoint) == ("local", "M2UGen/M2UGen-MusicGen-small", copy)
    config = MuMuConfig.load(copy)
    config.llm.source = "meta-llama/not-downloaded"  # a base LLM that is not on this machine
    config.save(copy)
    assert choose_model(profile="auto", machine=ROOMY).how == "tiny"


def test_a_local_model_too_big_for_the_machine_falls_back_to_tiny(trained, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _as_converted(trained, "M2UGen/M2UGen-MusicGen-small")
    choice = choose_model(profile="auto", machine=CRAMPED)
    assert choice.how == "tiny"
    assert choice.reason.startswith("auto: M2UGen/M2UGen-MusicGen-small is on this machine but does not fit: the "
                                    "model needs")


def test_quantize_needs_cuda_and_bitsandbytes(monkeypatch, trained):
    with pytest.raises(ValueError, match="--quantize 4bit needs a CUDA GPU"):
        choose_model(str(trained), options=LoadOptions(quantize="4bit"), machine=ROOMY)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="--quantize 8bit needs bitsandbytes, which is not installed: pip install"):
        check_quantize("8bit")


def test_quantize_is_refused_for_a_random_init_llm():
    config = tiny()
    config.llm.quantize = "4bit"
    with pytest.raises(ValueError, match=r"apply to pretrained LLM weights; this config has no llm\.source"):
        build_model(config)
    build_model(config, weights=False)  # counting a quantized config needs no GPU


@pytest.mark.slow
def test_a_published_id_downloads_converts_once_then_serves_offline(tmp_path, monkeypatch):
    published = "M2UGen/M2UGen-MusicGen-small"
    local = LocalHub()  # the published checkpoint and every component under the ids the real Hub uses
    for repo_id, files in build_tiny_published(tmp_path / "parts").hub_repos(published).items():
        local.add(repo_id, files)
    # The converter knows the real encoders' archs by id; the tiny stand-ins' archs come from their config.json.
    monkeypatch.setattr(convert_module, "HUB_ARCHS", {})
    with local.serving():
        first = choose_model(published, machine=ROOMY)
        assert first.how == "given" and first.checkpoint == converted_dir(published)
        assert first.reason == f"--model {published} (downloaded from the Hugging Face Hub)"
        assert local.downloads(published) == ["checkpoint.pth"]
        _, online = _reply(first, tmp_path)  # components load from the Hub into the cache on first use
        assert online.text is not None
        fetched = len(local.requests)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        again = choose_model(profile="auto", machine=ROOMY)  # the converted copy is auto's local trained model
        assert (again.how, again.name) == ("local", published)
        pipeline = load_pipeline(again, LoadOptions(), tmp_path / "offline")
        settings = ChatOptions(music="always", sampling=SamplingSettings(duration=0.5))
        offline = pipeline.chat(pipeline.new_conversation(), "hi", options=settings)
        assert offline.audio is not None and offline.sample_rate == 8000
        assert len(local.requests) == fetched  # served from the cache alone
    assert pipeline.decoder.name == "facebook/musicgen-small"


def test_a_gpu_loads_the_weights_in_bf16(trained, tmp_path, monkeypatch):
    # What load_pipeline does on CUDA, run on the CPU: frozen weights in bf16, the trained tensors as trained.
    monkeypatch.setattr(model_source, "precision", lambda device: "bf16")
    monkeypatch.setattr(model_source, "load_dtype", lambda device: torch.bfloat16)
    choice = choose_model(str(trained), machine=ROOMY)
    pipeline, reply = _reply(choice, tmp_path)
    assert {p.dtype for p in pipeline.model.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for m in pipeline.decoder.components.values() for p in m.parameters()} == {torch.bfloat16}
    saved = load_file(str(trained / "model.safetensors"))
    loaded = pipeline.model.trained_state_dict()
    # LoRA, adapters (and their feature statistics), gates, prefixes, projector and [AUD] rows stay fp32; the LLM's
    # trained norms are its own bf16; the statistics' vector counts are integers.
    llm_norms = {k for k in loaded if k.startswith("llm.") and "norm" in k}
    counts = {k for k in loaded if k.startswith("standardizers.") and k.endswith(".count")}
    assert {k for k, v in loaded.items() if v.dtype != torch.float32} == llm_norms | counts
    assert all(torch.equal(v, saved[k].to(v.dtype)) for k, v in loaded.items())
    assert reply.text is not None


def test_trained_tensors_left_on_meta_by_offloading_are_refused(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(model_source, "precision", lambda device: "bf16")
    monkeypatch.setattr(model_source, "load_dtype", lambda device: torch.bfloat16)
    real = model_source.load_checkpoint

    def offloading(*args, **kwargs):  # what accelerate's disk offload leaves in a layer's place: meta tensors
        model = real(*args, **kwargs)
        lora = model.decoder_layers[0].self_attn.q_proj.lora_A["default"]
        lora.weight = torch.nn.Parameter(torch.empty_like(lora.weight, device="meta"))
        return model

    monkeypatch.setattr(model_source, "load_checkpoint", offloading)
    with pytest.raises(ValueError, match=r"--device-map auto offloaded layers whose trained tensors cannot load "
                                         r"\(\['llm\.base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A"):
        load_pipeline(choose_model(str(trained), machine=ROOMY), LoadOptions(), tmp_path)
