"""Feedback as data and as a live score: joined labels become a data drop through the same validation as any
file, and each version's accuracy on the labels users sent back can be computed at any time."""

from __future__ import annotations

from shoal.data.errors import DropRejected
from shoal.data.ingest import IngestResult, ingest_frame
from shoal.tasks import get_task
from shoal.worker.inbox import record_rejected
from shoal.worker.logs import emit
from shoal.worker.prediction_log import Feedback, PredictionLog
from shoal.workspace import Workspace

SOURCE = "feedback"
SPLIT = "auto"  # like any new data: a share (by text hash) joins the test set, so the gate sees production texts


def ingest_feedback(ws: Workspace, log: PredictionLog, model: str) -> IngestResult | None:
    """Turn `model`'s pending feedback into one data drop (rows a drop may not hold are left out and listed);
    None when there was none."""
    pending = log.feedback(model, pending=True)
    if not pending:
        return None
    spec = ws.model(model)
    texts, labels, lines = [f.text for f in pending], [f.label for f in pending], [f.id for f in pending]
    frame = get_task(spec.task).feedback_rows(spec, texts, labels, lines)
    source = f"{SOURCE} ({len(pending)} label(s), ids {pending[0].id}..{pending[-1].id})"
    ids = [f.id for f in pending]
    try:
        result = ingest_frame(ws, model, frame, source=source, split=SPLIT, skip_invalid=True)
    except DropRejected as error:
        log.settle_feedback(ids, f"rejected: {error.problems[-1]}")
        emit("feedback_rejected", 30, model=model, labels=len(ids), problem=str(error.problems[0]))
        record_rejected(ws, model, f"{source} rejected: {error.problems[0]}")
        return None
    log.settle_feedback(ids, result.drop.hash)
    emit("feedback_ingested", model=model, labels=len(ids), drop=result.drop.hash[:12], skipped=len(result.skipped))
    return result


def feedback_accuracy(ws: Workspace, model: str, log: PredictionLog | None = None) -> dict[int, tuple[int, float]]:
    """Live accuracy per version from feedback: {version: (labels received, share the version got right)}.
    Predictions logged without their label are predicted again by that version (models are deterministic)."""
    log = log or PredictionLog.for_workspace(ws)
    by_version: dict[int, list[Feedback]] = {}
    for item in log.feedback(model):
        by_version.setdefault(item.version, []).append(item)
    scores = {}
    for version, items in sorted(by_version.items()):
        predicted = [item.predicted for item in items]
        missing = [i for i, label in enumerate(predicted) if label is None]
        if missing:
            predictor = ws.load_predictor(ws.registry.version(model, version))
            for i, label in zip(missing, predictor.predict([items[i].text for i in missing]), strict=True):
                predicted[i] = label
        right = sum(label == item.label for label, item in zip(predicted, items, strict=True))
        scores[version] = (len(items), right / len(items))
    return scores
