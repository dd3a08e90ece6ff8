"""The turn scheduler: concurrent turns' text, and then their music, made together in batches, first come, first served.

Two stages of a turn wait in a window queue (`WindowQueue`) each: its text (`submit`) and, when the reply asks for
music, its track (`make_music`). One worker thread per queue takes the oldest waiting row plus every row that arrives
within `window_s` of it and may share its batch (at most `max_batch`), and serves them as one batch under the model
lock; rows that may not share it stay queued, in order, for the next batch. A batch of rows costs little more than one
row, since decoding is bound by reading the weights.

Text: rows share a batch when they agree on the KV cache setting (all of the pipeline's do). The rows are decoded as
one left-padded batch with the KV cache (mumu.decoding.decode), continuously: a row that arrives while the batch
decodes joins it at the next step (prefilled by a forward of its own, its KV cache left-padded into the batch's,
while fewer than `max_batch` rows decode), and a row leaves the batch as soon as it ends, its reply going back to
its caller at once. With `continuous` off (pipeline.continuous_batching) rows arriving during a batch wait for the
next one.
With a prefix cache (mumu.prefix_cache, pipeline.prefix_cache_tokens) a row's prefill feeds only what follows the
longest prefix of its prompt kept from earlier rows (the template's preamble, its conversation's earlier turns).

Music: rows share a batch when they use the same decoder with the same mode and settings but the seed
(generation.registry.batch_key: MusicGen new music from embeddings or a caption, MusicGen-Melody from embeddings;
edits, other modes and AudioLDM2 are made alone, in the caller's thread). The decoder samples the batch with one
generator per row (MusicDecoder.generate_batch) and decodes each row's codes alone. Rows arriving while a music batch
runs form the next batch (batching per window).

What a row gets is what it would get alone:
- tokens and text: each row keeps its own settings and, when seeded, samples from its own generator; the logits of
  a row differ only in their last float bits across batch shapes (other kernels; the shape changes as rows join and
  leave), which moves no argmax and no sampled token in the tests (tests/mumu/test_scheduler.py and
  tests/mumu/test_decoding.py compare every case, joining and leaving rows included, with the same turn alone);
- music: the states that condition the decoder are recomputed by one single-row forward over prompt + reply
  (decoding.audio_states), so they are bit for bit those of the same reply alone; the track is then the decoder's
  row, the same samples as the turn alone (tests/generation/test_musicgen.py, tests/mumu/test_scheduler.py);
- a stop or a failing callback ends its own row only (it leaves the batch); a batch that fails as a whole (rows
  that joined it included) is retried row by row, so a bad row fails alone (a retried row's stream goes on where it
  was, without repeating a token). A turn stopped while its music batch runs gets Cancelled from the pipeline; the
  other rows' tracks are untouched.

Fairness and limits: rows are served in arrival order; more than `max_queue` turns waiting for text are refused with
`Busy` (a turn's music is never refused: the turn was admitted already); a conversation may have one turn in flight
(`turn`), a second one is refused with `TurnInProgress`. With batching off (ZeroGPU gives each call its own GPU
slice in its own process) every row is made alone in the caller's thread.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from generation.config import SamplingSettings
from generation.interface import Conditioning, DecodedAudio, EditSource, MusicDecoder
from generation.registry import batch_key
from mumu.decoding import DecodeRequest, Generated, GenerationSettings, audio_states, decode
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.prefix_cache import PrefixCache
from mumu.streaming import Cancelled

TokenCallback = Callable[[int, int], None]
"""on_token(0, id): each new token of the row, as generate's on_token for a one-row call."""


class Busy(RuntimeError):
    """Too many turns are waiting; the caller should try again in a moment."""


class TurnInProgress(RuntimeError):
    """The conversation already has a turn in flight."""


class Limits(Protocol):
    """How long a window stays open, how large a batch and queue may grow, whether rows are batched at all, and
    whether waiting rows may join a running batch (`WindowQueue.join`)."""

    window_s: float
    max_batch: int
    max_queue: int
    batching: bool
    continuous: bool


@dataclass(kw_only=True)
class Request:
    """One row waiting in a WindowQueue. Rows with equal `key` may share a batch; None: it is always made alone."""

    key: Hashable | None
    stop: threading.Event | None = None
    arrived: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()


R = TypeVar("R", bound=Request)


