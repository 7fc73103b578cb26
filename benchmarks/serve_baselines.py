"""Baseline servers for benchmarks/serve.py, each serving the same promoted model on the same route.

    SHOAL_WORKSPACE=... SHOAL_BASELINE=plain|window|ceiling uvicorn benchmarks.serve_baselines:app --factory

`plain`: FastAPI calling the model once per request. `window`: a fixed-window batcher (flush at 64 inputs or
2 ms, whichever comes first), the naive dynamic batcher the issue compares against. `ceiling`: no model and no
framework, a raw ASGI app that reads the body and answers one fixed answer of shoal's shape: what uvicorn itself can
answer, the bound of every server here.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.workspace import Workspace

MODEL = "banking77"
WINDOW_ITEMS, WINDOW_SECONDS = 64, 0.002


class Body(BaseModel):
    inputs: list[str]


def _answer(labels: list[str], proba: Any) -> list[dict[str, Any]]:
    best = proba.argmax(axis=1)
    return [{"label": labels[k], "probability": float(proba[i, k])} for i, k in enumerate(best)]


ANSWER = orjson.dumps(
    {
        "model": MODEL,
        "version": 1,
        "request_id": "0123abcd-1",
        "predictions": [{"label": "card_arrival", "probability": 0.9}],
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]


async def ceiling(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":  # nothing to start or stop
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def app() -> FastAPI | ASGIApp:
    if os.environ.get("SHOAL_BASELINE") == "ceiling":
        return ceiling
    ws = Workspace(os.environ["SHOAL_WORKSPACE"])
    predictor = ws.load_predictor(ws.registry.version(MODEL, ws.registry.alias(MODEL)))
    server = FastAPI()
    route = f"/v1/models/{MODEL}/predict"
    if os.environ.get("SHOAL_BASELINE", "plain") == "plain":

        @server.post(route)
        def plain(body: Body) -> dict[str, Any]:
            return {"predictions": _answer(predictor.labels, predictor.predict_proba(body.inputs))}

        return server

    pending: list[tuple[list[str], asyncio.Future[Any]]] = []
    executor = ThreadPoolExecutor(1)
    timer: list[asyncio.TimerHandle] = []

    def flush() -> None:
        batch = pending[:]
        pending.clear()
        for handle in timer:
            handle.cancel()
        timer.clear()
        texts = [t for inputs, _ in batch for t in inputs]
        job = asyncio.get_running_loop().run_in_executor(executor, predictor.predict_proba, texts)

        def done(result: asyncio.Future[Any]) -> None:
            proba, start = result.result(), 0
            for inputs, future in batch:
                future.set_result(proba[start : start + len(inputs)])
                start += len(inputs)

        job.add_done_callback(done)

    @server.post(route)
    async def window(body: Body) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending.append((body.inputs, future))
        if sum(len(inputs) for inputs, _ in pending) >= WINDOW_ITEMS:
            flush()
        elif not timer:
            timer.append(loop.call_later(WINDOW_SECONDS, flush))
        return {"predictions": _answer(predictor.labels, await future)}

    return server
