"""The batchers of all models share one inference pool: a flooded model does not starve another, batches form when a
thread takes them (so they grow while the others run), and no batch mixes models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shoal.families.base import Predictor
from shoal.fleet import ServeSpec
from shoal.registry import Version
from shoal.serve.batcher import Batcher, InferencePool, Loaded
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
