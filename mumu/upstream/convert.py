"""Convert a published M2UGen / MuMu-LLaMA checkpoint.pth into a MuMu checkpoint (config.json + safetensors).

The published file holds everything (LLaMA, encoders, decoder, optimizer). Only what the published run trained
is imported (adapters, prefix, gates, LoRA, LLaMA norms and biases, [AUD] rows, projector); the base LLM comes
from the given HF directory or Hub id, and its tensors that the file also holds are compared one at a time: where
the file's copy differs (e.g. embeddings trained in stages 1-2) it is imported too. The file is memory-mapped and
the base LLM read tensor by tensor, so no second copy of the 7B weights is ever made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from adapters.config import AdapterConfig, ImageEncoderConfig, MusicEncoderConfig, VideoEncoderConfig
from generation.config import DecoderConfig
from mumu import presets
from mumu.builder import build_model
from mumu.config import (
    InjectionConfig,
    LLMConfig,
    MuMuConfig,
    PipelineConfig,
    ProjectorConfig,
    ProjectorStream,
    TrainableConfig,
    check_conditioning,
)
from mumu.upstream import keymap
from mumu.upstream.compare import check_component, iter_prefixed, local_dir, same_values, weight_loaders
from mumu.upstream.components import local_source, write_checkpoint_copy
from mumu.upstream.loading import (
    FROZEN_PREFIXES,
    PROJECTOR_HEADS,
    UNRUNNABLE_PREFIXES,
    Layout,
    check_keys,
    detect_layout,
    load_state,
)

WEIGHTS_NAME = "model.safetensors"
REPORT_NAME = "conversion.json"
DEFAULT_SOURCES = {"mert": presets.MERT_V1_330M, "vit": presets.VIT_B16, "vivit": presets.VIVIT_B16X2}
HUB_ARCHS = {presets.MERT_V1_330M: presets.MERT_V1_330M_ARCH, presets.VIT_B16: presets.VIT_B16_ARCH,
             presets.VIVIT_B16X2: presets.VIVIT_B16X2_ARCH}
# MusicGen decoder width -> size
MUSICGEN_BY_WIDTH = {presets.MUSICGEN_ARCHS[size]["decoder"]["hidden_size"]: size for size in presets.MUSICGEN_SIZES}
AUDIOLDM2_MUSIC = presets.AUDIOLDM2_MUSIC
# T5 width, GPT-2 width, GPT-2 tokens of cvssp/audioldm2-music
AUDIOLDM2_DIMS = (presets.AUDIOLDM2_MUSIC_ARCH["t5"]["d_model"], presets.AUDIOLDM2_MUSIC_ARCH["gpt2"]["n_embd"],
                  presets.AUDIOLDM2_MUSIC_ARCH["lm_tokens"])
LLM_FILES = ["*.json", "*.safetensors", "tokenizer*"]
_CONFIG_METADATA = ("model_type", "architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
                    "auto_map")
_LLM_DIMS = {"hidden_size": "width", "num_hidden_layers": "layers", "num_attention_heads": "heads",
             "num_key_value_heads": "heads", "intermediate_size": "ffn"}


@dataclass
class ConversionReport:
    """What was imported, what was ignored and what differs from the given components."""

    checkpoint: str
    out: str
    layout: dict[str, Any]
    unexpected_keys: list[str] = field(default_factory=list)
    unrunnable_keys: list[str] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    base_from_checkpoint: list[str] = field(default_factory=list)
    components: dict[str, dict] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able report."""
        return asdict(self)


def _config_dict(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in _CONFIG_METADATA}


def _arch(source: str) -> dict[str, Any]:
    # The arch only serves weightless builds (parameter counts, the shape check below); weights load from source.
    if source in HUB_ARCHS:
        return dict(HUB_ARCHS[source])
    return _config_dict(local_dir(source, ["config.json"]))


