"""Tiny published-format M2UGen checkpoints: the exact published key names and layouts, small random tensors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from adapters.mert import MusicEncoder
from adapters.vision import ImageEncoder, VideoEncoder
from checkpoints.sources import TINY_TOKENIZER, resolve_source
from mumu.builder import seeded
from mumu.profiles import tiny
from mumu.upstream.compare import weight_loaders

WIDTH, HEADS, FFN, RANK, BASE_VOCAB = 64, 4, 96, 4, 512
PROJ_WIDTH, PROJ_FFN = 16, 32


def meta_rows(hf_rows: torch.Tensor, heads: int) -> torch.Tensor:
    """HF rotate_half row order -> Meta's interleaved pairs (what a Meta-format wq/wk holds)."""
    n = hf_rows.shape[0]
    return hf_rows.reshape(heads, 2, n // heads // 2, *hf_rows.shape[1:]).transpose(1, 2).reshape(hf_rows.shape)


def save_encoders(directory: Path) -> dict[str, Path]:
    """The tiny profile's MERT, ViT and ViViT saved as local Hugging Face directories."""
    cfg = tiny()
    dirs = {name: directory / name for name in ("mert", "vit", "vivit")}
    with seeded(1):
        music = MusicEncoder.from_config(cfg.music_encoder)
        image = ImageEncoder.from_config(cfg.image_encoder)
        video = VideoEncoder.from_config(cfg.video_encoder)
    for name, encoder in zip(dirs, (music, image, video), strict=True):
        encoder.model.save_pretrained(dirs[name])
        encoder.processor.save_pretrained(dirs[name])
    return dirs


def save_llm(directory: Path, layers: int, seed: int = 0) -> LlamaForCausalLM:
    """A tiny HF Llama (values exactly representable in fp16, as the published fp16 copies) and its tokenizer."""
    config = LlamaConfig(vocab_size=BASE_VOCAB, hidden_size=WIDTH, intermediate_size=FFN, num_hidden_layers=layers,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, rms_norm_eps=1e-5,
                         max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0)
    with seeded(seed):
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_((torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.1) + (p.ndim == 1)).half().float())
    model.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TINY_TOKENIZER))
    assert len(tokenizer) == BASE_VOCAB
    tokenizer.save_pretrained(directory)
    return model


@dataclass
class Spec:
    """Which published variant to build."""

    layers: int = 20
    prefix_rows: int = 18
    decoder: str = "musicgen"
    rnn: bool = False
    queries: int = 4
    out_dim: int = 32
    t5_tokens: int = 16  # AudioLDM2 only: prompt_embeds rows (T5 width 32, then 8 x 16 GPT-2 values)
    frozen_dtype: torch.dtype = torch.float16  # the published copies of LLaMA and the encoders (fp16 or bf16)


def _rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape) * scale


def _adapter(prefix: str, channels: int, width: int) -> dict[str, torch.Tensor]:
    sd = {f"{prefix}_agg.weight": _rand(1, channels, 1, scale=0.5), f"{prefix}_agg.bias": _rand(1),
          f"{prefix}_proj.weight": _rand(WIDTH, width), f"{prefix}_proj.bias": _rand(WIDTH, scale=0.1)}
    for k in (1, 2, 3):
        sd[f"{prefix}_norm_{k}.weight"] = 1 + _rand(WIDTH, scale=0.1)
        for f in ("f1", "f2", "f3"):
            sd[f"{prefix}_{f}_{k}.weight"] = _rand(WIDTH, WIDTH, scale=0.1)
    return sd


