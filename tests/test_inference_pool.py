"""The batchers of all models share one inference pool: a flooded model does not starve another, batches form when a
thread takes them (so they grow while the others run), and no batch mixes models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoal.families.base import Predictor
from shoal.fleet import ServeSpec
from shoal.registry import Version
from shoal.serve.batcher import Batcher, InferencePool, Loaded
from shoal.serve.errors import ServeError
from shoal.serve.metrics import Metrics


class Recording(Predictor):
    """Answers each text's length after a short pause, and records every batch it ran."""

    def __init__(self, name: str, calls: list[tuple[str, int]], lock: threading.Lock) -> None:
        self.name, self.calls, self.lock = name, calls, lock
        self.labels = ["length"]

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        time.sleep(0.01)
        with self.lock:
            self.calls.append((self.name, len(inputs)))
        return np.array([[float(len(text))] for text in inputs])

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def n_parameters(self) -> int:
        return 0


def _loaded(predictor: Predictor) -> Loaded:
    version: Any = Version.__new__(Version)
    object.__setattr__(version, "number", 1)
    return Loaded(version, predictor, datetime.now(UTC))


def test_models_take_the_shared_threads_in_turn() -> None:
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()
    spec = ServeSpec(max_batch_size=4)

    async def scenario() -> tuple[list[np.ndarray], np.ndarray]:
        pool = InferencePool()
        metrics = Metrics()
        flooded, quiet = Batcher("flooded", spec, metrics, pool), Batcher("quiet", spec, metrics, pool)
        a, b = _loaded(Recording("flooded", calls, lock)), _loaded(Recording("quiet", calls, lock))
        many = [asyncio.ensure_future(flooded.predict(a, ["x" * i] * 4)) for i in range(1, 9)]
        await asyncio.sleep(0)  # the first flooded batch is running, seven wait
        one = asyncio.ensure_future(quiet.predict(b, ["abc", "de"]))
        done = await asyncio.wait_for(asyncio.gather(*many), 10)
        answer = await asyncio.wait_for(one, 10)
        pool.close()
        return done, answer

    done, answer = asyncio.run(scenario())
    assert answer[:, 0].tolist() == [3.0, 2.0]
    assert [row[:, 0].tolist() for row in done] == [[float(i)] * 4 for i in range(1, 9)]  # each its own, in order
    models = [name for name, _ in calls]
    assert models.index("quiet") <= 1, models  # after at most the batch that was running, not after all eight
    assert models.count("quiet") == 1 and all(size == 4 for name, size in calls if name == "flooded")


def test_a_model_runs_up_to_its_concurrency_of_batches_at_once() -> None:
    """A request split into several batches runs them side by side when the model's concurrency allows it."""
    running, most, lock = [0], [0], threading.Lock()

    class Overlapping(Recording):
        def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return np.array([[float(len(text))] for text in inputs])

    async def scenario() -> np.ndarray:
        pool = InferencePool()
        batcher = Batcher("m", ServeSpec(max_batch_size=2, concurrency=3), Metrics(), pool)
        loaded = _loaded(Overlapping("m", [], threading.Lock()))
        answer = await asyncio.wait_for(batcher.predict(loaded, ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]), 10)
        pool.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert most[0] == 3  # three batches of two at once, not one after another


class Gated(Recording):
    """Records its batches like `Recording`, without the pause; holds a batch until `gate` is set when it has one."""

    def __init__(self, name: str, calls: list[tuple[str, int]], lock: threading.Lock, gate: threading.Event) -> None:
        super().__init__(name, calls, lock)
        self.gate = gate

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        assert self.gate.wait(10), "the test never opened the gate"
        with self.lock:
            self.calls.append((self.name, len(inputs)))
        return np.array([[float(len(text))] for text in inputs])


