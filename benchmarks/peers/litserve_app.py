"""The Banking77 model served by LitServe with its own batching (64 items or 1 ms), for benchmarks/serve.py.

Runs in its own venv (benchmarks/.work/venvs/litserve): `python litserve_app.py --port PORT`; SHOAL_WORKSPACE
names the workspace whose production `banking77` version is served, PEER_WORKERS the number of inference workers.
The same predictor object shoal serves.
"""

import os
import sys
from typing import Any

import litserve as ls
from fastapi import Request

from shoal.workspace import Workspace

MODEL = "banking77"


class Banking77(ls.LitAPI):
    def setup(self, device: str) -> None:
        ws = Workspace(os.environ["SHOAL_WORKSPACE"])
        self.version = ws.registry.alias(MODEL)
        self.model = ws.load_predictor(ws.registry.version(MODEL, self.version))

    # a real (not postponed) `Request` annotation: LitServe reads it to pass the JSON body through
    def decode_request(self, request: Request) -> str:
        return str(request["inputs"][0])

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        proba = self.model.predict_proba(texts)
        best = proba.argmax(axis=1)
        return [{"label": self.model.labels[i], "probability": float(p[i])} for i, p in zip(best, proba, strict=True)]

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return {"outputs": [output], "version": self.version}


if __name__ == "__main__":
    api = Banking77(max_batch_size=64, batch_timeout=0.001, api_path=f"/v1/models/{MODEL}/predict")
    ls.LitServer(api, accelerator="cpu", workers_per_device=int(os.environ.get("PEER_WORKERS", "1"))).run(
        port=int(sys.argv[-1]), generate_client_file=False, log_level="warning"
    )