class WindowQueue(Generic[R]):
    """Rows collected for a window and served in batches by one worker thread, first come, first served.

    `run_batch(rows)` serves rows as one batch under `lock`: it hands each row its result (`result` or `error`) and sets
    its `finished`, or raises when the batch fails as a whole (its unfinished rows are then retried one by one). While
    it runs it may take the rows that arrive meanwhile into the batch (`join`).
    `bounded`: refuse rows with Busy while `max_queue` wait already.
    """

    def __init__(self, name: str, limits: Limits, lock: threading.RLock, run_batch: Callable[[list[R]], None],
                 bounded: bool = True) -> None:
        self.name, self.limits, self.lock, self.run_batch, self.bounded = name, limits, lock, run_batch, bounded
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1024)  # the last batches' sizes
        self._queue: collections.deque[R] = collections.deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._serving: list[R] | None = None  # the batch run_batch serves now, while rows may join it

    @property
    def waiting(self) -> int:
        """Rows queued and not yet being served."""
        with self._cond:
            return len(self._queue)

    def submit(self, row: R) -> Any:
        """Serve a row, batched with those waiting alongside it, and return its result.

        Raises:
            Busy: the queue is bounded and max_queue rows are waiting already.
            Cancelled: the row's stop was set before its batch started.
            Exception: the row's own failure.
        """
        if not self.limits.batching or row.key is None:
            self._alone(row)
        else:
            self._enqueue(row)
            row.finished.wait()
        if row.error is not None:
            raise row.error
        return row.result

    def _enqueue(self, row: R) -> None:
        with self._cond:
            if self.bounded and len(self._queue) >= self.limits.max_queue:
                raise Busy(f"the server is busy: {len(self._queue)} turns are waiting already; try again in a moment")
            self._queue.append(row)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=f"mumu-{self.name}-batches", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def join(self, batch: list[R], decoding: int) -> list[R]:
        """The rows waiting now that join the running `batch`: of its key, while fewer than max_batch rows decode.

        They are taken off the queue and added to `batch` (so a failure of the batch retries them with it); rows
        stopped meanwhile end as Cancelled. None join with continuous batching off, nor while rows are served one by
        one (batching off, or the retry of a failed batch).
        """
        if not self.limits.continuous or batch is not self._serving:
            return []
        with self._cond:
            rows = [row for row in self._queue if row.key == batch[0].key][: self.limits.max_batch - decoding]
            for row in rows:
                self._queue.remove(row)
        live = self._live(rows)
        batch.extend(live)
        return live

    def _serve(self) -> None:
        while batch := self._next_batch():
            live = self._live(batch)
            try:
                if live:
                    self._serve_batch(live)
            finally:
                for row in live:  # never leave a caller waiting, whatever happened (rows that joined included)
                    if row.result is None and row.error is None:
                        row.error = RuntimeError(f"the {self.name} scheduler failed before this row was served")
                    row.finished.set()

    def _next_batch(self) -> list[R]:
        """The oldest waiting row and the rows of its key that arrived within window_s of it (at most max_batch).

        With nothing waiting the worker ends (the next submit starts another), so an idle pipeline holds no thread.
        """
        with self._cond:
            if not self._queue:
                self._worker = None
                return []
            first = self._queue[0]
            deadline = first.arrived + self.limits.window_s

            def batch() -> list[R]:
                return [row for row in self._queue if row.key == first.key][: self.limits.max_batch]

            while len(batch()) < self.limits.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            rows = batch()
            for row in rows:
                self._queue.remove(row)
            return rows

    @staticmethod
    def _live(rows: list[R]) -> list[R]:
        """The rows not stopped; the stopped ones end here as Cancelled."""
        for row in rows:
            if row.stopped():
                row.error = Cancelled("the turn was stopped")
                row.finished.set()
        return [row for row in rows if row.error is None]

    def _serve_batch(self, live: list[R]) -> None:
        self._serving = live
        try:
            self._run(live)
        except Exception as e:  # noqa: BLE001 -- a row broke the batch: served one by one, only that row fails
            self._serving = None
            for row in live:
                if row.finished.is_set():  # it ended before the failure: it has its result already
                    continue
                if len(live) == 1:  # a row served alone fails alone (raised in the caller's thread by submit)
                    row.result, row.error = None, e
                else:
                    self._alone(row)
        finally:
            self._serving = None

    def _alone(self, row: R) -> None:
        try:
            self._run([row])
        except Exception as e:  # noqa: BLE001 -- not swallowed: raised in the caller's thread by submit
            row.result, row.error = None, e

    def _run(self, rows: list[R]) -> None:
        with self.lock:
            self.batch_sizes.append(len(rows))
            self.run_batch(rows)


