"""Feedback as data: a label sent for a logged prediction is checked like any row of the model's data and joined
to that prediction; joined labels later become a data drop through the same validation as any file."""

from __future__ import annotations

from shoal.data.errors import DropRejected
from shoal.data.ingest import IngestResult, ingest_frame
from shoal.registry.prediction_log import Feedback, PredictionLog
from shoal.tasks import get_task
from shoal.workspace import Workspace

SOURCE = "feedback"
SPLIT = "auto"  # like any new data: a share (by text hash) joins the test set, so the gate sees production texts


def add_feedback(
    ws: Workspace, log: PredictionLog, model: str, request_id: str, label: str, index: int | None = None
) -> Feedback:
    """Join `label` to input `index` of a logged request of `model`. Raises DropRejected for a label the model's
    data may not hold, and FeedbackError (NotLogged, AlreadyLabelled) when it cannot be joined."""
    spec = ws.model(model)
    task = get_task(spec.task)
    task.validate(task.feedback_rows(spec, ["feedback"], [label], [1]), spec, SOURCE, skip_invalid=False)
    return log.add_feedback(model, request_id, label, index)


def ingest_feedback(ws: Workspace, log: PredictionLog, model: str) -> IngestResult | None:
    """Turn `model`'s pending feedback into one data drop (rows a drop may not hold are left out and listed);
    None when there was none. Feedback refused whole is settled as such (so it is not retried) and the DropRejected
    is raised; nothing else is written."""
    pending = log.feedback(model, pending=True)
    if not pending:
        return None
    spec = ws.model(model)
    ids = [f.id for f in pending]  # a feedback row's id is its line in the drop
    frame = get_task(spec.task).feedback_rows(spec, [f.text for f in pending], [f.label for f in pending], ids)
    source = f"{SOURCE} ({len(pending)} label(s), ids {ids[0]}..{ids[-1]})"
    try:
        result = ingest_frame(ws, model, frame, source=source, split=SPLIT, skip_invalid=True)
    except DropRejected as error:
        log.settle_feedback(ids, f"rejected: {error.problems[0]}")
        raise
    log.settle_feedback(ids, result.drop.hash)
    return result
