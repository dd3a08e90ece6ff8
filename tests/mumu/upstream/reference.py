"""The published M2UGen forward written from its documented formulas, in plain torch, on a published state dict.

Independent of mumu/: Meta-layout wq/wk with interleaved rotary pairs, LoRA added without scaling, biases on q,
o and the FFN, the adapter value through the base wv added per head as tanh(gate) * v before wo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS, ADAPTER_EPS, THETA = 1e-5, 1e-6, 10000.0


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class Reference:
    """Published forward over a state dict (cast to fp32)."""

    def __init__(self, state: dict[str, torch.Tensor], heads: int, audio_ids: list[int]) -> None:
        self.sd = {k: v.float() for k, v in state.items() if not k.startswith(("mert_model.", "vit_model."))}
        self.heads, self.audio_ids = heads, audio_ids
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.sd if k.startswith("llama.layers."))
        self.rows = self.sd["prefix_query.weight"].shape[0]

    # adapters -------------------------------------------------------------------------------------------------
    def _bridge(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        sd = self.sd
        h = x @ sd[f"{prefix}_proj.weight"].T + sd[f"{prefix}_proj.bias"]
        for k in (1, 2, 3):
            n = _rms(h, sd[f"{prefix}_norm_{k}.weight"], ADAPTER_EPS)
            h = h + (F.silu(n @ sd[f"{prefix}_f1_{k}.weight"].T) * (n @ sd[f"{prefix}_f3_{k}.weight"].T)) @ sd[
                f"{prefix}_f2_{k}.weight"].T
        return h

    def _agg(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        # Conv1d(C -> 1, kernel 1) over the channel axis of (C, D): a weighted sum plus bias.
        return torch.einsum("c,cd->d", self.sd[f"{prefix}_agg.weight"][0, :, 0], x) + self.sd[f"{prefix}_agg.bias"]

    def music(self, feats: torch.Tensor) -> torch.Tensor:
        """(layers, T, width) MERT states -> (D,)."""
        sd = self.sd
        if "mu_mert_rnn.weight_ih_l0" not in sd:
            return self._bridge("mu_mert", F.normalize(self._agg("mu_mert", feats.mean(1)), dim=-1))
        frames = F.normalize(torch.stack([self._agg("mu_mert", feats[:, t]) for t in range(feats.shape[1])]), dim=-1)
        h, outs = torch.zeros(frames.shape[1]), []
        for x in frames:  # Elman RNN, tanh
            h = torch.tanh(x @ sd["mu_mert_rnn.weight_ih_l0"].T + sd["mu_mert_rnn.bias_ih_l0"]
                           + h @ sd["mu_mert_rnn.weight_hh_l0"].T + sd["mu_mert_rnn.bias_hh_l0"])
            outs.append(h)
        outs = torch.stack(outs)
        weights = torch.softmax(outs @ sd["mu_mert_attention.weight"].T + sd["mu_mert_attention.bias"], dim=0)
        return self._bridge("mu_mert", (weights * outs).sum(0))

    def tokens(self, prefix: str, feats: torch.Tensor) -> torch.Tensor:
        """(N, width) ViT / ViViT tokens -> (D,)."""
        return self._bridge(prefix, F.normalize(self._agg(prefix, feats), dim=-1))

    # LLaMA ----------------------------------------------------------------------------------------------------
    def _adapter_for(self, layer: int, feats: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
        first = self.layers - self.rows
        if layer < first:
            return None
        j = layer - first
        prefix = self.sd["prefix_query.weight"][j]
        if self.rows == 20:  # older layout: all features summed
            present = [f for f in feats.values() if f is not None]
            return prefix + sum(present) if present else prefix
        f = feats[("music", "image", "video")[j // 6]]
        return prefix if f is None else f + prefix

    @staticmethod
    def _lora(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
        return (x @ sd[f"{name}_l1.weight"].T) @ sd[f"{name}_l2.weight"].T

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        t, hd = x.shape[1], x.shape[-1]
        freqs = 1.0 / THETA ** (torch.arange(0, hd, 2).float() / hd)
        cis = torch.polar(torch.ones(t, hd // 2), torch.outer(torch.arange(t).float(), freqs))
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], hd // 2, 2))
        return torch.view_as_real(xc * cis[None, :, None, :]).flatten(-2)

    def forward(self, tokens: torch.Tensor, feats: dict[str, torch.Tensor | None]) -> tuple[torch.Tensor, list]:
        """(1, T) ids -> (1, T, V) logits and every layer's output."""
        sd, heads = self.sd, self.heads
        h = sd["llama.tok_embeddings.weight"][tokens]
        b, t, d = h.shape
        hd = d // heads
        mask = torch.full((t, t), float("-inf")).triu(1)
        outs = []
        for i in range(self.layers):
            a, f = f"llama.layers.{i}.attention", f"llama.layers.{i}.feed_forward"
            x = _rms(h, sd[f"llama.layers.{i}.attention_norm.weight"])
            q = x @ sd[f"{a}.wq.weight"].T + sd[f"{a}.wq.bias"] + self._lora(x, sd, f"{a}.lora_wq")
            k = x @ sd[f"{a}.wk.weight"].T + self._lora(x, sd, f"{a}.lora_wk")
            v = x @ sd[f"{a}.wv.weight"].T + self._lora(x, sd, f"{a}.lora_wv")
            q, k, v = (y.view(b, t, heads, hd) for y in (q, k, v))
            q, k = self._rope(q), self._rope(k)
            scores = torch.einsum("bthd,bshd->bhts", q, k) / hd**0.5 + mask
            out = torch.einsum("bhts,bshd->bthd", torch.softmax(scores, -1), v)
            adapter = self._adapter_for(i, feats)
            if adapter is not None:
                adapter_v = (adapter @ sd[f"{a}.wv.weight"].T).view(heads, hd)  # base wv, no LoRA
                out = out + torch.tanh(sd[f"{a}.gate"].view(heads))[None, None, :, None] * adapter_v
            out = out.reshape(b, t, d)
            h = h + out @ sd[f"{a}.wo.weight"].T + sd[f"{a}.wo.bias"] + self._lora(out, sd, f"{a}.lora_wo")
            x = _rms(h, sd[f"llama.layers.{i}.ffn_norm.weight"])
            g = F.silu(x @ sd[f"{f}.w1.weight"].T + sd[f"{f}.w1.bias"] + self._lora(x, sd, f"{f}.lora_w1"))
            g = g * (x @ sd[f"{f}.w3.weight"].T + sd[f"{f}.w3.bias"] + self._lora(x, sd, f"{f}.lora_w3"))
            h = h + g @ sd[f"{f}.w2.weight"].T + sd[f"{f}.w2.bias"] + self._lora(g, sd, f"{f}.lora_w2")
            outs.append(h)
        h = _rms(h, sd["llama.norm.weight"])
        return h @ sd["llama.output.weight"].T, outs

    # [AUD] states and the output projector --------------------------------------------------------------------
    def projector(self, tokens: torch.Tensor, feats: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """Projector output for a sequence ending in [AUD0..7]: (1, N_out, out_dim)."""
        sd = self.sd
        _, outs = self.forward(tokens, feats)
        source = outs[-1] if self.rows == 18 else outs[self.layers - 21]
        start = tokens[0].tolist().index(self.audio_ids[0])
        hidden = source[:, start - 1 : start + 7] + sd["llama.tok_embeddings.weight"][tokens[:, start : start + 8]]
        p = sd["output_projector.fc.weight"].shape[0]
        tfm = nn.Transformer(d_model=p, nhead=4, num_encoder_layers=2, num_decoder_layers=1,
                             dim_feedforward=sd["output_projector.tfm.encoder.layers.0.linear1.weight"].shape[0],
                             dropout=0.0, batch_first=True).eval()
        tfm.load_state_dict({k[len("output_projector.tfm."):]: v for k, v in sd.items()
                             if k.startswith("output_projector.tfm.")})
        x = hidden @ sd["output_projector.fc.weight"].T + sd["output_projector.fc.bias"]
        y = tfm(x, sd["output_projector.query_embs"])
        return y @ sd["output_projector.model.weight"].T + sd["output_projector.model.bias"]

    def greedy(self, prompt: list[int], feats: dict, steps: int, decode) -> list[int]:
        """Published decoding at temperature 0: stop on '\\n###' (or after [AUD7]); no KV cache."""
        tokens = list(prompt)
        for _ in range(steps):
            logits, _ = self.forward(torch.tensor([tokens]), feats)
            tokens.append(int(logits[0, -1].argmax()))
            new = tokens[len(prompt):]
            if "\n###" in decode(new[-8:]) or new[-1] == self.audio_ids[-1]:
                break
        return tokens[len(prompt):]