def published_state(llm: LlamaForCausalLM, spec: Spec, encoders: dict[str, Path], seed: int = 0) -> dict:
    """The published model state dict for spec: base tensors from llm (Meta layout, fp16), trained ones fp32."""
    hf = {k: v.detach().clone() for k, v in llm.state_dict().items()}
    sd: dict[str, torch.Tensor] = {}
    with seeded(seed):
        sd.update(_adapter("mu_mert", 3, 32))
        sd.update(_adapter("iu_vit", 17, 32))
        sd.update(_adapter("iu_vivit", 65, 32))
        if spec.rnn:
            sd.update({"mu_mert_rnn.weight_ih_l0": _rand(32, 32), "mu_mert_rnn.weight_hh_l0": _rand(32, 32),
                       "mu_mert_rnn.bias_ih_l0": _rand(32), "mu_mert_rnn.bias_hh_l0": _rand(32),
                       "mu_mert_attention.weight": _rand(1, 32), "mu_mert_attention.bias": _rand(1)})
        audio_in, audio_out = _rand(8, WIDTH), _rand(8, WIDTH, scale=0.01)
        low = spec.frozen_dtype
        sd["llama.tok_embeddings.weight"] = torch.cat([hf["model.embed_tokens.weight"], audio_in]).to(low)
        sd["llama.output.weight"] = torch.cat([hf["lm_head.weight"], audio_out]).to(low)
        sd["llama.norm.weight"] = hf["model.norm.weight"] + _rand(WIDTH, scale=0.05)
        for i in range(spec.layers):
            att, ffn, ours = f"llama.layers.{i}.attention", f"llama.layers.{i}.feed_forward", f"model.layers.{i}"
            for w, proj in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
                weight = hf[f"{ours}.self_attn.{proj}.weight"]
                sd[f"{att}.{w}.weight"] = (meta_rows(weight, HEADS) if w in ("wq", "wk") else weight).to(low)
                sd[f"{att}.lora_{w}_l1.weight"] = _rand(RANK, WIDTH)
                sd[f"{att}.lora_{w}_l2.weight"] = _rand(WIDTH, RANK)
            sd[f"{att}.wq.bias"], sd[f"{att}.wo.bias"] = _rand(WIDTH, scale=0.1), _rand(WIDTH, scale=0.1)
            sd[f"{att}.gate"] = _rand(1, HEADS, 1, 1, scale=1.0).to(low)
            for w, proj in (("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj")):
                weight = hf[f"{ours}.mlp.{proj}.weight"]
                sd[f"{ffn}.{w}.weight"] = weight.to(low)
                sd[f"{ffn}.{w}.bias"] = _rand(weight.shape[0], scale=0.1)
                sd[f"{ffn}.lora_{w}_l1.weight"] = _rand(RANK, weight.shape[1])
                sd[f"{ffn}.lora_{w}_l2.weight"] = _rand(weight.shape[0], RANK)
            sd[f"llama.layers.{i}.attention_norm.weight"] = hf[f"{ours}.input_layernorm.weight"] + _rand(WIDTH)
            sd[f"llama.layers.{i}.ffn_norm.weight"] = hf[f"{ours}.post_attention_layernorm.weight"] + _rand(WIDTH)
        sd["prefix_query.weight"] = _rand(spec.prefix_rows, WIDTH)
        tfm = nn.Transformer(d_model=PROJ_WIDTH, nhead=4, num_encoder_layers=2, num_decoder_layers=1,
                             dim_feedforward=PROJ_FFN, dropout=0.0, batch_first=True)
        sd.update({f"output_projector.tfm.{k}": v.detach().clone() for k, v in tfm.state_dict().items()})
        queries, out_dim = (1, spec.t5_tokens * 32 + 8 * 16) if spec.decoder == "audioldm2" else (
            spec.queries, spec.out_dim)
        sd.update({"output_projector.fc.weight": _rand(PROJ_WIDTH, WIDTH),
                   "output_projector.fc.bias": _rand(PROJ_WIDTH),
                   "output_projector.model.weight": _rand(out_dim, PROJ_WIDTH),
                   "output_projector.model.bias": _rand(out_dim),
                   "output_projector.query_embs": _rand(1, queries, PROJ_WIDTH)})
    for name, prefix in (("mert", "mert_model."), ("vit", "vit_model."), ("vivit", "vivit_model.")):
        sd.update({prefix + k: load().to(spec.frozen_dtype) for k, load in weight_loaders(encoders[name]).items()})
    with seeded(seed + 1):
        # Upstream built ViT and ViViT with add_pooling_layer=True: random, never-trained pooler tensors.
        for prefix in ("vit_model.", "vivit_model."):
            width = sd[prefix + "embeddings.cls_token"].shape[-1]
            sd[prefix + "pooler.dense.weight"] = _rand(width, width).to(spec.frozen_dtype)
            sd[prefix + "pooler.dense.bias"] = _rand(width).to(spec.frozen_dtype)
    return sd


def save_published(path: Path, state: dict, module_prefix: bool = False) -> Path:
    """torch.save it the way the published training loop did: model, optimizer, epoch, scaler, args."""
    model = {("module." + k if module_prefix else k): v for k, v in state.items()}
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
                "epoch": 1, "scaler": {"scale": 65536.0},
                "args": argparse.Namespace(llama_type="7B", max_words=1024, lr=1e-4)}, path)
    return path
