"""A production version's latest window of served traffic against its reference: what `shoal drift` reports.

The reference is built from the registry when asked: a sample of the version's training inputs (from the drops it
was trained on, whatever arrived since) and its answers on that test set, both passed through the task's codec as the
prediction log writes them (`Codec.logged`, then `Codec.drift_view`), so the reference and the window read alike.

For a classifier with a calibration record, two quality checks join the window's tests (and its correction): the
accuracy estimated from the window's calibrated confidences, and the accuracy on the feedback labels of its newest
`window` answers, each against the version's test accuracy less `accuracy_margin`.

For a task whose outcomes arrive later as data (`TaskKind.realised_outcomes`: a forecast meets the values later drops
bring), the window is the errors of the served answers instead: those of the versions production held, newest
version first, until `window` realised points (of the versions that served in the last `window_hours`, if given),
against the errors on its test set of the oldest of them — whose test set ends before any of those points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shoal.cascade.calibration import CALIBRATION_FILE, confidence
from shoal.data.assembled import Assembled, assembled
from shoal.evaluate.live import right_answers
from shoal.families.base import Predictor
from shoal.monitor.drift import Finding, Reference, Verdict, check, check_errors
from shoal.monitor.estimate import estimated_accuracy, live_shortfall_p, shortfall_p
from shoal.pipelines.run import step_answers
from shoal.registry import PRODUCTION, RegistryError, Version
from shoal.registry.database import now
from shoal.registry.prediction_log import PredictionLog
from shoal.tasks import get_codec, get_task
from shoal.tasks.base import Errors, TaskKind
from shoal.tasks.codec import Codec
from shoal.workspace import Workspace


@dataclass(frozen=True)
class Watched:
    model: str
    version: int
    verdict: Verdict
    #: what the window held when not the newest logged predictions (the versions whose forecasts were realised)
    source: str | None = None
    #: the newest feedback label the live accuracy check read (None: it read none)
    feedback_id: int | None = None


def _view(task: str, codec: Codec, predictor: Predictor, inputs: list[Any]) -> tuple[Any, list[Any]]:
    """`inputs` and the version's answers to them, as the prediction log holds them, read by the drift tests."""
    answers = step_answers(task, predictor, inputs, predictor.predict_proba(inputs))
    texts, labels = codec.logged(inputs, answers)
    return codec.drift_view(texts, labels or [])  # type: ignore[return-value]


def _quality(
    ws: Workspace,
    version: Version,
    predictor: Predictor,
    inputs: Any,
    log: PredictionLog,
    window: int,
    margin: float,
    feedback_after: int | None,
) -> tuple[list[Finding], int | None]:
    """The estimated and the live accuracy checks of a classifier's window (none for another task, or a version
    without a calibration record or a test accuracy), and the newest feedback label read. The live check is left out
    when no label arrived since `feedback_after` (the newest a previous check read): the same labels are no new
    evidence, and testing them again would alert at every interval until feedback arrives."""
    path = ws.registry.artifacts.folder(version.artifact_uri, version.checksum) / CALIBRATION_FILE
    tested = version.metrics.scores.get("accuracy")
    if not isinstance(inputs, list) or not path.is_file() or tested is None:
        return [], None
    floor = max(0.0, float(tested) - margin)
    temperature = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    confidences = confidence(predictor.predict_proba(inputs), temperature)
    estimate = estimated_accuracy(confidences)
    estimated = shortfall_p(confidences, floor)
    findings = [Finding(f"estimated accuracy (CBPE) vs {floor:.3f}", estimate.accuracy, estimated)]
    labelled = [item for item in log.feedback(version.model) if item.version == version.number][-window:]
    newest = labelled[-1].id if labelled else None
    if labelled and (feedback_after is None or newest > feedback_after):  # type: ignore[operator]
        right = right_answers(ws, version.model, version.number, labelled)
        live = live_shortfall_p(right, len(labelled), floor)
        findings.append(Finding(f"live accuracy ({len(labelled)} labels) vs {floor:.3f}", right / len(labelled), live))
    return findings, newest


#: references built in this process, by (registry, model, version, artifact checksum, size, seed): a version's
#: reference never changes, and building it predicts every training and test input (~2 CPU s for Banking77)
_REFERENCES: dict[tuple[str, str, int, str, int, int], Reference] = {}
REFERENCES_KEPT = 32


def _reference(ws: Workspace, served: Version, predictor: Predictor, size: int, seed: int) -> Reference:
    """A sample of the version's training inputs and its answers on its test set, as the prediction log reads."""
    spec = ws.model(served.model)
    codec, task = get_codec(spec.task), get_task(spec.task)
    data = _trained_on(ws, served)
    training, _ = _view(spec.task, codec, predictor, task.train_set(data.train, spec).inputs)
    _, answers = _view(spec.task, codec, predictor, task.test_set(data.train, data.test, spec).inputs)
    if isinstance(training, list):
        return Reference.of_texts(training, answers, size=size, seed=seed)
    return Reference.of_rows(training, answers, size=size, seed=seed)


