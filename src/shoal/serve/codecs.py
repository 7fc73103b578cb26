"""Reading any task's predict request and shaping its answer, around the task's codec (`shoal.tasks.<kind>.codec`).

The body is JSON; a body the codec's fast path takes (only `{"inputs": [...]}` with every input as the codec
`accepts`, plus the options its `fast_options` allows) is read without pydantic; anything else goes through
the codec's request model so the 422 names the problem. The answers travel in the envelope every task shares.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError, create_model

from shoal.serve.errors import ServeError, validation_message
from shoal.serve.schemas import AnswerEnvelope
from shoal.tasks import get_codec
from shoal.tasks.codec import Codec, Parsed


def codec_for(task: str) -> Codec:
    try:
        return get_codec(task)
    except ValueError:
        raise ServeError(422, "invalid_request", f"task {task!r} has no predict endpoint") from None


def parse(codec: Codec, body: bytes) -> Parsed:
    """A request body -> the inputs to queue and the options of their answers, or a 422 naming the problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ServeError(422, "invalid_request", f"the body is not valid JSON; send {codec.example}") from None
    if type(data) is dict:
        items = data.get("inputs")
        options = codec.fast_options(data)
        if options is not None and type(items) is list and items and all(codec.accepts(item) for item in items):
            return Parsed(items, options)
    try:
        return codec.validate(data)
    except ValidationError as error:
        raise ServeError(422, "invalid_request", validation_message(list(error.errors()))) from None


def answer(name: str, version: int, request_id: str, codec: Codec, answers: list[Any]) -> dict[str, Any]:
    """The response body: the envelope and the answers under the codec's key."""
    return {"model": name, "version": version, "request_id": request_id, codec.result_key: answers}


@cache
def response_model(task: str) -> type[BaseModel]:
    """The documented response of a task: the envelope and its codec's answers (for OpenAPI)."""
    codec = get_codec(task)
    title = "".join(part.capitalize() for part in task.split("-")) + "Response"
    answers = (list[codec.answer], Field(description="one per input, in the order of the inputs"))  # type: ignore[name-defined]
    return create_model(title, __base__=AnswerEnvelope, **{codec.result_key: answers})
