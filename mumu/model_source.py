"""Which model to run: `--model DIR|HUB_ID` (default $MUMU_MODEL) or `--profile tiny|full|auto`.

A model is a MuMu checkpoint directory (config.json + model.safetensors), a Hub id of one, or a published M2UGen id
(converted once into the cache by mumu.upstream.hub). Every choice is checked against this machine's memory before
anything is downloaded or loaded. `auto` picks, in order: a trained model already on this machine; the default
trained model downloaded from the Hub (huggingface_hub's progress bars) when the Hub answers and the machine can
hold it; the tiny profile. The choice says which happened and why, for the demo's banner and the CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx2
import torch
from huggingface_hub import HfApi, hf_hub_download, is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, HFValidationError

from mumu.builder import build_model
from mumu.checkpoint import WEIGHTS_NAME, is_hub_id, resolve_checkpoint
from mumu.checkpoint import from_pretrained as load_checkpoint
from mumu.config import CONFIG_NAME, MuMuConfig
from mumu.decoder_pool import build_seeded_decoder
from mumu.fit import DoesNotFit, Machine, check_fits, load_dtype, precision
from mumu.info import report
from mumu.llm import check_quantize, is_placed
from mumu.modeling import MuMuModel
from mumu.pipeline import MuMuPipeline
from mumu.presets import MUSICGEN_CHECKPOINTS
from mumu.profiles import full, get_profile, missing_sources, tiny
from mumu.upstream.hub import LLM_ENV, PUBLISHED, PUBLISHED_FILE, base_llm, cache_root, converted_copy

MODEL_ENV = "MUMU_MODEL"
# The trained model `auto` downloads, per decoder kind (no published model was trained for MusicGen-Melody; the
# MusicGen one serves it, and the demo can still pick Melody per turn in caption mode).
DEFAULT_MODELS = {"musicgen": "M2UGen/M2UGen-MusicGen-medium", "musicgen_melody": "M2UGen/M2UGen-MusicGen-medium",
                  "audioldm2": "M2UGen/M2UGen-AudioLDM2"}
How = Literal["given", "profile", "local", "downloaded", "tiny"]
HUB_TIMEOUT_S = 10.0
HUB_ERRORS = (HfHubHTTPError, HFValidationError, httpx2.HTTPError, OSError)
TINY_NOTE = "its weights are random, so answers are gibberish and music is noise"


@dataclass
class LoadOptions:
    """Machine choices: where the model runs and how the frozen LLM loads (see LLMConfig.quantize/device_map)."""

    device: str = "cpu"
    quantize: str | None = None
    device_map: str | None = None


@dataclass
class ModelChoice:
    """What runs and why. how: given (--model / $MUMU_MODEL), profile (--profile tiny|full), or auto's decision:
    local (a trained model already here), downloaded (fetched now), tiny (neither was possible; reason says why)."""

    config: MuMuConfig
    checkpoint: Path | None
    name: str
    how: How
    reason: str
    estimate: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI prints under "model"."""
        return {"name": self.name, "how": self.how, "reason": self.reason, "profile": self.config.profile,
                "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "needs_gib": self.estimate["total_gib"]}

    def describe(self) -> str:
        """One line for stderr and the demo's banner."""
        if self.config.profile == "tiny" and self.checkpoint is None:
            return f"running the offline tiny profile: {TINY_NOTE}. {self.reason}"
        return f"running {self.name}: {self.reason}"


def choose_model(
    model: str | None = None, profile: str = "auto", decoder: str = "musicgen", options: LoadOptions | None = None,
    machine: Machine | None = None,
) -> ModelChoice:
    """Resolve --model (else $MUMU_MODEL) or --profile into a checked, local model; downloads happen here."""
    options = options or LoadOptions()
    check_quantize(options.quantize)  # before anything is downloaded
    model = model or os.environ.get(MODEL_ENV) or None
    if model:
        return _given(model, options, machine)
    if profile != "auto":
        config = fitted(get_profile(profile, decoder=decoder), options)
        return ModelChoice(config, None, profile, "profile", f"--profile {profile}",
                           check_fits(config, options.device, machine))
    return _auto(decoder, options, machine)


def fitted(config: MuMuConfig, options: LoadOptions) -> MuMuConfig:
    """config with this run's LLM loading choices (validated by LLMConfig)."""
    llm = replace(config.llm, quantize=options.quantize, device_map=options.device_map)
    return replace(config, llm=llm)


def peek_config(model: str) -> MuMuConfig:
    """A model's config without its weights: the directory's config.json, the Hub repo's config.json alone, or,
    for a published id not converted yet, the full profile it was trained on (for sizes; conversion writes the
    exact one)."""
    path = Path(model)
    if path.exists() or not is_hub_id(model):
        return MuMuConfig.load(resolve_checkpoint(model))  # raises for files and missing directories
    if model in PUBLISHED:
        done = converted_copy(model)
        return MuMuConfig.load(done) if done else published_profile(model)
    try:
        return MuMuConfig.load(Path(hf_hub_download(model, CONFIG_NAME, etag_timeout=HUB_TIMEOUT_S)).parent)
    except HUB_ERRORS as e:
        raise OSError(f"could not get {CONFIG_NAME} of {model!r} from the Hugging Face Hub: {e}") from e


def published_profile(repo_id: str) -> MuMuConfig:
    """The full-profile config matching a published id's components (same LLM, encoders and decoder sizes)."""
    source = PUBLISHED[repo_id]
    if source == full(decoder="audioldm2").decoder.source:
        return full(decoder="audioldm2")
    size = next(name for name, preset in MUSICGEN_CHECKPOINTS.items() if preset == source)
    return full(decoder="musicgen", musicgen_size=size)


def _given(model: str, options: LoadOptions, machine: Machine | None) -> ModelChoice:
    estimate = check_fits(fitted(peek_config(model), options), options.device, machine)  # before any download
    _check_llm_access(model)
    was_local = _local_checkpoint(model) is not None
    directory = resolve_checkpoint(model)  # downloads (and converts a published id) when not local yet
    how = "a MuMu checkpoint directory" if Path(model).is_dir() else (
        "already on this machine" if was_local else "downloaded from the Hugging Face Hub")
    origin = "--model" if os.environ.get(MODEL_ENV) != model else f"${MODEL_ENV}"
    return ModelChoice(fitted(MuMuConfig.load(directory), options), directory, model, "given",
                       f"{origin} {model} ({how})", estimate)


def _local_checkpoint(model: str) -> Path | None:
    """model's checkpoint directory when it is on this machine already: a directory, a converted published id,
    or a MuMu repo in the Hugging Face cache (as huggingface_hub laid it out)."""
    if Path(model).is_dir():
        return Path(model)
    if model in PUBLISHED:
        return converted_copy(model)
    files = [try_to_load_from_cache(model, name) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    return Path(files[0]).parent if all(isinstance(f, str) for f in files) else None


def _local_trained(default: str) -> tuple[str, Path] | None:
    """The first trained model fully on this machine (its components too): the default, then any converted copy."""
    root = cache_root()
    others = sorted(p.name.replace("--", "/", 1) for p in root.glob("[!.]*--*")) if root.is_dir() else []
    for name in dict.fromkeys([default, *others]):
        directory = _local_checkpoint(name)
        if directory is not None and not missing_sources(MuMuConfig.load(directory)):
            return name, directory
    return None


def _auto(decoder: str, options: LoadOptions, machine: Machine | None) -> ModelChoice:
    default = DEFAULT_MODELS[decoder]
    local = _local_trained(default)
    if local is not None:
        name, directory = local
        config = fitted(MuMuConfig.load(directory), options)
        try:
            estimate = check_fits(config, options.device, machine)
        except DoesNotFit as e:
            return _tiny(decoder, f"{name} is on this machine but does not fit: {e}")
        return ModelChoice(config, directory, name, "local", f"auto: {name} is already on this machine", estimate)
    if is_offline_mode():
        return _tiny(decoder, f"no trained model is on this machine and the Hub is off (HF_HUB_OFFLINE=1), so "
                              f"{default} cannot be downloaded")
    try:
        size = _download_gb(default)
    except HUB_ERRORS as e:
        return _tiny(decoder, f"no trained model is on this machine and {default} could not be had from the "
                              f"Hugging Face Hub ({type(e).__name__}: {e})")
    try:
        estimate = check_fits(fitted(peek_config(default), options), options.device, machine)
    except DoesNotFit as e:
        return _tiny(decoder, f"{default} was not downloaded: {e}")
    print(f"auto: downloading {default} ({size:.1f} GB, plus any of its components not cached yet)",
          file=sys.stderr, flush=True)
    try:
        directory = resolve_checkpoint(default)
    except (OSError, ValueError) as e:
        return _tiny(decoder, f"downloading {default} failed: {e}")
    return ModelChoice(fitted(MuMuConfig.load(directory), options), directory, default, "downloaded",
                       f"auto: {default} was downloaded ({size:.1f} GB) from the Hugging Face Hub", estimate)


def _download_gb(repo_id: str) -> float:
    """Size of the files a model's checkpoint needs; asking is also how `auto` learns the Hub is reachable. A
    published id is converted against the gated Llama-2, so access to it is checked before gigabytes download."""
    wanted = {PUBLISHED_FILE} if repo_id in PUBLISHED else {CONFIG_NAME, WEIGHTS_NAME}
    info = HfApi().model_info(repo_id, files_metadata=True, timeout=HUB_TIMEOUT_S)
    _check_llm_access(repo_id)
    found = {s.rfilename: s.size or 0 for s in info.siblings or [] if s.rfilename in wanted}
    if set(found) != wanted:
        raise OSError(f"{repo_id} on the Hub lacks {sorted(wanted - set(found))}")
    return sum(found.values()) / 1e9


def _check_llm_access(repo_id: str) -> None:
    """Converting a published id needs the base LLM (the gated Llama-2 unless $MUMU_UPSTREAM_LLM says otherwise):
    found out before the checkpoint's gigabytes download, not after."""
    llm = base_llm()
    if repo_id not in PUBLISHED or converted_copy(repo_id) or Path(llm).is_dir():
        return
    if isinstance(try_to_load_from_cache(llm, CONFIG_NAME), str):
        return
    try:
        HfApi().auth_check(llm)
    except HUB_ERRORS as e:
        raise OSError(f"converting {repo_id} needs the base LLM {llm}, which cannot be downloaded here "
                      f"({type(e).__name__}): accept its licence on the Hub and log in (hf auth login, or HF_TOKEN), "
                      f"or set ${LLM_ENV} to a local copy") from e


def _tiny(decoder: str, reason: str) -> ModelChoice:
    config = tiny(decoder=decoder)  # a few MB: no fit check to fail
    return ModelChoice(config, None, "tiny", "tiny", f"auto: {reason}", report(config, "fp32")["estimate"])


def load_model(choice: ModelChoice, options: LoadOptions) -> MuMuModel:
    """The model for a choice: weights in the device's precision, the LLM loaded as options say."""
    device, config, dtype = options.device, choice.config, _dtype(choice, options)
    if choice.checkpoint is None:
        model = build_model(config, device=device, dtype=dtype)
    else:
        model = load_checkpoint(choice.checkpoint, device=device, dtype=dtype, config=config)
    offloaded = [name for name, tensor in model.trained_state_dict().items() if tensor.is_meta]
    if offloaded:  # accelerate leaves offloaded layers on "meta": their LoRA would hold no values
        raise ValueError(f"--device-map auto offloaded layers whose trained tensors cannot load ({offloaded[:3]}...); "
                         "use --quantize 4bit (or 8bit) so the LLM fits on the GPU")
    return model


def load_pipeline(choice: ModelChoice, options: LoadOptions, out_dir: str | Path) -> MuMuPipeline:
    """The chat pipeline for a choice: load_model's model and the model's own decoder in the same precision."""
    model, config = load_model(choice, options), choice.config
    return MuMuPipeline(model, build_seeded_decoder(config, config.decoder.kind, options.device,
                                                    _dtype(choice, options)), out_dir)


def _dtype(choice: ModelChoice, options: LoadOptions) -> torch.dtype | None:
    """None (fp32, as built and saved) on the CPU and for the seeded tiny profile anywhere (small); else the device's
    precision (bf16 on a GPU). A placed LLM (quantized or spread) always takes the device's."""
    placed = is_placed(choice.config.llm)
    tiny_seeded = choice.checkpoint is None and choice.config.profile == "tiny"
    if not placed and (tiny_seeded or precision(options.device) == "fp32"):
        return None
    return load_dtype(options.device)
