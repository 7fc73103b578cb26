"""The Banking77 model served by Ray Serve with its own batching (@serve.batch: 64 items or 2 ms, 256 requests in
flight per replica), for benchmarks/serve.py.

Runs in its own venv (benchmarks/.work/venvs/ray): `python ray_app.py --port PORT`; SHOAL_WORKSPACE names the
workspace whose production `banking77` version is served, PEER_WORKERS the number of replicas (default 1). Starts a
private local Ray (no dashboard; benchmarks/serve.py turns usage stats off) whose daemons are this process's
children: besides the replicas Ray runs its GCS, raylet, Serve controller, HTTP proxy (on 127.0.0.1:PORT) and
agents. Stopped with its process group (benchmarks/harness.py `server`).
"""

import os
import sys
import threading
from typing import Any

import ray
from ray import serve
from starlette.requests import Request

from shoal.workspace import Workspace

MODEL = "banking77"


@serve.deployment(max_ongoing_requests=256)
class Banking77:
    def __init__(self, workspace: str) -> None:
        ws = Workspace(workspace)
        self.version = ws.registry.alias(MODEL)
        self.model = ws.load_predictor(ws.registry.version(MODEL, self.version))

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        proba = self.model.predict_proba(texts)
        best = proba.argmax(axis=1)
        return [{"label": self.model.labels[i], "probability": float(p[i])} for i, p in zip(best, proba, strict=True)]

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"outputs": [await self.predict(str(body["inputs"][0]))], "version": self.version}


if __name__ == "__main__":
    replicas, port = int(os.environ.get("PEER_WORKERS", "1")), int(sys.argv[-1])
    ray.init(num_cpus=max(replicas, 1), include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = Banking77.options(num_replicas=replicas).bind(os.environ["SHOAL_WORKSPACE"])
    serve.run(app, route_prefix=f"/v1/models/{MODEL}/predict")
    threading.Event().wait()  # serve until the process group is stopped
