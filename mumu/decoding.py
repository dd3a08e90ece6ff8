"""Text generation with the KV cache, music on/off control, and capture of the states that predict [AUD0..n]."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import DynamicCache
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from choices import check_choice, options
from mumu.modeling import MediaFeatures, MuMuModel, module_outputs

MusicMode = Literal["auto", "always", "never"]
MUSIC_MODES = options(MusicMode)
M2UGEN_STOP = "\n###"  # the published models never learned EOS: they stop here and keep the first line


@dataclass
class GenerationSettings:
    """Decoding controls. temperature 0 is greedy; music: auto (model decides), always, never."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    music: MusicMode = "auto"
    seed: int | None = None
    use_cache: bool = True


@dataclass
class Generated:
    """One row's result: new token ids, reply text, and (n_aud, H) predicting states when music was produced."""

    token_ids: list[int]
    text: str
    audio_hidden: torch.Tensor | None
    finished: bool


class _Rows:
    """Per-row decoding state: where each row is in the [AUD] sequence, and what it produced."""

    def __init__(
        self, batch: int, settings: GenerationSettings, audio: list[int], eos: int,
        stop_text: Callable[[list[int]], bool] | None = None,
    ) -> None:
        self.settings, self.audio, self.eos = settings, audio, eos
        self.stop_text = stop_text
        self.next_audio = [0] * batch
        self.done = [False] * batch
        self.tokens: list[list[int]] = [[] for _ in range(batch)]
        self.hidden: list[list[torch.Tensor]] = [[] for _ in range(batch)]

    def constrain(self, logits: torch.Tensor, remaining: int) -> torch.Tensor:
        """Mask logits so [AUD] tokens come complete and in order, followed by EOS, as the music mode allows."""
        n = len(self.audio)
        out = logits.clone()
        for b, k in enumerate(self.next_audio):
            force = None
            if 0 < k < n:
                force = self.audio[k]
            elif k == n:
                force = self.eos
            elif self.settings.music == "always" and remaining <= n + 1:
                force = self.audio[0]
            if force is not None:
                out[b] = float("-inf")
                out[b, force] = 0.0
                continue
            out[b, self.audio[1:]] = float("-inf")
            if self.settings.music == "never":
                out[b, self.audio[0]] = float("-inf")
        return out

    def advance(self, chosen: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Record each row's token (EOS becomes [AUD0] under music=always) and return the tokens to feed."""
        fed = chosen.clone()
        for b, token in enumerate(chosen.tolist()):
            if self.done[b]:
                fed[b] = self.eos
                continue
            if token == self.eos and self.settings.music == "always" and self.next_audio[b] == 0:
                token = self.audio[0]
                fed[b] = token
            self.tokens[b].append(token)
            if self.next_audio[b] < len(self.audio) and token == self.audio[self.next_audio[b]]:
                self.hidden[b].append(hidden[b])
                self.next_audio[b] += 1
            # The published rule ends a reply after its last [AUD] token or at "\n###"; EOS always ends it.
            published = self.stop_text is not None and (
                self.next_audio[b] == len(self.audio) or self.stop_text(self.tokens[b]))
            if token == self.eos or published:
                self.done[b] = True
        return fed


def _left_pad(prompts: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p, device=device)
        mask[i, length - len(p):] = 1
    return ids, mask


def _sample(logits: torch.Tensor, ids: torch.Tensor, settings: GenerationSettings, rng: torch.Generator | None):
    if settings.temperature <= 0:
        return logits.argmax(-1)
    logits = TemperatureLogitsWarper(settings.temperature)(ids, logits)
    if settings.top_p < 1.0:
        logits = TopPLogitsWarper(settings.top_p)(ids, logits)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=rng).squeeze(-1)


@torch.no_grad()
def generate(
    model: MuMuModel, prompts: list[list[int]], media: MediaFeatures | None = None,
    settings: GenerationSettings | None = None, on_token: Callable[[int, int], None] | None = None,
) -> list[Generated]:
    """Continue each prompt (left-padded batch) until EOS or max_new_tokens; on_token(row, id) sees each token."""
    settings = settings or GenerationSettings()
    check_choice(settings.music, MusicMode, "music")
    device = model.device
    ids, mask = _left_pad(prompts, model.ids.pad, device)
    stop_text = _m2ugen_stop(model) if model.config.pipeline.stop_rule == "m2ugen" else None
    rows = _Rows(len(prompts), settings, list(model.ids.audio), model.ids.eos, stop_text)
    rng = None
    if settings.seed is not None:
        rng = torch.Generator(device=device).manual_seed(settings.seed)
    cache = DynamicCache() if settings.use_cache else None
    feed, seen = ids, 0
    inputs = model.modality_inputs(media, len(prompts))
    # The projector-source states (by default the final-norm output) the training forward gathers too.
    with model.injection.inject(inputs, len(prompts)), module_outputs(model.projector_source) as hidden:
        for step in range(settings.max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            out = model.llm(
                input_ids=feed, attention_mask=mask, position_ids=positions[:, seen:],
                past_key_values=cache, use_cache=settings.use_cache, logits_to_keep=1,
            )
            last = hidden.pop()[:, -1]
            logits = rows.constrain(out.logits[:, -1].float(), settings.max_new_tokens - step)
            before = [len(t) for t in rows.tokens]
            chosen = rows.advance(_sample(logits, ids, settings, rng), last)
            if on_token is not None:
                for b, count in enumerate(before):
                    if len(rows.tokens[b]) > count:
                        on_token(b, rows.tokens[b][-1])
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            if all(rows.done):
                break
            if settings.use_cache:
                seen, feed = ids.shape[1] - 1, chosen[:, None]
            else:
                feed = ids
    return [_result(model, rows, b) for b in range(len(prompts))]


def _text(model: MuMuModel, tokens: list[int]) -> str:
    special = {*model.ids.audio, model.ids.eos}
    text_ids = [t for t in tokens if t not in special]
    return model.tokenizer.decode(text_ids, skip_special_tokens=True) if model.tokenizer else ""


def _m2ugen_stop(model: MuMuModel) -> Callable[[list[int]], bool]:
    if model.tokenizer is None:
        raise ValueError("stop_rule 'm2ugen' needs the model's tokenizer")
    # The reply so far is short, so decoding its tail each step costs little; 8 tokens cover "\n###" however split.
    return lambda tokens: M2UGEN_STOP in _text(model, tokens[-8:])


def _result(model: MuMuModel, rows: _Rows, b: int) -> Generated:
    tokens = rows.tokens[b]
    text = _text(model, tokens)
    if model.config.pipeline.stop_rule == "m2ugen":
        text = text.split("\n", 1)[0]
    text = text.strip()
    complete = len(rows.hidden[b]) == len(rows.audio)
    audio = torch.stack(rows.hidden[b]) if complete else None
    return Generated(tokens, text, audio, rows.done[b])
