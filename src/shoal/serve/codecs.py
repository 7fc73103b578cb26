"""Reading any task's predict request and shaping its answer, around the task's codec (`shoal.tasks.<kind>.codec`).

The body is UTF-8 JSON, read by `shoal.serve.bodies.read_json`; a body the codec's fast path takes (only
`{"inputs": [...]}` with every input as the codec `accepts`, plus the options its `fast_options` allows) is read
without pydantic; anything else goes through the codec's request model so the 422 names the problem. Either way,
an input longer than the model's `serve.max_input_chars` is refused with 422 naming its index and the limit, before
it is queued. The answers travel in the envelope every task shares.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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


def parse(codec: Codec, data: Any, max_chars: int) -> Parsed:
    """A request body's JSON (`shoal.serve.bodies.read_json`) -> the inputs to queue and the options of their
    answers, or a 422 naming the problem: a body that is not the codec's request, or an input over `max_chars`."""
    parsed = _fast(codec, data)
    if parsed is None:
        try:
            parsed = codec.validate(data)
        except ValidationError as error:
            raise ServeError(422, "invalid_request", validation_message(list(error.errors()))) from None
    _check_chars(codec, parsed.inputs, max_chars)
    return parsed


def _fast(codec: Codec, data: Any) -> Parsed | None:
    """The fast path: only a body whose every input and option is valid as it stands, without pydantic."""
    if type(data) is not dict:
        return None
    items = data.get("inputs")
    options = codec.fast_options(data)
    if options is not None and type(items) is list and items and all(codec.accepts(item) for item in items):
        return Parsed(items, options)
    return None


def _check_chars(codec: Codec, inputs: list[Any], max_chars: int) -> None:
    over = [i for i, item in enumerate(inputs) if codec.chars(item) > max_chars]
    if over:
        first = over[0]
        more = f" (and {len(over) - 1} more input(s) after it)" if len(over) > 1 else ""
        raise ServeError(
            422,
            "input_too_long",
            f"inputs.{first}: {codec.chars(inputs[first]):,} characters, more than the {max_chars:,} this model "
            f"takes per input (serve.max_input_chars){more}; shorten it or split it into several inputs",
        )


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