def _check_llm(llm_dir: Path, layout: Layout) -> dict[str, Any]:
    arch = _config_dict(llm_dir)
    config = LlamaConfig(**arch)
    wrong = [f"{key}={getattr(config, key)} (checkpoint: {getattr(layout, ours)})" for key, ours in _LLM_DIMS.items()
             if getattr(config, key) != getattr(layout, ours)]
    if config.vocab_size != layout.vocab - keymap.AUDIO_TOKENS:
        wrong.append(f"vocab_size={config.vocab_size} (checkpoint: {layout.vocab} = base + 8 [AUD] rows)")
    if wrong:
        raise ValueError(f"the base LLM in {llm_dir} does not fit the checkpoint: {', '.join(wrong)}")
    return arch


def _decoder(state: dict[str, torch.Tensor], layout: Layout, source: str | None) -> DecoderConfig:
    if layout.decoder_kind == "audioldm2":
        source = source or AUDIOLDM2_MUSIC
        return DecoderConfig(kind="audioldm2", source=source,
                             arch=dict(presets.AUDIOLDM2_MUSIC_ARCH) if source == AUDIOLDM2_MUSIC else {})
    size = None
    proj = state.get("generation_model.enc_to_dec_proj.weight")
    if proj is not None:
        size = MUSICGEN_BY_WIDTH.get(int(proj.shape[0]))
    if source is None:
        if size is None:
            raise ValueError("cannot tell which MusicGen this checkpoint was trained with; pass --decoder DIR_OR_ID")
        source = presets.MUSICGEN_CHECKPOINTS[size]
    known = size is not None and source == presets.MUSICGEN_CHECKPOINTS[size]
    arch = dict(presets.MUSICGEN_ARCHS[size]) if known else {}
    return DecoderConfig(kind="musicgen", source=source, arch=arch)


