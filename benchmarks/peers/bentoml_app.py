"""The Banking77 model served by BentoML with its adaptive batching (up to 64 items, 100 ms max latency), for
benchmarks/serve.py.

Runs in its own venv (benchmarks/.work/venvs/bentoml): `bentoml serve bentoml_app:Banking77 --port PORT`;
SHOAL_WORKSPACE names the workspace whose production `banking77` version is served, PEER_WORKERS the number of
worker processes (default 1).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

from shoal.workspace import Workspace

MODEL = "banking77"


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "1")), traffic={"timeout": 30})
class Banking77:
    def __init__(self) -> None:
        ws = Workspace(os.environ["SHOAL_WORKSPACE"])
        self.model = ws.load_predictor(ws.registry.version(MODEL, ws.registry.alias(MODEL)))

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=100, route=f"/v1/models/{MODEL}/predict")
    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        proba = self.model.predict_proba(inputs)
        best = proba.argmax(axis=1)
        return [{"label": self.model.labels[i], "probability": float(p[i])} for i, p in zip(best, proba, strict=True)]
