"""Text generation with the KV cache, music on/off control, and capture of the states that predict [AUD0..n]."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from choices import check_choice, options
from mumu.batch_tensors import BatchTensors
from mumu.config import MODALITIES
from mumu.modeling import MediaFeatures, MuMuModel, module_outputs
from mumu.prefix_cache import PrefixCache, media_key

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


@dataclass
class DecodeRequest:
    """One prompt to continue: its media (one row, or None), its settings, and its callbacks.

    on_token(id) sees each new token; an exception it raises ends this row only (its Generated.error holds it).
    on_done(result) gets the row's result as soon as the row ends, while the batch's other rows go on.
    """

    prompt: list[int]
    media: MediaFeatures | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    on_token: Callable[[int], None] | None = None
    on_done: Callable[[Generated], None] | None = None


class _Row:
    """One row's decoding state: its request, its own generator, where it is in the [AUD] sequence, what it made."""

    def __init__(self, model: MuMuModel, request: DecodeRequest, stop_text: Callable[[list[int]], bool] | None) -> None:
        check_choice(request.settings.music, MusicMode, "music")
        self.request, self.settings, self.stop_text = request, request.settings, stop_text
        self.audio, self.eos = list(model.ids.audio), model.ids.eos
        seed = self.settings.seed
        self.rng = None if seed is None else torch.Generator(device=model.device).manual_seed(seed)
        self.next_audio = 0
        self.prefix_key: Hashable = None  # what the row's keys and values depend on besides its tokens
        self.done = False
        self.error: Exception | None = None
        self.tokens: list[int] = []
        self.hidden: list[torch.Tensor] = []

    def active(self) -> bool:
        """Whether the row still decodes: not ended by EOS or its stop rule, not failed, under its token budget."""
        return not self.done and self.error is None and len(self.tokens) < self.settings.max_new_tokens

    def take(self, logits: torch.Tensor, hidden: torch.Tensor) -> int:
        """Choose, record and stream the row's next token from its (V,) logits; return the token to feed."""
        token = self.advance(self._choose(self._constrain(logits)), hidden)
        if self.request.on_token is not None:
            try:
                self.request.on_token(token)
            except Exception as e:  # noqa: BLE001 -- not swallowed: it ends this row and is returned as its error
                self.error = e
        return token

    def _constrain(self, logits: torch.Tensor) -> torch.Tensor:
        """Mask logits so [AUD] tokens come complete and in order, followed by EOS, as the row's music mode allows."""
        n, k, music = len(self.audio), self.next_audio, self.settings.music
        force = None
        if 0 < k < n:
            force = self.audio[k]
        elif k == n:
            force = self.eos
        elif music == "always" and self.settings.max_new_tokens - len(self.tokens) <= n + 1:
            force = self.audio[0]
        out = logits.clone()
        if force is not None:
            out[:] = float("-inf")
            out[force] = 0.0
            return out
        out[self.audio[1:]] = float("-inf")
        if music == "never":
            out[self.audio[0]] = float("-inf")
        return out

    def _choose(self, logits: torch.Tensor) -> int:
        """Greedy, or sampled with the row's settings from its own generator (whatever rows share its batch)."""
        if self.settings.temperature <= 0:
            return int(logits.argmax(-1))
        ids = torch.tensor([[*self.request.prompt, *self.tokens]], device=logits.device)
        scores = TemperatureLogitsWarper(self.settings.temperature)(ids, logits[None])
        if self.settings.top_p < 1.0:
            scores = TopPLogitsWarper(self.settings.top_p)(ids, scores)
        return int(torch.multinomial(torch.softmax(scores, -1), 1, generator=self.rng)[0, 0])

    def advance(self, token: int, hidden: torch.Tensor) -> int:
        """Record the token (EOS becomes [AUD0] under music=always) and the state that predicted an [AUD] token."""
        if token == self.eos and self.settings.music == "always" and self.next_audio == 0:
            token = self.audio[0]
        self.tokens.append(token)
        if self.next_audio < len(self.audio) and token == self.audio[self.next_audio]:
            self.hidden.append(hidden)
            self.next_audio += 1
        # The published rule ends a reply after its last [AUD] token or at "\n###"; EOS always ends it.
        published = self.stop_text is not None and (
            self.next_audio == len(self.audio) or self.stop_text(self.tokens))
        if token == self.eos or published:
            self.done = True
        return token


