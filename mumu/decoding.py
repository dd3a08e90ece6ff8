"""Text generation with the KV cache, music on/off control, and capture of the states that predict [AUD0..n]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """One row's result: new token ids, reply text, and (n_aud, H) predicting states when music was produced.

    error: what `on_token` raised for this row (its decoding ended there; the other rows went on), else None.
    """

    token_ids: list[int]
    text: str
    audio_hidden: torch.Tensor | None
    finished: bool
    error: Exception | None = None


class _Rows:
    """Per-row decoding state: each row's settings, where it is in the [AUD] sequence, and what it produced."""

    def __init__(
        self, settings: list[GenerationSettings], audio: list[int], eos: int,
        stop_text: Callable[[list[int]], bool] | None = None,
    ) -> None:
        self.settings, self.audio, self.eos = settings, audio, eos
        self.stop_text = stop_text
        batch = len(settings)
        self.next_audio = [0] * batch
        self.done = [False] * batch
        self.errors: list[Exception | None] = [None] * batch
        self.tokens: list[list[int]] = [[] for _ in range(batch)]
        self.hidden: list[list[torch.Tensor]] = [[] for _ in range(batch)]

    def active(self, b: int) -> bool:
        """Whether row b still decodes: not ended by EOS or its stop rule, not failed, under its token budget."""
        return not self.done[b] and self.errors[b] is None and len(self.tokens[b]) < self.settings[b].max_new_tokens

    def constrain(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Mask logits so [AUD] tokens come complete and in order, followed by EOS, as each row's music mode allows."""
        n = len(self.audio)
        out = logits.clone()
        for b, k in enumerate(self.next_audio):
            music = self.settings[b].music
            force = None
            if 0 < k < n:
                force = self.audio[k]
            elif k == n:
                force = self.eos
            elif music == "always" and self.settings[b].max_new_tokens - step <= n + 1:
                force = self.audio[0]
            if force is not None:
                out[b] = float("-inf")
                out[b, force] = 0.0
                continue
            out[b, self.audio[1:]] = float("-inf")
            if music == "never":
                out[b, self.audio[0]] = float("-inf")
        return out

    def advance(self, chosen: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Record each active row's token (EOS becomes [AUD0] under music=always) and return the tokens to feed."""
        fed = chosen.clone()
        for b, token in enumerate(chosen.tolist()):
            if not self.active(b):
                fed[b] = self.eos
                continue
            if token == self.eos and self.settings[b].music == "always" and self.next_audio[b] == 0:
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


def _choose(logits: torch.Tensor, ids: torch.Tensor, settings: list[GenerationSettings],
            rngs: list[torch.Generator | None]) -> torch.Tensor:
    """Each row's next token: greedy, or sampled with the row's own settings and generator.

    A row draws only from its own generator, so a seeded row samples the same tokens whatever rows share its batch.
    """
    chosen = logits.argmax(-1)
    for b, (row, rng) in enumerate(zip(settings, rngs, strict=True)):
        if row.temperature > 0:
            scores = TemperatureLogitsWarper(row.temperature)(ids[b : b + 1], logits[b : b + 1])
            if row.top_p < 1.0:
                scores = TopPLogitsWarper(row.top_p)(ids[b : b + 1], scores)
            chosen[b] = torch.multinomial(torch.softmax(scores, -1), 1, generator=rng)[0, 0]
    return chosen


def _row_settings(settings: GenerationSettings | Sequence[GenerationSettings] | None,
                  rows: int) -> list[GenerationSettings]:
    if settings is None or isinstance(settings, GenerationSettings):
        settings = [settings or GenerationSettings()] * rows
    settings = list(settings)
    if len(settings) != rows:
        raise ValueError(f"got {len(settings)} settings for {rows} prompts: give one, or one per prompt")
    for row in settings:
        check_choice(row.music, MusicMode, "music")
    if len({row.use_cache for row in settings}) > 1:
        raise ValueError("use_cache must be the same for every row of a batch")
    return settings


@torch.no_grad()
def generate(
    model: MuMuModel, prompts: list[list[int]], media: MediaFeatures | None = None,
    settings: GenerationSettings | Sequence[GenerationSettings] | None = None,
    on_token: Callable[[int, int], None] | None = None, on_done: Callable[[int, Generated], None] | None = None,
) -> list[Generated]:
    """Continue each prompt (left-padded batch) until EOS or its max_new_tokens.

    settings: one for every row, or one per row (music mode, sampling, seed and token budget are per row; each
    seeded row samples from its own generator).
    on_token(row, id) sees each token; an exception it raises ends that row only (its Generated.error holds it).
    on_done(row, result) gets each row's result as soon as that row ends, while the others go on.
    """
    rows_settings = _row_settings(settings, len(prompts))
    use_cache = rows_settings[0].use_cache
    stop_rule = model.config.pipeline.stop_rule
    device = model.device
    ids, mask = _left_pad(prompts, model.ids.pad, device)
    stop_text = _m2ugen_stop(model) if stop_rule == "m2ugen" else None
    rows = _Rows(rows_settings, list(model.ids.audio), model.ids.eos, stop_text)
    rngs = [None if row.seed is None else torch.Generator(device=device).manual_seed(row.seed)
            for row in rows_settings]
    cache = DynamicCache() if use_cache else None
    feed, seen = ids, 0
    reported: set[int] = set()
    inputs = model.modality_inputs(media, len(prompts))
    # The projector-source states (by default the final-norm output) the training forward gathers too.
    with model.injection.inject(inputs, len(prompts)), module_outputs(model.projector_source) as hidden:
        for step in range(max(row.max_new_tokens for row in rows_settings)):
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            out = model.llm(
                input_ids=feed, attention_mask=mask, position_ids=positions[:, seen:],
                past_key_values=cache, use_cache=use_cache, logits_to_keep=1,
            )
            last = hidden.pop()[:, -1]
            logits = rows.constrain(out.logits[:, -1].float(), step)
            before = [len(t) for t in rows.tokens]
            chosen = rows.advance(_choose(logits, ids, rows_settings, rngs), last)
            if on_token is not None:
                _notify(on_token, rows, before)
            for b in range(len(prompts)):
                if on_done is not None and b not in reported and not rows.active(b):
                    reported.add(b)
                    on_done(b, _result(model, rows, b))
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            if not any(rows.active(b) for b in range(len(prompts))):
                break
            if use_cache:
                seen, feed = ids.shape[1] - 1, chosen[:, None]
            else:
                feed = ids
    results = [_result(model, rows, b) for b in range(len(prompts))]
    if on_done is not None:
        for b in sorted(set(range(len(prompts))) - reported):  # max_new_tokens of 0
            on_done(b, results[b])
    return results


def _notify(on_token: Callable[[int, int], None], rows: _Rows, before: list[int]) -> None:
    for b, count in enumerate(before):
        if len(rows.tokens[b]) > count:
            try:
                on_token(b, rows.tokens[b][-1])
            except Exception as e:  # noqa: BLE001 -- not swallowed: it ends this row and is returned as its error
                rows.errors[b] = e


@torch.no_grad()
def audio_states(model: MuMuModel, prompt: list[int], tokens: list[int], media: MediaFeatures | None) -> torch.Tensor:
    """(n_aud, H): the states predicting [AUD0..n] of one reply, from one single-row forward over prompt + reply.

    Decoding a batch gives the same tokens, but the float states of a row change in their last bits with the batch's
    shape (other kernels); recomputed alone, a reply's music conditioning depends only on the reply itself.
    """
    ids = torch.tensor([[*prompt, *tokens]], device=model.device)
    with model.injection.inject(model.modality_inputs(media, 1), 1), \
            module_outputs(model.projector_source) as hidden:
        model.llm(input_ids=ids, use_cache=False, logits_to_keep=1)
    return model.audio_hidden(ids, hidden.pop())[0]


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
    return Generated(tokens, text, audio, rows.done[b], rows.errors[b])