@dataclass(kw_only=True)
class _TextRow(Request):
    prompt: list[int]
    media: MediaFeatures
    settings: GenerationSettings
    on_token: TokenCallback | None
    seen: int = 0  # tokens decoded in the current attempt
    delivered: int = 0  # tokens handed to on_token over all attempts

    def on_row_token(self, token: int) -> None:
        # A row retried alone after its batch failed decodes the same tokens again: its stream goes on where it was.
        self.seen += 1
        if self.seen > self.delivered and self.on_token is not None:
            self.on_token(0, token)
        self.delivered = max(self.delivered, self.seen)


@dataclass(kw_only=True)
class _MusicRow(Request):
    decoder: MusicDecoder
    cond: Conditioning
    settings: SamplingSettings
    source: EditSource | None


class TurnScheduler:
    """Batches concurrent turns' text generation, then their music, on one model (see the module docstring)."""

    def __init__(self, model: MuMuModel, lock: threading.RLock, window_s: float, max_batch: int,
                 max_queue: int, batching: bool = True, continuous: bool = True,
                 prefix_cache: PrefixCache | None = None) -> None:
        self.model, self.lock, self.prefix_cache = model, lock, prefix_cache
        self.window_s, self.max_batch, self.max_queue = window_s, max_batch, max_queue
        self.batching, self.continuous = batching, continuous
        self.text: WindowQueue[_TextRow] = WindowQueue("text", self, lock, self._decode)
        self.music: WindowQueue[_MusicRow] = WindowQueue("music", self, lock, self._make_music, bounded=False)
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()

    @contextmanager
    def turn(self, key: str) -> Iterator[None]:
        """Hold the one in-flight slot of conversation `key` for a turn.

        Raises:
            TurnInProgress: the conversation has a turn in flight already.
        """
        with self._in_flight_lock:
            if key in self._in_flight:
                raise TurnInProgress("this conversation already has a turn in progress: wait for its reply or stop "
                                     "it, then send again")
            self._in_flight.add(key)
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(key)

    def submit(self, prompt: list[int], media: MediaFeatures, settings: GenerationSettings,
               on_token: TokenCallback | None = None, stop: threading.Event | None = None) -> Generated:
        """Decode one turn's reply (media: one row), batched with the turns waiting alongside it.

        Raises:
            Busy: max_queue turns are waiting already.
            Cancelled: `stop` was set (before or during decoding).
            Exception: whatever on_token raised for this row, or the row's own failure.
        """
        # Rows share a batch when they agree on the KV cache (the one setting a batch cannot mix).
        return self.text.submit(_TextRow(key=settings.use_cache, prompt=prompt, media=media, settings=settings,
                                         on_token=on_token, stop=stop))

    def make_music(self, decoder: MusicDecoder, cond: Conditioning, settings: SamplingSettings,
                   source: EditSource | None = None, stop: threading.Event | None = None) -> DecodedAudio:
        """Make one turn's track, batched with the turns of the same decoder and settings waiting alongside it.

        Raises:
            Cancelled: `stop` was set before the track's batch started.
            ValueError: as decoder.generate.
        """
        key = batch_key(decoder.config.kind, cond, settings, source)
        return self.music.submit(_MusicRow(key=None if key is None else (id(decoder), key), decoder=decoder,
                                           cond=cond, settings=settings, source=source, stop=stop))

    def _decode(self, rows: list[_TextRow]) -> None:
        """Decode the rows as one batch; the rows waiting meanwhile join it at the next step (continuous batching)."""
        decode(self.model, [self._request(row) for row in rows],
               join=lambda decoding: [self._request(row) for row in self.text.join(rows, decoding)],
               prefix_cache=self.prefix_cache)

    def _request(self, row: _TextRow) -> DecodeRequest:
        row.seen = 0
        return DecodeRequest(row.prompt, row.media, row.settings, row.on_row_token, partial(self._finish, row))

    def _finish(self, row: _TextRow, result: Generated) -> None:
        """Hand a row its reply as soon as it ends (its caller goes on while the batch's other rows decode)."""
        if result.error is not None:
            row.error = result.error
        else:
            if result.audio_hidden is not None:
                result.audio_hidden = audio_states(self.model, row.prompt, result.token_ids, row.media)
            row.result = result
        row.finished.set()

    @staticmethod
    def _make_music(rows: list[_MusicRow]) -> None:
        tracks = rows[0].decoder.generate_batch([row.cond for row in rows], [row.settings for row in rows],
                                                [row.source for row in rows])
        for row, track in zip(rows, tracks, strict=True):
            row.result = track
            row.finished.set()
