"""A production version's latest window of served traffic against its reference: what `shoal drift` reports.

The reference is built from the registry when asked: a sample of the model's training inputs (from its assembled
drops) and the version's answers on its test set, both passed through the task's codec as the prediction log writes
them (`Codec.logged`, then `Codec.drift_view`), so the reference and the window are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal.data.assembled import assembled
from shoal.families.base import Predictor
from shoal.monitor.drift import Reference, Verdict, check
from shoal.pipelines.run import step_answers
from shoal.registry import PRODUCTION, RegistryError
from shoal.registry.prediction_log import PredictionLog
from shoal.tasks import get_codec, get_task
from shoal.tasks.codec import Codec
from shoal.workspace import Workspace


@dataclass(frozen=True)
class Watched:
    model: str
    version: int
    verdict: Verdict


def _view(task: str, codec: Codec, predictor: Predictor, inputs: list[Any]) -> tuple[Any, list[Any]]:
    """`inputs` and the version's answers to them, as the prediction log holds them, read by the drift tests."""
    answers = step_answers(task, predictor, inputs, predictor.predict_proba(inputs))
    texts, labels = codec.logged(inputs, answers)
    return codec.drift_view(texts, labels or [])  # type: ignore[return-value]


def latest_window(
    ws: Workspace, model: str, *, window: int, min_samples: int, level: float, reference_size: int = 500, seed: int = 0
) -> Watched:
    """The verdict on the newest `window` logged predictions of `model`'s production version."""
    spec = ws.model(model)
    codec = get_codec(spec.task)
    if codec.drift_view([], []) is None:
        raise RegistryError(f"model {model!r}: drift checks for {spec.task} models are not built yet")
    version = ws.registry.alias(model, PRODUCTION)
    if version is None:
        raise RegistryError(f"model {model!r} has no production version: nothing is served to watch")
    data = assembled(ws, model)
    if data is None:
        raise RegistryError(f"model {model!r} has no data drops: there is no reference to compare with")
    task = get_task(spec.task)
    predictor = ws.load_predictor(ws.registry.version(model, version))
    training, _ = _view(spec.task, codec, predictor, task.train_set(data.train, spec).inputs)
    _, answers = _view(spec.task, codec, predictor, task.test_set(data.train, data.test, spec).inputs)
    if isinstance(training, list):
        reference = Reference.of_texts(training, answers, size=reference_size, seed=seed)
    else:
        reference = Reference.of_rows(training, answers, size=reference_size, seed=seed)
    logged = PredictionLog.for_registry(ws.registry).recent(model, version, window)
    inputs, served = codec.drift_view([text for text, _ in logged], [label or "" for _, label in logged])  # type: ignore[misc]
    return Watched(model, version, check(reference, inputs, served, level=level, min_samples=min_samples, seed=seed))