class _Batch:
    """The rows decoding together: rows join at a step (prefilled as one left-padded group, then merged into the
    batch's tensors) and leave as soon as they end (their rows selected out of every tensor).

    With a prefix cache, a joining row's prefill feeds only what follows the longest prefix of its prompt held there,
    and each row's keys and values are stored when it has been prefilled and again when it ends (prompt and reply,
    for the conversation's next turn).
    """

    def __init__(self, model: MuMuModel, use_cache: bool, prefix_cache: PrefixCache | None) -> None:
        self.model, self.use_cache = model, use_cache
        self.prefix_cache = prefix_cache if use_cache else None
        self.rows: list[_Row] = []
        self.tensors: BatchTensors | None = None
        self._injection = ExitStack()
        self._hidden: list[torch.Tensor] = []

    @contextmanager
    def running(self) -> Iterator[None]:
        """Capture the projector-source states (by default the final-norm output) the training forward gathers too."""
        with module_outputs(self.model.projector_source) as hidden, self._injection:
            self._hidden = hidden
            yield

    def step(self, joining: list[_Row]) -> None:
        """One decoding step: the running rows' next tokens (one forward), the joining rows' first tokens (one
        forward over their prompts), then the rows that ended leave."""
        for row in joining:
            if row.settings.use_cache != self.use_cache:
                raise ValueError("use_cache must be the same for every row of a batch")
            if not row.active():  # a token budget of 0
                self._report(row)
        joining = [row for row in joining if row.active()]
        parts = []
        if self.rows:
            parts.append(self._next_tokens(self.rows, self.tensors, prefill=False))
        if joining:
            group = self._prompts(joining)
            with self.model.injection.inject(group.inputs, len(joining)):
                parts.append(self._next_tokens(joining, group, prefill=True))
        if not parts:
            return
        tensors = parts[0]
        for part in parts[1:]:
            tensors = tensors.merged(part, self.model.ids.pad)
        rows = self.rows + joining
        keep = [b for b, row in enumerate(rows) if row.active()]
        if len(keep) < len(rows) and keep:
            tensors = tensors.selected(keep)
        self.rows, self.tensors = [rows[b] for b in keep], tensors
        if joining or len(keep) < len(rows):
            self._injection.close()
            if self.rows:
                self._injection.enter_context(self.model.injection.inject(tensors.inputs, len(self.rows)))

    def _prompts(self, rows: list[_Row]) -> BatchTensors:
        media = MediaFeatures(**{m: [_item(row.request.media, m) for row in rows] for m in MODALITIES})
        inputs = self.model.modality_inputs(media, len(rows))
        reused = None
        if self.prefix_cache is not None:
            for b, row in enumerate(rows):
                row.prefix_key = media_key(inputs, b)
            reused = [self.prefix_cache.lookup(row.request.prompt, row.prefix_key) for row in rows]
        return BatchTensors.prompts([row.request.prompt for row in rows], self.model.ids.pad, self.model.device,
                                    self.use_cache, inputs, reused)

    def _next_tokens(self, rows: list[_Row], tensors: BatchTensors, prefill: bool) -> BatchTensors:
        """One forward over the columns not in the cache (without a cache, all of them); each row takes its token,
        and the rows that ended are reported."""
        start = 0 if tensors.cache is None else tensors.cache.get_seq_length()
        out = self.model.llm(
            input_ids=tensors.ids[:, start:], attention_mask=tensors.mask,
            position_ids=tensors.positions[:, start:], past_key_values=tensors.cache, use_cache=self.use_cache,
            logits_to_keep=1,
        )
        logits, hidden = out.logits[:, -1].float(), self._hidden[-1][:, -1]
        self._hidden.clear()  # with the states of any forward an on_done callback ran (decoding.audio_states)
        fed = [row.take(logits[b], hidden[b]) for b, row in enumerate(rows)]
        tensors = tensors.extended(torch.tensor(fed, device=tensors.ids.device))
        for b, row in enumerate(rows):
            if self.prefix_cache is not None and (prefill or not row.active()):
                self.prefix_cache.store(*tensors.row_sequence(b), key=row.prefix_key)
        for row in rows:
            if not row.active():
                self._report(row)
        return tensors

    def _report(self, row: _Row) -> None:
        if row.request.on_done is not None:
            row.request.on_done(_result(self.model, row))


