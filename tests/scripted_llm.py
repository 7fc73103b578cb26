"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 whose answers a test scripts.

`scripted_llm()` starts it (uvicorn in a thread, a real socket) and yields its `Script`. By default every request is
answered `{"label": script.label(text)}` with a fixed usage (`PROMPT_TOKENS`, `COMPLETION_TOKENS`). A test changes:

- `plan`: the next requests' answers, in order: `("status", code, headers[, body])`, `("hang",)` (no answer until
  the server stops), `("content", text)` (any content, e.g. a label outside the set);
- `content`: when set, the content of every plain answer, given the request's body (e.g. `{"examples": [...]}` for
  a generation request);
- `formats`: the answer constraints it accepts (`response_format` types and `grammar`; others answer 400 naming
  them), `{"text"}` for none;
- `hold`: every request waits until this many are in flight at once (or `hold_s` passes): with hold = limit + 1, a
  client within its concurrency limit waits `hold_s` per request and one beyond it is seen at once.

It records each request: its body, its Authorization header and when it arrived (`requests`), and the most in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_fixtures import serving

PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 10


@dataclass
class Seen:
    body: dict[str, Any]
    authorization: str | None
    at: float  # time.monotonic()


@dataclass
class Script:
    url: str = ""  # the OpenAI API root, e.g. http://127.0.0.1:PORT/v1
    label: Callable[[str], str] = lambda text: "ham"
    content: Callable[[dict[str, Any]], str] | None = None
    plan: deque[tuple[Any, ...]] = field(default_factory=deque)
    formats: set[str] = field(default_factory=lambda: {"json_schema", "grammar", "json_object", "text"})
    hold: int = 0
    hold_s: float = 0.3
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def texts(self) -> list[str]:
        """The user texts of the requests received, in order."""
        return [seen.body["messages"][-1]["content"] for seen in self.requests]


def _app(script: Script) -> FastAPI:
    app = FastAPI()
    changed = asyncio.Condition()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> Any:
        body = await request.json()
        script.requests.append(Seen(body, request.headers.get("authorization"), time.monotonic()))
        async with changed:
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
            changed.notify_all()
            if script.hold:
                with suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait_for(lambda: script.in_flight >= script.hold), script.hold_s)
        try:
            return await _answer(script, body)
        finally:
            async with changed:
                script.in_flight -= 1

    return app


async def _answer(script: Script, body: dict[str, Any]) -> Any:
    step = script.plan.popleft() if script.plan else ("answer",)
    if step[0] == "status":
        body = step[3] if len(step) > 3 else {"error": {"message": "scripted"}}
        return JSONResponse(body, status_code=step[1], headers=step[2])
    if step[0] == "hang":
        await asyncio.to_thread(script.released.wait, 60)
        return JSONResponse({"error": {"message": "stopped"}}, status_code=503)
    kind = "grammar" if "grammar" in body else (body.get("response_format") or {"type": "text"})["type"]
    if kind not in script.formats:
        why = "unrecognized request argument: grammar" if kind == "grammar" else f"response_format {kind} is unknown"
        return JSONResponse({"error": {"message": why}}, status_code=400)
    text = body["messages"][-1]["content"]
    if step[0] == "content":
        content = step[1]
    elif script.content is not None:
        content = script.content(body)
    else:
        content = script.label(text) if kind == "text" else f'{{"label": "{script.label(text)}"}}'
    return {
        "id": "scripted",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS},
    }


@contextmanager
def scripted_llm() -> Iterator[Script]:
    script = Script()
    with serving(_app(script), lifespan="off") as url:
        script.url = f"{url}/v1"
        try:
            yield script
        finally:
            script.released.set()
