"""Queue-aware dynamic batching for one model.

Requests join a FIFO queue. Whenever an executor slot is free (the model runs at most `concurrency` batches
at once) the batcher takes everything queued, up to `max_batch_size` inputs, and runs it in a thread. There
is no timer: a lone request on an idle model starts at once, and under load the queue fills the next batch
while the current one runs. A request with more inputs than `max_batch_size` is split into several queue
entries and merged back in order. Each entry keeps the loaded version it was submitted with, and a batch
never mixes versions, so a request finishes on the version it started with even across a hot swap.

A full queue (`max_queue` inputs) refuses a request at once; an entry not started within `deadline_ms` is
refused when its deadline passes. Both answer 503 with Retry-After.

The batches of every model of a server process run on one `InferencePool`: as many threads as the largest
`concurrency`, given to the models that have work in turn, and a model's batch is formed only when a thread takes it.
With many models, a model's queue fills while the others run, and a handful of threads (not one per model) share
the GIL with the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np

from shoal.cascade.combiner import Route
from shoal.families import Predictor
from shoal.fleet import ServeSpec
from shoal.registry import Version
from shoal.serve.errors import ServeError, unavailable
from shoal.serve.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics

log = logging.getLogger("shoal.serve")


@dataclass(frozen=True, eq=False)
class Loaded:
    """One loaded and warmed version of a model."""

    version: Version
    predictor: Predictor
    loaded_at: datetime
    route: Route | None = None  # how it defers, for a model with a cascade (`shoal.cascade`)

    @property
    def number(self) -> int:
        return self.version.number

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels


class _Entry:
    __slots__ = ("deadline", "enqueued", "future", "live", "loaded", "texts", "timer")

    def __init__(self, loaded: Loaded, texts: list[str], future: asyncio.Future[np.ndarray], now: float) -> None:
        self.loaded = loaded
        self.texts = texts
        self.future = future
        self.enqueued = now
        self.live = True  # still in the queue: neither started, expired nor abandoned
        self.timer: asyncio.TimerHandle | None = None


class InferencePool:
    """The threads that run the batches of every model, taken by the models with work in turn (round robin); every
    method runs on the event loop thread."""

    def __init__(self) -> None:
        # one per core, or the largest concurrency of a model using it if more: a slow model's batch then never
        # holds the only thread while the other models' queues wait
        self.threads = os.cpu_count() or 1
        self.busy = 0
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="shoal-batch")  # started as needed
        self._turns: deque[Batcher] = deque()

    def want(self, batcher: Batcher) -> None:
        """`batcher` can start a batch: start it when a thread is free and the models asking before it have had one."""
        if not batcher.has_turn:
            batcher.has_turn = True
            self._turns.append(batcher)
        self._run()

    def finished(self) -> None:
        self.busy -= 1
        self._run()

    def _run(self) -> None:
        while self.busy < self.threads and self._turns:
            batcher = self._turns.popleft()
            batcher.has_turn = False
            if batcher.start_batch():
                self.busy += 1
                if batcher.can_start():  # below its concurrency with work left: in line again, behind the others
                    batcher.has_turn = True
                    self._turns.append(batcher)

    def close(self) -> None:
        self._turns.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Batcher:
    """The queue of one model, whose batches run on the shared `inference` pool; every method runs on the event loop
    thread."""

    def __init__(self, model: str, spec: ServeSpec, metrics: Metrics, inference: InferencePool) -> None:
        self.model = model
        self.spec = spec
        self.metrics = metrics
        self.inference = inference
        inference.threads = max(inference.threads, spec.concurrency)
        self.queued = 0  # inputs waiting
        self.running = 0  # batches executing
        self.has_turn = False  # waiting for a thread of the pool
        self._queue: deque[_Entry] = deque()
        self._closed = False

    def close(self) -> None:
        self._closed = True

    async def predict(self, loaded: Loaded, texts: list[str]) -> np.ndarray:
        """Class probabilities of `texts` from `loaded`, computed in batches shared with other requests."""
        size, limit = len(texts), self.spec.max_batch_size
        if self.queued + size > self.spec.max_queue:
            self.metrics.rejected.inc((self.model, str(loaded.number), "queue_full"), size)
            raise unavailable(
                "overloaded",
                f"model {self.model!r} has {self.queued} inputs queued (max_queue "
                f"{self.spec.max_queue}); retry after the Retry-After delay or send fewer inputs",
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self.spec.deadline_ms / 1000
        entries = []
        for start in range(0, size, limit):
            entry = _Entry(loaded, texts[start : start + limit], loop.create_future(), now)
            entry.timer = loop.call_at(deadline, self._expire, entry)
            entries.append(entry)
            self._queue.append(entry)
        self.queued += size
        self._dispatch()
        try:
            if len(entries) == 1:
                return await entries[0].future
            parts = await asyncio.gather(*(entry.future for entry in entries))
            return np.concatenate(parts)
        except BaseException:
            for entry in entries:
                self._abandon(entry)
            raise

    def _abandon(self, entry: _Entry) -> None:
        if entry.live:
            entry.live = False
            self.queued -= len(entry.texts)
            if entry.timer is not None:
                entry.timer.cancel()
        if not entry.future.done():
            entry.future.cancel()

    def _expire(self, entry: _Entry) -> None:
        if not entry.live:
            return
        entry.live = False
        self.queued -= len(entry.texts)
        self.metrics.rejected.inc((self.model, str(entry.loaded.number), "deadline"), len(entry.texts))
        if not entry.future.done():
            entry.future.set_exception(
                unavailable(
                    "deadline",
                    f"model {self.model!r} could not start this request within {self.spec.deadline_ms:g} ms; "
                    "retry after the Retry-After delay",
                )
            )

    def can_start(self) -> bool:
        """Whether a batch could start now: open, below `concurrency` batches running, something queued."""
        return not self._closed and self.running < self.spec.concurrency and bool(self._queue)

    def _dispatch(self) -> None:
        """Ask the pool for a thread when a batch could start."""
        if self.can_start():
            self.inference.want(self)

    def start_batch(self) -> bool:
        """Start a batch of what is queued now (the pool has a thread for it); False when there is none to start."""
        queue, limit = self._queue, self.spec.max_batch_size
        while not self._closed and self.running < self.spec.concurrency and queue:
            first = queue.popleft()
            if not first.live:
                continue
            batch, size, loaded, reason = [first], len(first.texts), first.loaded, "drained"
            while queue:
                following = queue[0]
                if not following.live:
                    queue.popleft()
                    continue
                if following.loaded is not loaded:
                    reason = "version"
                    break
                if size + len(following.texts) > limit:
                    reason = "full"
                    break
                batch.append(queue.popleft())
                size += len(following.texts)
            if size >= limit:
                reason = "full"
            self._start(batch, size, loaded, reason)
            return True
        return False

    def _start(self, batch: list[_Entry], size: int, loaded: Loaded, reason: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        labels = (self.model, str(loaded.number))
        wait = self.metrics.queue_wait.histogram(labels, LATENCY_BUCKETS)
        for entry in batch:
            entry.live = False
            if entry.timer is not None:
                entry.timer.cancel()
            wait.observe(now - entry.enqueued)
        self.queued -= size
        self.running += 1
        self.metrics.batch_size.histogram(labels, BATCH_BUCKETS).observe(size)
        self.metrics.flushes.inc((*labels, reason))
        self.metrics.inputs.inc(labels, size)
        texts = batch[0].texts if len(batch) == 1 else [text for entry in batch for text in entry.texts]
        future = loop.run_in_executor(self.inference.executor, loaded.predictor.predict_proba, texts)
        future.add_done_callback(partial(self._finished, batch, loaded))

    def _finished(self, batch: list[_Entry], loaded: Loaded, future: asyncio.Future[np.ndarray]) -> None:
        self.running -= 1
        self._dispatch()  # in line for the next batch before the thread is handed on
        self.inference.finished()
        if future.cancelled():  # the server is shutting down
            failure: ServeError | None = unavailable("shutting_down", "the server is stopping; retry on another one")
        elif future.exception() is not None:
            log.error("model %s v%d failed to predict a batch: %r", self.model, loaded.number, future.exception())
            failure = ServeError(500, "prediction_failed", f"model {self.model!r} failed on this input; see the log")
        else:
            failure = None
        if failure is not None:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(failure)
        else:
            proba, offset = future.result(), 0
            for entry in batch:
                end = offset + len(entry.texts)
                if not entry.future.done():
                    entry.future.set_result(proba[offset:end])
                offset = end
