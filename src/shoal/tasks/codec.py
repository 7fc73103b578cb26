"""What a task's codec is: how its predict requests are read and its answers written, without HTTP.

The server (`shoal.serve.codecs`) reads the body, takes the fast path a codec allows (`accepts`,
`fast_options`) or else its `validate`, maps a `pydantic.ValidationError` to a 422, refuses an input longer
than the model's `serve.max_input_chars` (as the codec counts its `chars`) whichever way it was read, and
wraps the answers in the envelope every task shares (model, version, request id).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from shoal.families.base import Predictor

Text = Annotated[str, Field(min_length=1, description="one input text (not empty)")]


@dataclass
class Parsed:
    """A request's inputs (what the batcher queues) and the options its answers need."""

    inputs: list[Any]
    options: dict[str, Any] = field(default_factory=dict)


class Codec(ABC):
    #: the request body (documented in OpenAPI; validates every body the fast path does not take)
    request: ClassVar[type[BaseModel]]
    #: the type of one answer (documented in OpenAPI)
    answer: ClassVar[Any]
    #: the route that serves this task, and the key of the answers in its response body
    endpoint: ClassVar[str] = "predict"
    result_key: ClassVar[str] = "predictions"
    #: what a request's inputs and each answer are, for the API documentation
    inputs_doc: ClassVar[str]
    answer_doc: ClassVar[str]

    def accepts(self, item: Any) -> bool:
        """Whether one input is valid as it stands (the fast path; by default a text that is not empty); a body
        with any other input goes to `validate`."""
        return type(item) is str and bool(item)

    def chars(self, item: Any) -> int:
        """The characters of one valid input, counted against the model's `serve.max_input_chars` (by default its
        length: a text or an id)."""
        return len(item)

    def fast_options(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The options of a body the fast path may take, or None to send it to `validate`: only `inputs`."""
        return {} if data.keys() == {"inputs"} else None

    def validate(self, data: Any) -> Parsed:
        """A body through `request`: raises `pydantic.ValidationError` naming the problem."""
        return Parsed(self.request.model_validate(data).inputs)

    @abstractmethod
    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        """The batched output rows of the request's inputs -> one JSON-ready answer per input."""

    @abstractmethod
    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        """(input texts, predicted labels) for the prediction log."""

    def drift_view(self, inputs: list[str], answers: list[str]) -> tuple[Any, list[Any]] | None:
        """Logged inputs and answers (as `logged` wrote them) in the form the drift tests read (`shoal.monitor`):
        (texts, or rows as a pandas frame; labels, or values as numbers); None when this task has no drift tests."""
        return None