def test_small_batches_of_several_models_run_as_one_job_answered_in_one_wake_up() -> None:
    """With the only thread busy, five models' requests wait; the thread then takes all five batches as one job (they
    are quick, by their measured times) and their answers come back to the event loop together."""
    calls: list[tuple[str, int]] = []
    lock, gate, opened = threading.Lock(), threading.Event(), threading.Event()
    opened.set()
    jobs: list[list[str]] = []

    async def scenario() -> list[np.ndarray]:
        pool = InferencePool()
        done = pool._done

        def handed_back(job: list[Any]) -> None:
            jobs.append([batch.batcher.model for batch in job])
            done(job)

        pool._done = handed_back  # type: ignore[method-assign]
        metrics = Metrics()
        blocker = Batcher("blocker", ServeSpec(), metrics, pool)
        names = [f"m{i}" for i in range(5)]
        batchers = [Batcher(name, ServeSpec(), metrics, pool) for name in names]
        pool.threads = 1
        quick = [_loaded(Gated(name, calls, lock, opened)) for name in names]
        for batcher, loaded in zip(batchers, quick, strict=True):  # each model's batch time measured: microseconds
            await asyncio.wait_for(batcher.predict(loaded, ["warm"]), 10)
        jobs.clear()
        held = asyncio.ensure_future(blocker.predict(_loaded(Gated("blocker", calls, lock, gate)), ["x"]))
        await asyncio.sleep(0)  # the blocker's batch holds the only thread
        waiting = [
            asyncio.ensure_future(batcher.predict(loaded, ["a" * (i + 1), "b"]))
            for i, (batcher, loaded) in enumerate(zip(batchers, quick, strict=True))
        ]
        await asyncio.sleep(0)
        assert not any(future.done() for future in waiting)
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        await asyncio.wait_for(held, 10)
        pool.close()
        return answers

    answers = asyncio.run(scenario())
    assert [answer[:, 0].tolist() for answer in answers] == [[float(i + 1), 1.0] for i in range(5)]
    assert jobs == [["blocker"], [f"m{i}" for i in range(5)]], jobs


class Slow(Recording):
    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        time.sleep(0.3)
        return super().predict_proba(inputs)


def test_quick_jobs_run_one_at_a_time_and_a_slow_batch_runs_beside_them() -> None:
    """Quick batches (their model's measured time within a job's budget) are Python holding the GIL, so a second
    thread on them would only fight the first: a quick batch waits for the quick job running though a thread is free.
    A slow model's batch (measured above the budget) takes that thread beside it."""
    calls: list[tuple[str, int]] = []
    lock, gate, opened = threading.Lock(), threading.Event(), threading.Event()
    opened.set()

    async def scenario() -> list[np.ndarray]:
        pool = InferencePool()
        pool.threads, pool.budget_s = 2, 0.1  # quick: microseconds, even on a loaded machine; slow: 0.3 s
        metrics = Metrics()
        spec = ServeSpec(deadline_ms=20_000)
        first, second, slow = (Batcher(name, spec, metrics, pool) for name in ("first", "second", "slow"))
        quick = _loaded(Gated("second", calls, lock, opened))
        for batcher, loaded in ((first, _loaded(Gated("first", calls, lock, opened))), (second, quick)):
            await asyncio.wait_for(batcher.predict(loaded, ["warm"]), 10)  # measured: microseconds
        slow_model = _loaded(Slow("slow", calls, lock))
        await asyncio.wait_for(slow.predict(slow_model, ["warm"]), 10)  # measured: above the budget
        assert slow.cost_s is not None and slow.cost_s > pool.budget_s
        held = asyncio.ensure_future(first.predict(_loaded(Gated("first", calls, lock, gate)), ["x"]))
        await asyncio.sleep(0)  # a quick job holds one of the two threads
        waiting = asyncio.ensure_future(second.predict(quick, ["yy"]))
        await asyncio.sleep(0)  # its batch would start now if a quick job could run beside the one running
        assert (second.running, pool.busy) == (0, 1), "a quick job ran beside the quick job running"
        beside = await asyncio.wait_for(slow.predict(slow_model, ["zzz"]), 10)  # on the other thread, at once
        assert not held.done()
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(held, waiting), 10)
        pool.close()
        return [*answers, beside]

    answers = asyncio.run(scenario())
    assert [answer[:, 0].tolist() for answer in answers] == [[1.0], [2.0], [3.0]]


