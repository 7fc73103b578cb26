"""The worker's cold-start pass (`shoal.coldstart`): start a model on its LLM, turn the LLM's logged answers into a
training drop when due, and hold the model's retrain triggers while it has too few labelled rows."""

from __future__ import annotations

import logging

from shoal import coldstart
from shoal.registry.prediction_log import PredictionLog
from shoal.worker.logs import emit
from shoal.workspace import Workspace


def cold_start(ws: Workspace, log: PredictionLog, model: str) -> None:
    if coldstart.cold_spec(ws, model) is None:
        return
    started = coldstart.start(ws, model)
    if started is not None:
        emit("cold_start", model=model, version=started.number, endpoint=started.params.get("endpoint"))
    result = coldstart.llm_answers_drop(ws, log, model)
    if result is not None:
        emit("llm_answers_ingested", model=model, drop=result.drop.hash[:12], rows=result.drop.n_rows)


def held_cold(ws: Workspace, model: str) -> bool:
    """Whether the model's retrain triggers wait (a cold start with fewer labelled rows than `min_rows`)."""
    why = coldstart.waiting(ws, model)
    if why is not None:
        emit("cold_start_waiting", logging.DEBUG, model=model, why=why)
    return why is not None
