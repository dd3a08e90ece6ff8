"""The turn scheduler: concurrent turns' text generation decoded together as one batch, first come, first served.

Each `chat` hands its row (prompt, media, sampling settings, streaming callback, stop event) to `submit` and waits.
One worker thread takes the oldest waiting row plus every row that arrives within `window_s` of it (at most
`max_batch`), and decodes them as one left-padded batch with the KV cache (mumu.decoding.generate): a batch of rows
costs little more than one row, since decoding is bound by reading the weights. Rows arriving while a batch runs
form the next batch (batching per window). A row's reply goes back to its caller as soon as the row ends; its slot
is fed EOS until the batch's last row ends (rows do not join or leave a running batch).

What a row gets is what it would get alone:
- tokens and text: each row keeps its own settings and, when seeded, samples from its own generator; the logits of
  a row differ only in their last float bits across batch shapes (other kernels), which moves no argmax and no
  sampled token in the tests (tests/mumu/test_scheduler.py compares every case with the same turn alone);
- music: the states that condition the decoder are recomputed by one single-row forward over prompt + reply
  (decoding.audio_states), so they are bit for bit those of the same reply alone;
- a stop or a failing callback ends its own row only; a batch that fails as a whole is retried row by row, so a bad
  row fails alone (a retried row's stream goes on where it was, without repeating a token).

Fairness and limits: rows are served in arrival order; more than `max_queue` waiting rows are refused with `Busy`;
a conversation may have one turn in flight (`turn`), a second one is refused with `TurnInProgress`. With batching
off (ZeroGPU gives each call its own GPU slice in its own process) a row is decoded alone in the caller's thread.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mumu.config import MODALITIES
from mumu.decoding import Generated, GenerationSettings, audio_states, generate
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.streaming import Cancelled

TokenCallback = Callable[[int, int], None]
"""on_token(0, id): each new token of the row, as generate's on_token for a one-row call."""


class Busy(RuntimeError):
    """Too many turns are waiting; the caller should try again in a moment."""


class TurnInProgress(RuntimeError):
    """The conversation already has a turn in flight."""


@dataclass
class _Row:
    prompt: list[int]
    media: MediaFeatures
    settings: GenerationSettings
    on_token: TokenCallback | None
    stop: threading.Event | None
    arrived: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Generated | None = None
    error: BaseException | None = None
    seen: int = 0  # tokens decoded in the current attempt
    delivered: int = 0  # tokens handed to on_token over all attempts

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def on_row_token(self, row: int, token: int) -> None:
        # A row retried alone after its batch failed decodes the same tokens again: its stream goes on where it was.
        self.seen += 1
        if self.seen > self.delivered and self.on_token is not None:
            self.on_token(0, token)
        self.delivered = max(self.delivered, self.seen)


class TurnScheduler:
    """Batches concurrent turns' text generation on one model (see the module docstring)."""

    def __init__(self, model: MuMuModel, lock: threading.RLock, window_s: float, max_batch: int,
                 max_queue: int, batching: bool = True) -> None:
        self.model, self.lock = model, lock
        self.window_s, self.max_batch, self.max_queue = window_s, max_batch, max_queue
        self.batching = batching
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1024)  # the last batches' sizes
        self._queue: collections.deque[_Row] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight: set[str] = set()
        self._worker: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Turns queued and not yet decoding."""
        with self._cond:
            return len(self._queue)

    @contextmanager
    def turn(self, key: str) -> Iterator[None]:
        """Hold the one in-flight slot of conversation `key` for a turn.

        Raises:
            TurnInProgress: the conversation has a turn in flight already.
        """
        with self._cond:
            if key in self._in_flight:
                raise TurnInProgress("this conversation already has a turn in progress: wait for its reply or stop "
                                     "it, then send again")
            self._in_flight.add(key)
        try:
            yield
        finally:
            with self._cond:
                self._in_flight.discard(key)

    def submit(self, prompt: list[int], media: MediaFeatures, settings: GenerationSettings,
               on_token: TokenCallback | None = None, stop: threading.Event | None = None) -> Generated:
        """Decode one turn's reply (media: one row), batched with the turns waiting alongside it.

        Raises:
            Busy: max_queue turns are waiting already.
            Cancelled: `stop` was set (before or during decoding).
            Exception: whatever on_token raised for this row, or the row's own failure.
        """
        row = _Row(prompt, media, settings, on_token, stop)
        if not self.batching:
            self._decode_alone(row)
        else:
            self._enqueue(row)
            row.finished.wait()
        if row.error is not None:
            raise row.error
        assert row.result is not None
        return row.result

    def _enqueue(self, row: _Row) -> None:
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise Busy(f"the server is busy: {len(self._queue)} turns are waiting already; try again in a moment")
            self._queue.append(row)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="mumu-turn-scheduler", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _serve(self) -> None:
        while batch := self._next_batch():
            try:
                self._decode(batch)
            finally:
                for row in batch:  # never leave a caller waiting, whatever happened
                    if row.result is None and row.error is None:
                        row.error = RuntimeError("the turn scheduler failed before this turn was decoded")
                    row.finished.set()

    def _next_batch(self) -> list[_Row]:
        """The oldest waiting row and those that arrived within window_s of it (at most max_batch), in order.

        With nothing waiting the worker ends (the next submit starts another), so an idle pipeline holds no thread.
        """
        with self._cond:
            if not self._queue:
                self._worker = None
                return []
            deadline = self._queue[0].arrived + self.window_s
            while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _decode(self, batch: list[_Row]) -> None:
        for row in batch:
            if row.stopped():
                row.error = Cancelled("the turn was stopped")
        live = [row for row in batch if row.error is None]
        if len(live) == 1:
            self._decode_alone(live[0])
        elif live:
            try:
                self._decode_batch(live)
            except Exception:  # noqa: BLE001 -- a row broke the batch: decoded one by one, only that row fails
                for row in live:
                    if not row.finished.is_set():  # rows that ended before the failure have their reply already
                        self._decode_alone(row)

    def _decode_alone(self, row: _Row) -> None:
        try:
            self._decode_batch([row])
        except Exception as e:  # noqa: BLE001 -- not swallowed: raised in the caller's thread by submit
            row.result, row.error = None, e

    def _decode_batch(self, rows: list[_Row]) -> None:
        media = MediaFeatures(**{m: [getattr(row.media, m)[0] if getattr(row.media, m) else None for row in rows]
                                 for m in MODALITIES})
        for row in rows:
            row.seen = 0
        with self.lock:
            self.batch_sizes.append(len(rows))
            generate(self.model, [row.prompt for row in rows], media, [row.settings for row in rows],
                     on_token=lambda b, token: rows[b].on_row_token(b, token),
                     on_done=lambda b, result: self._finish(rows[b], result))

    def _finish(self, row: _Row, result: Generated) -> None:
        """Hand a row its reply as soon as it ends (its caller goes on while the batch's other rows decode)."""
        if result.error is not None:
            row.error = result.error
        else:
            if result.audio_hidden is not None:
                result.audio_hidden = audio_states(self.model, row.prompt, result.token_ids, row.media)
            row.result = result
        row.finished.set()