@torch.no_grad()
def decode(model: MuMuModel, requests: list[DecodeRequest], join: Callable[[int], list[DecodeRequest]] | None = None,
           prefix_cache: PrefixCache | None = None) -> list[Generated]:
    """Continue the requests' prompts as one left-padded batch with the KV cache, rows joining and leaving it.

    A row leaves the batch as soon as it ends (EOS, its stop rule, its token budget or a failing on_token).
    join(rows): asked before every step after the first, with the number of rows decoding; the requests it returns
    join the batch at that step. Decoding ends when no row is left. Returns every row's result in the order the rows
    came (the requests, then those join gave).
    prefix_cache: where prompts find the keys and values of sequences decoded before, and where this batch's rows
    are kept (mumu.prefix_cache).
    """
    if not requests:
        raise ValueError("nothing to decode: no prompts")
    stop_text = _m2ugen_stop(model) if model.config.pipeline.stop_rule == "m2ugen" else None
    batch = _Batch(model, requests[0].settings.use_cache, prefix_cache)
    rows: list[_Row] = []
    with batch.running():
        while True:
            joining = [_Row(model, request, stop_text) for request in requests]
            rows += joining
            batch.step(joining)
            if not batch.rows:
                break
            requests = join(len(batch.rows)) if join is not None else []
    return [_result(model, row) for row in rows]


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
    media = media or MediaFeatures()
    for m in MODALITIES:
        if (items := getattr(media, m)) and len(items) != len(prompts):
            raise ValueError(f"{m} features have {len(items)} rows, the batch has {len(prompts)}")

    def request(b: int) -> DecodeRequest:
        return DecodeRequest(
            prompts[b], MediaFeatures(**{m: getattr(media, m)[b : b + 1] for m in MODALITIES}), rows_settings[b],
            None if on_token is None else lambda token: on_token(b, token),
            None if on_done is None else lambda result: on_done(b, result))

    return decode(model, [request(b) for b in range(len(prompts))])


def _row_settings(settings: GenerationSettings | Sequence[GenerationSettings] | None,
                  rows: int) -> list[GenerationSettings]:
    if settings is None or isinstance(settings, GenerationSettings):
        settings = [settings or GenerationSettings()] * rows
    settings = list(settings)
    if len(settings) != rows:
        raise ValueError(f"got {len(settings)} settings for {rows} prompts: give one, or one per prompt")
    return settings


def _item(media: MediaFeatures | None, modality: str) -> torch.Tensor | None:
    """A one-row request's features of a modality (None when it has none)."""
    items = getattr(media, modality) if media is not None else []
    return items[0] if items else None


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


def _result(model: MuMuModel, row: _Row) -> Generated:
    tokens = row.tokens
    text = _text(model, tokens)
    if model.config.pipeline.stop_rule == "m2ugen":
        text = text.split("\n", 1)[0]
    text = text.strip()
    complete = len(row.hidden) == len(row.audio)
    audio = torch.stack(row.hidden) if complete else None
    return Generated(tokens, text, audio, row.done, row.error)
