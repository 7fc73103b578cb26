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
        # the line (a feedback id) and the count only: a reason may quote a user's label
        emit(
            "feedback_rejected",
            30,
            model=model,
            source=error.source,
            line=error.first_line,
            problems=len(error.problems),
        )
        return
    if result is not None:
        emit(
            "feedback_ingested",
            model=model,
            source=result.drop.source,
            drop=result.drop.hash[:12],
            skipped=len(result.skipped),
        )
