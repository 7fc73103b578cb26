"""The worker's feedback pass: a model's pending feedback labels become a data drop (`shoal.data.feedback`)."""

from __future__ import annotations

from shoal.data.errors import DropRejected
from shoal.data.feedback import ingest_feedback
from shoal.registry.prediction_log import PredictionLog
from shoal.worker.logs import emit
from shoal.workspace import Workspace


def process_feedback(ws: Workspace, log: PredictionLog, model: str) -> None:
    """Ingest `model`'s pending feedback, if any, and log what it became."""
    try:
        result = ingest_feedback(ws, log, model)
    except DropRejected as error:
        emit("feedback_rejected", 30, model=model, source=error.source, problem=str(error.problems[0]))
        return
    if result is not None:
        emit(
            "feedback_ingested",
            model=model,
            source=result.drop.source,
            drop=result.drop.hash[:12],
            skipped=len(result.skipped),
        )
