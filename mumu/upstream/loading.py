"""Read a published M2UGen / MuMu-LLaMA checkpoint.pth safely and tell its layout from its keys and shapes."""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

MODULE_PREFIX = "module."
# The published file also holds every frozen part (checked against the given components, never imported).
FROZEN_PREFIXES = {"mert_model.": "mert", "vit_model.": "vit", "vivit_model.": "vivit", "generation_model.": "decoder"}
ADAPTER_PREFIXES = {"mu_mert": "music", "iu_vit": "image", "iu_vivit": "video"}
PREFIX_ROWS = {18: "grouped", 20: "summed"}  # HEAD layout (three groups of 6) and the older one (sum, 20 layers)
PROJECTOR_HEADS = 4  # nn.Transformer(nhead=4) in the published code; head counts cannot be read from shapes
# MuMu-LLaMA's video RNN + attention pooling: its forward fails before reaching them (it reads
# `outputs.output_hidden_states`, which ViViT outputs lack), so no published video feature ever went through them.
UNRUNNABLE_PREFIXES = ("iu_vivit_rnn.", "iu_vivit_attention.")
RNN_KEYS = ("mu_mert_rnn.weight_ih_l0", "mu_mert_rnn.weight_hh_l0", "mu_mert_rnn.bias_ih_l0",
            "mu_mert_rnn.bias_hh_l0", "mu_mert_attention.weight", "mu_mert_attention.bias")


class NotPublishedCheckpoint(ValueError):
    """The file is not (or not a complete) published M2UGen / MuMu-LLaMA checkpoint."""


@dataclass(frozen=True)
class Layout:
    """Everything about a published checkpoint that its keys and shapes fix."""

    layers: int
    width: int
    heads: int
    ffn: int
    vocab: int
    lora_rank: int
    prefix_rows: int
    music_rnn: bool
    adapter_blocks: int
    adapter_ffn: int
    music_layers: int
    music_width: int
    image_tokens: int
    image_width: int
    video_tokens: int
    video_width: int
    projector_width: int
    projector_ffn: int
    encoder_layers: int
    decoder_layers: int
    queries: int
    out_dim: int

    @property
    def injection_mode(self) -> str:
        """'grouped' (18 prefix rows) or 'summed' (20)."""
        return PREFIX_ROWS[self.prefix_rows]

    @property
    def decoder_kind(self) -> str:
        """The AudioLDM2 projector has one query and a flat output; MusicGen one query per T5 token."""
        return "audioldm2" if self.queries == 1 else "musicgen"


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's model state dict, memory-mapped, `module.` stripped; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file {path}")
    if not zipfile.is_zipfile(path):
        raise NotPublishedCheckpoint(f"{path} is not a torch checkpoint (torch.save zip format); expected the "
                                     "published M2UGen checkpoint.pth")
    try:
        # The published file pickles its argparse Namespace under 'args': allow exactly that class, nothing else.
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as e:
        raise NotPublishedCheckpoint(f"{path} holds objects a published checkpoint does not (refused to unpickle "
                                     f"them): {str(e).splitlines()[0]}") from e
    except (RuntimeError, EOFError) as e:
        raise NotPublishedCheckpoint(f"{path} could not be read as a torch checkpoint: {e}") from e
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NotPublishedCheckpoint(f"{path} has no state dict of tensors under 'model'; expected a published "
                                     "M2UGen checkpoint.pth")
    if all(k.startswith(MODULE_PREFIX) for k in state):
        state = {k[len(MODULE_PREFIX):]: v for k, v in state.items()}
    if "llama.tok_embeddings.weight" not in state or "prefix_query.weight" not in state:
        raise NotPublishedCheckpoint(f"{path} lacks llama.tok_embeddings.weight / prefix_query.weight: not a "
                                     "published M2UGen / MuMu-LLaMA checkpoint")
    return state


def _dim(state: dict[str, torch.Tensor], key: str, axis: int) -> int:
    if key not in state:
        raise NotPublishedCheckpoint(f"published checkpoint lacks {key}")
    return int(state[key].shape[axis])


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def detect_layout(state: dict[str, torch.Tensor]) -> Layout:
    """Read the dimensions off the tensors; checks of every key come in expected_shapes()."""
    rows = _dim(state, "prefix_query.weight", 0)
    if rows not in PREFIX_ROWS:
        raise NotPublishedCheckpoint(f"prefix_query has {rows} rows; the published layouts have 18 (three groups "
                                     "of 6 layers) or 20 (modalities summed into 20 layers)")
    rnn = [k for k in RNN_KEYS if k in state]
    if rnn and len(rnn) != len(RNN_KEYS):
        raise NotPublishedCheckpoint(f"MuMu-LLaMA RNN keys are incomplete: has {rnn}, needs all of {RNN_KEYS}")
    return Layout(
        layers=_count(state, r"llama\.layers\.(\d+)\."),
        width=_dim(state, "llama.tok_embeddings.weight", 1),
        heads=_dim(state, "llama.layers.0.attention.gate", 1),
        ffn=_dim(state, "llama.layers.0.feed_forward.w1.weight", 0),
        vocab=_dim(state, "llama.tok_embeddings.weight", 0),
        lora_rank=_dim(state, "llama.layers.0.attention.lora_wq_l1.weight", 0),
        prefix_rows=rows,
        music_rnn=bool(rnn),
        adapter_blocks=_count(state, r"mu_mert_norm_(\d+)\.") - 1,
        adapter_ffn=_dim(state, "mu_mert_f1_1.weight", 0),
        music_layers=_dim(state, "mu_mert_agg.weight", 1),
        music_width=_dim(state, "mu_mert_proj.weight", 1),
        image_tokens=_dim(state, "iu_vit_agg.weight", 1),
        image_width=_dim(state, "iu_vit_proj.weight", 1),
        video_tokens=_dim(state, "iu_vivit_agg.weight", 1),
        video_width=_dim(state, "iu_vivit_proj.weight", 1),
        projector_width=_dim(state, "output_projector.fc.weight", 0),
        projector_ffn=_dim(state, "output_projector.tfm.encoder.layers.0.linear1.weight", 0),
        encoder_layers=_count(state, r"output_projector\.tfm\.encoder\.layers\.(\d+)\."),
        decoder_layers=_count(state, r"output_projector\.tfm\.decoder\.layers\.(\d+)\."),
        queries=_dim(state, "output_projector.query_embs", 1),
        out_dim=_dim(state, "output_projector.model.weight", 0),
    )