def latest_window(
    ws: Workspace,
    model: str,
    *,
    window: int,
    min_samples: int,
    level: float,
    accuracy_margin: float = 0.05,
    window_hours: float | None = None,
    reference_size: int = 500,
    seed: int = 0,
    feedback_after: int | None = None,
) -> Watched:
    """The verdict on the newest `window` logged predictions of `model`'s production version (of the last
    `window_hours`, if given); the live accuracy check only when feedback newer than `feedback_after` exists."""
    spec = ws.model(model)
    codec, task = get_codec(spec.task), get_task(spec.task)
    if not task.realised_outcomes and codec.drift_view([], []) is None:
        raise RegistryError(f"model {model!r}: drift checks for {spec.task} models are not built yet")
    version = ws.registry.alias(model, PRODUCTION)
    if version is None:
        raise RegistryError(f"model {model!r} has no production version: nothing is served to watch")
    if task.realised_outcomes:
        return _realised_window(
            ws, model, version, task, window=window, min_samples=min_samples, level=level, window_hours=window_hours
        )
    served = ws.registry.version(model, version)
    predictor = ws.load_predictor(served)
    key = (ws.registry_url, model, version, served.checksum, reference_size, seed)
    reference = _REFERENCES.pop(key, None) or _reference(ws, served, predictor, reference_size, seed)
    _REFERENCES[key] = reference  # the most recently used last
    while len(_REFERENCES) > REFERENCES_KEPT:
        del _REFERENCES[next(iter(_REFERENCES))]
    log = ws.prediction_log()
    since = now() - timedelta(hours=window_hours) if window_hours is not None else None
    logged = log.recent(model, version, window, since)
    inputs, answered = codec.drift_view([text for text, _ in logged], [label or "" for _, label in logged])  # type: ignore[misc]
    quality, newest = (
        _quality(ws, served, predictor, inputs, log, window, accuracy_margin, feedback_after)
        if len(logged) >= min_samples
        else ([], None)
    )
    verdict = check(reference, inputs, answered, level=level, min_samples=min_samples, seed=seed, extra=quality)
    return Watched(model, version, verdict, feedback_id=newest)


def _trained_on(ws: Workspace, version: Version) -> Assembled:
    """The rows of the drops `version` was trained on, as its task assembled them."""
    data = assembled(ws, version.model, version.dataset_version)
    if data is None:
        raise RegistryError(
            f"model {version.model!r}: the drops v{version.number} was trained on are not in the registry: "
            "nothing to compare with"
        )
    return data


def _served_versions(ws: Workspace, model: str, window_hours: float | None = None) -> list[int]:
    """The versions `model`'s production alias has held, the latest holder first, each once (only those that held
    it within the last `window_hours`, if given; the current one always)."""
    history = ws.registry.alias_history(model, PRODUCTION)
    since = now() - timedelta(hours=window_hours) if window_hours is not None else None
    held = [
        change.to_version
        for change, after in zip(history, [*history[1:], None], strict=True)
        if since is None or after is None or after.at >= since
    ]
    return list(dict.fromkeys(reversed(held)))


def _realised_window(
    ws: Workspace,
    model: str,
    version: int,
    task: TaskKind,
    *,
    window: int,
    min_samples: int,
    level: float,
    window_hours: float | None,
) -> Watched:
    """The verdict on the errors of the answers production served whose outcomes the model's drops now hold."""
    spec = ws.model(model)
    now_rows = assembled(ws, model)
    assert now_rows is not None  # a version was trained on some drops
    parts: list[Errors] = []
    judged: list[tuple[Version, Predictor]] = []
    for number in _served_versions(ws, model, window_hours):
        held = ws.registry.version(model, number)
        predictor = ws.load_predictor(held)
        errors = task.served_errors(predictor, now_rows.train, spec)
        parts.append(errors)
        if len(errors):
            judged.append((held, predictor))
            if sum(map(len, parts)) >= window:
                break
    served = Errors.join(parts, window)

    def tested() -> Errors:
        oldest, predictor = judged[-1]
        data = _trained_on(ws, oldest)
        return task.test_errors(predictor, task.test_set(data.train, data.test, spec))

    verdict = check_errors(tested, served, level=level, min_samples=min_samples)
    source = None
    if judged:
        newest, oldest = judged[0][0].number, judged[-1][0].number
        versions = f"v{oldest}" if newest == oldest else f"v{oldest}..v{newest}"
        source = f"the {served.name}s of {versions} against v{oldest}'s test set"
    return Watched(model, version, verdict, source)
