"""Queue-aware dynamic batching for one model.

Requests join a FIFO queue. Whenever a thread of the pool is free for it (the model runs at most `concurrency`
batches at once) the batcher takes everything queued, up to `max_batch_size` inputs, as one batch. There is no
batching timer: a lone request on an idle server starts at once, and under load the queue fills the next batch while
the current one runs. A request with more inputs than `max_batch_size` is split into several queue entries and merged
back in order. Each entry keeps the loaded version it was submitted with, and a batch never mixes versions, so a
request finishes on the version it started with even across a hot swap.

A full queue (`max_queue` inputs) refuses a request at once; an entry not started within `deadline_ms` is
refused when its deadline passes (one timer per queue, at its oldest entry's deadline). Both answer 503 with
Retry-After.

The batches of every model of a server process run on one `InferencePool`: a thread per core (or the largest
`concurrency`), given to the models that have work in turn, and a model's batch is formed only when a thread takes it.
A thread takes a job of several models' batches (about `budget_s` of work), predicts those of alike predictors as one
call (`shoal.families.base.together_groups`) and hands their answers back in one event-loop wake-up: with many models,
each batch is small, and a hand-off or a predict call per batch would cost more than the batch. Jobs of quick batches
(Python holding the GIL) run one at a time; a slow batch takes another thread beside them.

A version an LLM endpoint answers (`shoal.llm.answerer.LLMAnswerer`, a model's cold start) is batched the same way,
but its batches run on the event loop, not on a thread: they wait on the network. Up to the endpoint's
`max_concurrency` of its batches run at once; an input the endpoint did not answer fails its request alone
(`shoal.serve.errors.llm_error`: 503 with Retry-After, or 502 for an answer outside the labels).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from shoal.cascade.combiner import Route
from shoal.families import Predictor
from shoal.families.base import predict_group, together_groups
from shoal.fleet import ServeSpec
from shoal.llm.answerer import LLMAnswerer
from shoal.llm.errors import LLMError
from shoal.registry import Version
from shoal.serve.errors import ServeError, llm_error, unavailable
from shoal.serve.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics

log = logging.getLogger("shoal.serve")


@dataclass(frozen=True, eq=False)
class Loaded:
    """One loaded and warmed version of a model."""

    version: Version
    predictor: Predictor | LLMAnswerer
    loaded_at: datetime
    route: Route | None = None  # how it defers, for a model with a cascade (`shoal.cascade`)

    @property
    def number(self) -> int:
        return self.version.number

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels


class _Entry:
    __slots__ = ("enqueued", "future", "live", "loaded", "texts")

    def __init__(self, loaded: Loaded, texts: list[str], future: asyncio.Future[np.ndarray], now: float) -> None:
        self.loaded = loaded
        self.texts = texts
        self.future = future
        self.enqueued = now
        self.live = True  # still in the queue: neither started, expired nor abandoned


class _Batch:
    """Entries of one model and version run together; the pool's thread fills in `output` or `error` and `seconds`."""

    __slots__ = ("batcher", "entries", "error", "loaded", "output", "seconds", "texts")

    def __init__(self, batcher: Batcher, entries: list[_Entry], loaded: Loaded, texts: list[str]) -> None:
        self.batcher, self.entries, self.loaded, self.texts = batcher, entries, loaded, texts
        self.output: np.ndarray | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0