def test_a_request_not_started_by_its_deadline_is_refused_and_the_queue_timer_moves_to_the_next() -> None:
    """One deadline timer per queue: each waiting request is refused at its own deadline, not at the first one's, and
    the requests after them are served."""
    calls: list[tuple[str, int]] = []
    lock, gate, opened = threading.Lock(), threading.Event(), threading.Event()
    opened.set()
    refused_after: list[float] = []

    async def refused(batcher: Batcher, loaded: Loaded) -> None:
        loop = asyncio.get_running_loop()
        queued = loop.time()
        try:
            await asyncio.wait_for(batcher.predict(loaded, ["late"]), 10)
        except ServeError as error:
            assert (error.status, error.code) == (503, "deadline")
            refused_after.append(loop.time() - queued)
        else:
            raise AssertionError("a request past its deadline was answered")

    async def scenario() -> np.ndarray:
        pool = InferencePool()
        metrics = Metrics()
        batcher = Batcher("slow", ServeSpec(deadline_ms=100), metrics, pool)
        held = asyncio.ensure_future(batcher.predict(_loaded(Gated("slow", calls, lock, gate)), ["first"]))
        await asyncio.sleep(0)  # running, and the model runs one batch at a time
        loaded = _loaded(Gated("slow", calls, lock, opened))
        first = asyncio.ensure_future(refused(batcher, loaded))
        await asyncio.sleep(0.05)  # the second request joins the queue half a deadline after the first
        second = asyncio.ensure_future(refused(batcher, loaded))
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        await refused(batcher, loaded)  # queued after the queue emptied: a new timer
        assert batcher.queued == 0
        gate.set()
        await asyncio.wait_for(held, 10)
        answer = await asyncio.wait_for(batcher.predict(loaded, ["after"]), 10)
        assert metrics.rejected.values == {("slow", "1", "deadline"): 3}
        pool.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer[:, 0].tolist() == [5.0]
    assert len(refused_after) == 3 and all(0.09 <= seconds < 5 for seconds in refused_after), refused_after


class Together(Gated):
    """Gated, and predicts together with the other `Together`s (`together_key`); refuses the input "boom"."""

    groups: ClassVar[list[list[str]]] = []

    def together_key(self) -> str:
        return "together"

    @classmethod
    def predict_together(cls, predictors: Sequence[Predictor], inputs: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        cls.groups.append([predictor.name for predictor in predictors])  # type: ignore[attr-defined]
        return super().predict_together(predictors, inputs)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        if "boom" in inputs:
            raise RuntimeError("this input breaks the model")
        return super().predict_proba(inputs)


def test_a_jobs_batches_predict_together_and_a_failing_one_fails_alone() -> None:
    """Models whose predictors predict together (`predict_batches`) run a job's batches as one call; when that call
    fails, each batch runs alone, so only the failing model's request gets the 500."""
    calls: list[tuple[str, int]] = []
    lock, gate, opened = threading.Lock(), threading.Event(), threading.Event()
    opened.set()

    async def scenario() -> list[Any]:
        pool = InferencePool()
        metrics = Metrics()
        names = ["a", "b", "c"]
        batchers = [Batcher(name, ServeSpec(), metrics, pool) for name in names]
        pool.threads = 1
        loaded = [_loaded(Together(name, calls, lock, opened)) for name in names]
        for batcher, one in zip(batchers, loaded, strict=True):  # each model's batch time measured: microseconds
            await asyncio.wait_for(batcher.predict(one, ["warm"]), 10)
        blocker = Batcher("blocker", ServeSpec(), metrics, pool)
        held = asyncio.ensure_future(blocker.predict(_loaded(Gated("blocker", calls, lock, gate)), ["x"]))
        await asyncio.sleep(0)  # the blocker's batch holds the only thread
        Together.groups.clear()
        texts = [["aa", "a"], ["boom"], ["ccc"]]
        waiting = [
            asyncio.ensure_future(batcher.predict(one, batch))
            for batcher, one, batch in zip(batchers, loaded, texts, strict=True)
        ]
        await asyncio.sleep(0)
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
        await asyncio.wait_for(held, 10)
        pool.close()
        return answers

    first, failed, last = asyncio.run(scenario())
    assert Together.groups == [["a", "b", "c"]]  # one call for the three models' batches, which failed
    assert first[:, 0].tolist() == [2.0, 1.0] and last[:, 0].tolist() == [3.0]  # then each alone
    assert isinstance(failed, ServeError) and (failed.status, failed.code) == (500, "prediction_failed")