def _streams(layout: Layout, decoder: DecoderConfig) -> list[ProjectorStream]:
    if layout.decoder_kind == "musicgen":
        return [ProjectorStream("encoder_hidden_states", layout.queries, layout.out_dim, masked=False)]
    if decoder.source == AUDIOLDM2_MUSIC:
        t5, gpt, tokens = AUDIOLDM2_DIMS
    else:
        directory = local_dir(decoder.source, ["*.json"])
        t5 = int(_config_dict(directory / "text_encoder_2")["d_model"])
        gpt_config = _config_dict(directory / "language_model")
        gpt, tokens = int(gpt_config["n_embd"]), int(gpt_config.get("max_new_tokens") or 8)
    rest = layout.out_dim - gpt * tokens
    if rest <= 0 or rest % t5:
        raise ValueError(f"the AudioLDM2 projector emits {layout.out_dim} values, which do not split into T5 tokens "
                         f"of width {t5} plus {tokens} x {gpt} GPT-2 values of the decoder {decoder.source}")
    # Published order: prompt_embeds (T5) first, then generated_prompt_embeds (GPT-2), each flattened.
    return [ProjectorStream("prompt_embeds", rest // t5, t5, masked=False),
            ProjectorStream("generated_prompt_embeds", tokens, gpt, masked=False)]


def build_config(
    layout: Layout, llm: str, llm_arch: dict[str, Any], sources: dict[str, str], decoder: DecoderConfig,
    conditioning: str, llm_params: list[str],
) -> MuMuConfig:
    """The MuMu config that reproduces the published forward with these components."""
    summed = layout.injection_mode == "summed"
    config = MuMuConfig(
        profile="m2ugen",
        # What the published forward fed its adapters: MERT on the first 60 s only (its chunk loop never got past
        # the first chunk), the mean of all frames (M2UGen) or every frame (MuMu-LLaMA's RNN); ViViT on
        # consecutive frames.
        music_encoder=MusicEncoderConfig(source=sources["mert"], arch=_arch(sources["mert"]), window_seconds=60.0,
                                         span="first_window", pooling="blocks" if layout.music_rnn else "mean",
                                         frames_per_step=1 if layout.music_rnn else 15),
        image_encoder=ImageEncoderConfig(source=sources["vit"], arch=_arch(sources["vit"])),
        video_encoder=VideoEncoderConfig(source=sources["vivit"], arch=_arch(sources["vivit"]),
                                         frame_sampling="consecutive"),
        adapter=AdapterConfig(llm_width=layout.width, num_tokens=1, num_blocks=layout.adapter_blocks,
                              ffn_width=layout.adapter_ffn, rnn="rnn", norm_eps=1e-6,
                              style="m2ugen_rnn" if layout.music_rnn else "m2ugen"),
        # LoRA without scaling: alpha == rank; published biases on q, o and the FFN (k, v biases stay zero).
        llm=LLMConfig(source=llm, arch=llm_arch, lora_rank=layout.lora_rank, lora_alpha=float(layout.lora_rank),
                      lora_dropout=0.0, num_audio_tokens=keymap.AUDIO_TOKENS,
                      overrides={"attention_bias": True, "mlp_bias": True}),
        injection=InjectionConfig(group_size=layout.prefix_rows if summed else layout.prefix_rows // 3,
                                  mode=layout.injection_mode, base_value=True),
        projector=ProjectorConfig(
            width=layout.projector_width, heads=PROJECTOR_HEADS, encoder_layers=layout.encoder_layers,
            decoder_layers=layout.decoder_layers, ffn_width=layout.projector_ffn, dropout=0.0, target_scale=10.0,
            streams=_streams(layout, decoder), layout="flat" if layout.decoder_kind == "audioldm2" else "tokens",
            # [AUD] states: last layer before the final norm; the older 20-row code read layer n_layers - 21.
            llm_layer=-21 if summed else -1,
        ),
        decoder=decoder,
        trainable=TrainableConfig(llm_params=llm_params),
        pipeline=PipelineConfig(template="m2ugen", stop_rule="m2ugen", conditioning=conditioning),
    )
    return MuMuConfig.from_dict(config.to_dict())


def _base_differences(state: dict[str, torch.Tensor], layout: Layout, llm_dir: Path) -> dict[str, str]:
    """HF name -> our name for every base tensor whose checkpoint copy differs from the base LLM's."""
    loaders = weight_loaders(llm_dir)
    base_vocab = layout.vocab - keymap.AUDIO_TOKENS
    differs = {}
    for hf_name, (ours, source) in keymap.base_sources(layout).items():
        if hf_name not in loaders:
            raise ValueError(f"the base LLM in {llm_dir} lacks {hf_name}")
        mine = source.transform(state[source.key])
        if hf_name in ("model.embed_tokens.weight", "lm_head.weight"):
            mine = mine[:base_vocab]  # the [AUD] rows are imported as trainable token rows anyway
        if not same_values(mine, loaders[hf_name]()):
            differs[hf_name] = ours
    return differs


def convert(
    checkpoint: str | Path, llm: str, out: str | Path, *, mert: str | None = None, vit: str | None = None,
    vivit: str | None = None, decoder: str | None = None, conditioning: str = "caption",
) -> ConversionReport:
    """Write out/config.json, out/model.safetensors and out/conversion.json; return the report."""
    check_conditioning(conditioning)
    state = load_state(checkpoint)
    layout = detect_layout(state)
    unexpected = check_keys(state, layout)
    report = ConversionReport(str(checkpoint), str(out), asdict(layout),
                              unexpected_keys=[k for k in unexpected if not k.startswith(UNRUNNABLE_PREFIXES)],
                              unrunnable_keys=[k for k in unexpected if k.startswith(UNRUNNABLE_PREFIXES)])
    for prefix, name in FROZEN_PREFIXES.items():
        count = sum(k.startswith(prefix) for k in state)
        if count:
            report.ignored[name] = count
    sources = {"mert": mert or DEFAULT_SOURCES["mert"], "vit": vit or DEFAULT_SOURCES["vit"],
               "vivit": vivit or DEFAULT_SOURCES["vivit"]}
    decoder_cfg = _decoder(state, layout, decoder)
    llm_dir = local_dir(llm, LLM_FILES)
    llm_arch = _check_llm(llm_dir, layout)
    differs = _base_differences(state, layout, llm_dir)
    report.base_from_checkpoint = sorted(differs)
    # trainable.llm_params names parameters of the peft model itself (our tensor names without "llm.").
    replaced = sorted(name.removeprefix("llm.") for name in differs.values())
    config = build_config(layout, llm, llm_arch, sources, decoder_cfg, conditioning,
                          keymap.NORM_AND_BIAS_PARAMS + replaced)
    tensors = _trained_tensors(state, layout, config, differs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "profile": config.profile,
                                                         "converted_from": Path(checkpoint).name})
    del tensors
    _use_checkpoint_components(state, {**sources, "decoder": decoder_cfg.source}, config, out, report)
    config.save(out)
    report.notes = _notes(state, layout, report)
    (out / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _use_checkpoint_components(
    state: dict[str, torch.Tensor], sources: dict[str, str], config: MuMuConfig, out: Path,
    report: ConversionReport,
) -> None:
    """Compare each frozen component the file holds; where it differs, write the file's copy and point at it."""
    sections = {"mert": config.music_encoder, "vit": config.image_encoder, "vivit": config.video_encoder,
                "decoder": config.decoder}
    for name, source in sources.items():
        prefix = next(p for p, n in FROZEN_PREFIXES.items() if n == name)
        held = dict(iter_prefixed(state, prefix))
        if not held:
            continue
        result = check_component(name, source, held)
        report.components[name] = result.summary()
        if not result.matches:
            write_checkpoint_copy(name, source, held, out)
            sections[name].source = report.replaced[name] = local_source(name)


def _trained_tensors(
    state: dict[str, torch.Tensor], layout: Layout, config: MuMuConfig, differs: dict[str, str]
) -> dict[str, torch.Tensor]:
    """Every tensor the converted model's trained_state_dict holds, checked against its shapes (built on meta)."""
    expected = build_model(config, weights=False).trained_state_dict()
    stream = config.projector.streams[0].name
    sources = keymap.trained_sources(layout, list(state), config.projector.layout == "flat", stream)
    base = {ours: source for ours, source in keymap.base_sources(layout).values() if ours in differs.values()}
    tensors: dict[str, torch.Tensor] = {"injection.gates": keymap.gather_gates(state, layout)}
    for name, source in {**sources, **base}.items():
        tensors[name] = source.transform(state[source.key]).contiguous()
    for name, target in expected.items():
        # HF's attention_bias also gives k_proj and v_proj biases; the published model has none, i.e. zeros.
        if name not in tensors and name.endswith(("k_proj.base_layer.bias", "v_proj.base_layer.bias")):
            tensors[name] = torch.zeros(target.shape, dtype=state["llama.norm.weight"].dtype)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or wrong:
        raise ValueError("the checkpoint does not fit the model built from the given components:"
                         + (f"\n  not provided: {missing[:8]}" if missing else "")
                         + (f"\n  no place in the model: {extra[:8]}" if extra else "")
                         + (f"\n  shape mismatch: {wrong[:8]}" if wrong else ""))
    return tensors


def _notes(state: dict[str, torch.Tensor], layout: Layout, report: ConversionReport) -> list[str]:
    notes = []
    gates = keymap.gather_gates(state, layout)
    if not gates.abs().max() > 0:
        notes.append("every injection gate is zero (the published training never trained them): media inputs do "
                     "not reach the LLM; the converted model reproduces that")
    for name, result in report.components.items():
        if name in report.replaced:
            notes.append(f"the checkpoint's {name} differs from {result['source']} in {result['differing']} of "
                         f"{result['checked']} tensors (e.g. {result['differing_keys'][:3]}): the adapters were "
                         f"trained on the checkpoint's copy, so it was written to {report.replaced[name]} (with "
                         f"{result['source']}'s config and processor files) and the converted model uses it")
    if report.unrunnable_keys:
        notes.append(f"{len(report.unrunnable_keys)} MuMu-LLaMA video RNN/attention-pooling keys were not imported "
                     "(iu_vivit_rnn.*, iu_vivit_attention.*): upstream's video path never ran them (it reads an "
                     "attribute the ViViT output lacks and pools a tuple), so the published video features went "
                     "through the plain M2UGen video adapter, which the converted model reproduces")
    if report.unexpected_keys:
        notes.append(f"{len(report.unexpected_keys)} keys of the checkpoint have no place in the model and were "
                     "ignored (see unexpected_keys)")
    return notes