class InferencePool:
    """The threads that run the batches of every model. A free thread takes a job: the next batch of each model with
    work in turn (round robin), as many as fit in `budget_s` by their models' recent batch times (always one), run
    one after the other, their results handed back to the event loop in one wake-up. With many models, each with
    small batches, a wake-up and a hand-off per batch would cost the event loop more than the batches themselves.
    Quick jobs run one at a time: their work is Python holding the GIL, so a second thread on them only fights the
    first and the event loop for it (20 models served by one process: 51% → 64% of one model's requests/s,
    benchmarks/RESULTS.md); a slow batch (or one of a model not measured yet) takes a thread of its own beside them.
    Every method but `_work` runs on the event loop thread."""

    #: seconds of work one job takes, by its models' recent batch times; a batch expected to take longer is slow
    budget_s = 0.002

    def __init__(self) -> None:
        # one per core, or the largest concurrency of a model using it if more: a slow model's batch then never
        # holds the only thread while the other models' queues wait
        self.threads = os.cpu_count() or 1
        self.busy = 0
        self._quick_job: list[_Batch] | None = None  # the running job of quick batches only (at most one)
        self._turns: deque[Batcher] = deque()
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Batch]] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    def want(self, batcher: Batcher) -> None:
        """`batcher` can start a batch: start it when a thread is free and the models asking before it have had one."""
        self.line_up(batcher)
        self._run()

    def line_up(self, batcher: Batcher) -> None:
        if not batcher.has_turn:
            batcher.has_turn = True
            self._turns.append(batcher)

    def _run(self) -> None:
        turns = self._turns
        while self.busy < self.threads and turns:
            if self._quick_job is not None:  # only a slow batch takes another thread; quick ones wait for it
                slow = next((batcher for batcher in turns if not self._quick(batcher)), None)
                if slow is None:
                    return
                turns.remove(slow)
                if (batch := self._take(slow)) is not None:
                    self._submit([batch])
                continue
            job: list[_Batch] = []
            spent, quick = 0.0, True
            while turns and (not job or spent + self._cost(turns[0]) <= self.budget_s):
                batcher = turns.popleft()
                if (batch := self._take(batcher)) is not None:
                    job.append(batch)
                    spent += self._cost(batcher)
                    quick = quick and self._quick(batcher)
            if job:
                if quick:
                    self._quick_job = job
                self._submit(job)

    def _take(self, batcher: Batcher) -> _Batch | None:
        """`batcher`'s next batch for a thread (None: nothing to run, or an LLM's batch, which runs on the event loop:
        it waits on the network); `batcher` is in line again, behind the others, if it can start another."""
        batcher.has_turn = False
        batch = batcher.start_batch()
        if batch is None:
            return None
        on_loop = isinstance(batch.loaded.predictor, LLMAnswerer)
        if on_loop:
            batcher.answer_on_loop(batch)
        if batcher.can_start():  # below its concurrency with work left
            self.line_up(batcher)
        return None if on_loop else batch

    def _cost(self, batcher: Batcher) -> float:
        """The seconds a batch of `batcher` is expected to take (a model not measured yet: a job of its own)."""
        return self.budget_s if batcher.cost_s is None else batcher.cost_s

    def _quick(self, batcher: Batcher) -> bool:
        return batcher.cost_s is not None and batcher.cost_s <= self.budget_s

    def _submit(self, job: list[_Batch]) -> None:
        self.busy += 1
        if len(self._workers) < self.busy:  # threads start as needed
            worker = threading.Thread(target=self._work, name=f"shoal-batch-{len(self._workers)}", daemon=True)
            self._workers.append(worker)
            worker.start()
        self._jobs.put((asyncio.get_running_loop(), job))

    def _work(self) -> None:
        """A thread of the pool: run jobs until `close`. It holds no job while it waits for the next, so the version
        a finished job used is freed when the event loop lets go of it (a replaced version, after a swap)."""
        while (taken := self._jobs.get()) is not None:
            self._work_on(*taken)
            del taken

    def _work_on(self, loop: asyncio.AbstractEventLoop, job: list[_Batch]) -> None:
        """Run the job's batches: those of predictors that predict together (`together_groups`) as one call, each
        batch's share of that call's time by its inputs; if the call fails, each of its batches alone, so only a
        failing one's requests fail. Every other batch alone, timed alone."""
        for group in together_groups([batch.loaded.predictor for batch in job]):  # type: ignore[arg-type]
            batches = [job[i] for i in group]
            if len(batches) == 1:
                self._predict(batches[0])
                continue
            started = time.perf_counter()
            try:
                outputs = predict_group([b.loaded.predictor for b in batches], [b.texts for b in batches])  # type: ignore[arg-type]
            except Exception:
                for batch in batches:
                    self._predict(batch)
                continue
            per_input = (time.perf_counter() - started) / max(1, sum(len(batch.texts) for batch in batches))
            for batch, output in zip(batches, outputs, strict=True):
                batch.output, batch.seconds = output, per_input * len(batch.texts)
        with suppress(RuntimeError):  # the event loop is closed: nobody waits for these answers any more
            loop.call_soon_threadsafe(self._done, job)

    @staticmethod
    def _predict(batch: _Batch) -> None:
        started = time.perf_counter()
        try:
            batch.output = batch.loaded.predictor.predict_proba(batch.texts)
        except Exception as error:
            batch.error = error
        batch.seconds = time.perf_counter() - started

    def _done(self, job: list[_Batch]) -> None:
        self.busy -= 1
        if job is self._quick_job:
            self._quick_job = None
        for batch in job:
            batch.batcher.finished(batch)
        self._run()

    def close(self) -> None:
        """Refuse the jobs no thread has taken yet, and let the threads end."""
        self._turns.clear()
        while True:
            try:
                taken = self._jobs.get_nowait()
            except queue.Empty:
                break
            if taken is not None:
                self.busy -= 1
                if taken[1] is self._quick_job:
                    self._quick_job = None
                for batch in taken[1]:
                    batch.error = unavailable("shutting_down", "the server is stopping; retry on another one")
                    batch.batcher.finished(batch)
        for _ in self._workers:
            self._jobs.put(None)
        self._workers.clear()


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
        self.cost_s: float | None = None  # recent seconds per batch, once one ran
        self._queue: deque[_Entry] = deque()
        self._wait_s = spec.deadline_ms / 1000
        self._timer: asyncio.TimerHandle | None = None  # at the deadline of the oldest queued entry
        self._closed = False
        self._on_loop: set[asyncio.Task[None]] = set()  # the LLM batches running

    async def stop(self) -> None:
        """Start no batch any more, and end the LLM batches still waiting on their endpoint: each is refused (503
        `shutting_down`) and its task awaited, so none outlives the server or meets its endpoint's closed client."""
        self._closed = True
        running = list(self._on_loop)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

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
        entries = [
            _Entry(loaded, texts[start : start + limit], loop.create_future(), now) for start in range(0, size, limit)
        ]
        self._queue.extend(entries)
        self.queued += size
        if self._timer is None:
            self._timer = loop.call_at(now + self._wait_s, self._expire)
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
        if entry.live:  # it stays in the queue, skipped, until a batch or the deadline timer reaches it
            entry.live = False
            self.queued -= len(entry.texts)
        if not entry.future.done():
            entry.future.cancel()

    def _expire(self) -> None:
        """The queue's deadline timer: refuse every queued entry whose deadline has passed, then wait for the next
        one's. Every entry waits at most `deadline_ms` from when it joined, so the queue is in deadline order."""
        self._timer = None
        waiting, loop = self._queue, asyncio.get_running_loop()
        now = loop.time()
        while waiting and (not waiting[0].live or waiting[0].enqueued + self._wait_s <= now):
            entry = waiting.popleft()
            if not entry.live:
                continue
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
        if waiting:
            self._timer = loop.call_at(waiting[0].enqueued + self._wait_s, self._expire)

    def _limit(self) -> int:
        """Batches that may run at once: `concurrency`, or for an LLM version at least its endpoint's."""
        head = self._queue[0].loaded.predictor if self._queue else None
        concurrency = self.spec.concurrency
        return max(concurrency, head.concurrency) if isinstance(head, LLMAnswerer) else concurrency

    def can_start(self) -> bool:
        """Whether a batch could start now: open, below `concurrency` batches running, something queued."""
        return not self._closed and self.running < self._limit() and bool(self._queue)

    def _dispatch(self) -> None:
        """Start an LLM version's batches on the event loop; ask the pool for a thread for any other batch."""
        waiting = self._queue
        while waiting and not waiting[0].live:  # the head decides which: a live entry's version
            waiting.popleft()
        while self.can_start():
            if not isinstance(self._queue[0].loaded.predictor, LLMAnswerer):
                self.inference.want(self)
                return
            batch = self.start_batch()
            if batch is None:
                return
            self.answer_on_loop(batch)

    def answer_on_loop(self, batch: _Batch) -> None:
        """Run an LLM version's batch as a task of the event loop."""
        task = asyncio.get_running_loop().create_task(self._answer_on_loop(batch))
        self._on_loop.add(task)
        task.add_done_callback(functools.partial(self._ended_on_loop, batch))

    def _ended_on_loop(self, batch: _Batch, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran its body: its batch is refused here."""
        self._on_loop.discard(task)
        if task.cancelled() and batch.error is None and batch.output is None:
            batch.error = unavailable("shutting_down", "the server is stopping; retry on another one")
            self.finished(batch)

    async def _answer_on_loop(self, batch: _Batch) -> None:
        answerer = batch.loaded.predictor
        assert isinstance(answerer, LLMAnswerer)
        started = time.perf_counter()
        errors: list[LLMError | None] = []
        try:
            batch.output, errors = await answerer.apredict(batch.texts)
        except asyncio.CancelledError:  # the server is stopping (`stop`): the batch's requests are refused
            batch.error = unavailable("shutting_down", "the server is stopping; retry on another one")
            self.finished(batch)
            raise
        except LLMError as error:
            batch.error = llm_error(error, answerer.cooldown_s)
        except Exception as error:
            batch.error = error
        batch.seconds = time.perf_counter() - started
        self.finished(batch, errors)
        self._dispatch()

    def start_batch(self) -> _Batch | None:
        """A batch of what is queued now (the pool has a thread for it), counted as running; None when there is none
        to start."""
        waiting, limit = self._queue, self.spec.max_batch_size
        while not self._closed and self.running < self._limit() and waiting:
            first = waiting.popleft()
            if not first.live:
                continue
            batch, size, loaded, reason = [first], len(first.texts), first.loaded, "drained"
            while waiting:
                following = waiting[0]
                if not following.live:
                    waiting.popleft()
                    continue
                if following.loaded is not loaded:
                    reason = "version"
                    break
                if size + len(following.texts) > limit:
                    reason = "full"
                    break
                batch.append(waiting.popleft())
                size += len(following.texts)
            if size >= limit:
                reason = "full"
            return self._start(batch, size, loaded, reason)
        return None

    def _start(self, entries: list[_Entry], size: int, loaded: Loaded, reason: str) -> _Batch:
        now = asyncio.get_running_loop().time()
        labels = (self.model, str(loaded.number))
        wait = self.metrics.queue_wait.histogram(labels, LATENCY_BUCKETS)
        for entry in entries:
            entry.live = False
            wait.observe(now - entry.enqueued)
        self.queued -= size
        self.running += 1
        self.metrics.batch_size.histogram(labels, BATCH_BUCKETS).observe(size)
        self.metrics.flushes.inc((*labels, reason))
        self.metrics.inputs.inc(labels, size)
        texts = entries[0].texts if len(entries) == 1 else [text for entry in entries for text in entry.texts]
        return _Batch(self, entries, loaded, texts)

    def finished(self, batch: _Batch, errors: list[LLMError | None] | None = None) -> None:
        """`batch` ran (or was refused at shutdown): in line for the next batch, then answer its entries (an entry
        with an input the LLM left unanswered, `errors`, fails alone)."""
        self.running -= 1
        cooldown = 0.0  # an LLM's rest after a failure: the Retry-After of its inputs' errors
        if isinstance(batch.loaded.predictor, LLMAnswerer):
            cooldown = batch.loaded.predictor.cooldown_s
        else:  # the pool's cost estimate is of the batches its threads run
            cost = self.cost_s
            self.cost_s = batch.seconds if cost is None else cost + (batch.seconds - cost) / 4
            if self.can_start():
                self.inference.line_up(self)
        failure = batch.error
        if failure is not None:
            if not isinstance(failure, ServeError):  # a ServeError refused it: the server is stopping
                log.error("model %s v%d failed to predict a batch: %r", self.model, batch.loaded.number, failure)
                message = f"model {self.model!r} failed on this input; see the log"
                failure = ServeError(500, "prediction_failed", message)
            for entry in batch.entries:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            return
        proba, offset = batch.output, 0
        for entry in batch.entries:
            end = offset + len(entry.texts)
            failed = next((e for e in errors[offset:end] if e is not None), None) if errors else None
            if entry.future.done():
                pass
            elif failed is not None:
                entry.future.set_exception(llm_error(failed, cooldown))
            else:
                entry.future.set_result(proba[offset:end])
            offset = end