def _adapter_shapes(prefix: str, layout: Layout, channels: int, width: int) -> dict[str, tuple[int, ...]]:
    d, f = layout.width, layout.adapter_ffn
    shapes = {f"{prefix}_agg.weight": (1, channels, 1), f"{prefix}_agg.bias": (1,),
              f"{prefix}_proj.weight": (d, width), f"{prefix}_proj.bias": (d,)}
    for k in range(1, layout.adapter_blocks + 1):
        shapes.update({f"{prefix}_norm_{k}.weight": (d,), f"{prefix}_f1_{k}.weight": (f, d),
                       f"{prefix}_f3_{k}.weight": (f, d), f"{prefix}_f2_{k}.weight": (d, f)})
    return shapes


def expected_shapes(layout: Layout) -> dict[str, tuple[int, ...]]:
    """Every trained or base-LLM key a checkpoint of this layout must hold, with its shape."""
    d, f, r, v = layout.width, layout.ffn, layout.lora_rank, layout.vocab
    shapes = _adapter_shapes("mu_mert", layout, layout.music_layers, layout.music_width)
    shapes.update(_adapter_shapes("iu_vit", layout, layout.image_tokens, layout.image_width))
    shapes.update(_adapter_shapes("iu_vivit", layout, layout.video_tokens, layout.video_width))
    if layout.music_rnn:
        w = layout.music_width
        shapes.update({"mu_mert_rnn.weight_ih_l0": (w, w), "mu_mert_rnn.weight_hh_l0": (w, w),
                       "mu_mert_rnn.bias_ih_l0": (w,), "mu_mert_rnn.bias_hh_l0": (w,),
                       "mu_mert_attention.weight": (1, w), "mu_mert_attention.bias": (1,)})
    shapes.update({"llama.tok_embeddings.weight": (v, d), "llama.norm.weight": (d,), "llama.output.weight": (v, d),
                   "prefix_query.weight": (layout.prefix_rows, d)})
    for i in range(layout.layers):
        att, ffn = f"llama.layers.{i}.attention", f"llama.layers.{i}.feed_forward"
        shapes.update({f"{att}.{w}.weight": (d, d) for w in ("wq", "wk", "wv", "wo")})
        shapes.update({f"{att}.wq.bias": (d,), f"{att}.wo.bias": (d,), f"{att}.gate": (1, layout.heads, 1, 1)})
        for w in ("wq", "wk", "wv", "wo"):
            shapes.update({f"{att}.lora_{w}_l1.weight": (r, d), f"{att}.lora_{w}_l2.weight": (d, r)})
        shapes.update({f"{ffn}.w1.weight": (f, d), f"{ffn}.w1.bias": (f,), f"{ffn}.w3.weight": (f, d),
                       f"{ffn}.w3.bias": (f,), f"{ffn}.w2.weight": (d, f), f"{ffn}.w2.bias": (d,)})
        for w, (n_in, n_out) in {"w1": (d, f), "w3": (d, f), "w2": (f, d)}.items():
            shapes.update({f"{ffn}.lora_{w}_l1.weight": (r, n_in), f"{ffn}.lora_{w}_l2.weight": (n_out, r)})
        shapes.update({f"llama.layers.{i}.attention_norm.weight": (d,), f"llama.layers.{i}.ffn_norm.weight": (d,)})
    p, o = layout.projector_width, layout.out_dim
    shapes.update({"output_projector.fc.weight": (p, d), "output_projector.fc.bias": (p,),
                   "output_projector.model.weight": (o, p), "output_projector.model.bias": (o,),
                   "output_projector.query_embs": (1, layout.queries, p)})
    with torch.device("meta"):
        tfm = nn.Transformer(d_model=p, nhead=PROJECTOR_HEADS, num_encoder_layers=layout.encoder_layers,
                             num_decoder_layers=layout.decoder_layers, dim_feedforward=layout.projector_ffn,
                             batch_first=True)
    shapes.update({f"output_projector.tfm.{k}": tuple(t.shape) for k, t in tfm.state_dict().items()})
    return shapes


def check_keys(state: dict[str, torch.Tensor], layout: Layout) -> list[str]:
    """Raise naming missing and mis-shaped keys; return the unexpected ones (reported, not imported)."""
    expected = expected_shapes(layout)
    missing = sorted(set(expected) - set(state))
    wrong = [f"{k}: {tuple(state[k].shape)}, expected {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or wrong:
        raise NotPublishedCheckpoint(
            "not a complete published M2UGen checkpoint of the layout its tensors suggest "
            f"({layout.layers} layers, width {layout.width}, {layout.prefix_rows} prefix rows):"
            + (f"\n  missing ({len(missing)}): {missing[:10]}" if missing else "")
            + (f"\n  wrong shape ({len(wrong)}): {wrong[:10]}" if wrong else "")
        )
    return sorted(k for k in state if k not in expected and not k.startswith(tuple(FROZEN_PREFIXES)))
