"""`serve.max_input_chars` (issue 12, defect 4): an input longer than its model's limit is refused with 422 naming the
input and the limit, on both predict paths (the fast path and the pydantic request model) of every task's codec,
before it is queued; a client sending such inputs leaves the other clients' requests untouched; inputs within the
limit are truncated by the encoders' own token limit (512 for the static encoder, 256 for MiniLM)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from every_kind import MODELS, SERVE, VALID, EveryKind, copy_every_kind, every_kind  # noqa: F401 (a fixture)
from serve_fixtures import Trained, copy_workspace, running
from shoal.families.runtime.static_embedder import MAX_TOKENS
from shoal.fleet import FleetError, parse_fleet
from shoal.serve.codecs import parse
from shoal.serve.errors import ServeError
from shoal.tasks import get_codec, task_names
from shoal.tasks.codec import Codec, Parsed

LIMIT = SERVE["max_input_chars"]


def sized(task: str, chars: int) -> Any:
    """A valid input of `task` that counts exactly `chars` characters against the limit."""
    if task == "regression":
        row = {key: value for key, value in VALID["house"].items() if key != "ocean_proximity"}
        used = sum(len(key) for key in row) + len("ocean_proximity")
        return {**row, "ocean_proximity": "x" * (chars - used)}
    return "x" * chars


def pydantic_only(codec: Codec) -> tuple[Codec, list[Any]]:
    """The same codec with its fast path off (every body goes through `validate`), and a list of its validations."""
    calls: list[Any] = []

    class Slow(type(codec)):  # type: ignore[misc]
        def fast_options(self, data: dict[str, Any]) -> dict[str, Any] | None:
            return None

        def validate(self, data: Any) -> Parsed:
            calls.append(data)
            return super().validate(data)

    return Slow(), calls


@pytest.mark.parametrize("task", task_names())
def test_the_limit_holds_on_the_fast_path_and_the_pydantic_path_of_every_codec(task: str) -> None:
    codec = get_codec(task)
    slow, validated = pydantic_only(codec)
    at_limit = {"inputs": [sized(task, 5), sized(task, LIMIT)]}
    over = {"inputs": [sized(task, 5), sized(task, 7), sized(task, LIMIT + 1), sized(task, 3 * LIMIT)]}
    for reader in (codec, slow):
        assert len(parse(reader, at_limit, LIMIT).inputs) == 2
        with pytest.raises(ServeError) as refused:
            parse(reader, over, LIMIT)
        error = refused.value
        assert (error.status, error.code) == (422, "input_too_long")
        assert error.message.startswith(f"inputs.2: {LIMIT + 1:,} characters, more than the {LIMIT:,}")
        assert "serve.max_input_chars" in error.message and "1 more input(s)" in error.message
    assert len(validated) == 2  # the slow reader really went through the request model, both times


def test_the_limit_is_a_fleet_setting_with_a_default() -> None:
    model = {"task": "text-classification", "metric": "accuracy", "families": ["majority"]}
    fleet = parse_fleet({"models": {"a": model, "b": {**model, "serve": {"max_input_chars": 500}}}}, Path("x.yaml"))
    assert fleet.models["a"].serve.max_input_chars == 10_000
    assert fleet.models["b"].serve.max_input_chars == 500
    with pytest.raises(FleetError, match=r"models\.b\.serve\.max_input_chars: Input should be greater than"):
        parse_fleet({"models": {"b": {**model, "serve": {"max_input_chars": 0}}}}, Path("x.yaml"))


@pytest.fixture(scope="module")
def every_url(every_kind: EveryKind, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    with running(copy_every_kind(every_kind, tmp_path_factory.mktemp("limits"))) as url:
        yield url


def batches(url: str, model: str) -> int:
    """How many batches the model has run (any version)."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    prefix = f'shoal_batch_size_count{{model="{model}"'
    return sum(int(float(line.split()[-1])) for line in lines if line.startswith(prefix))


@pytest.mark.parametrize("model", list(MODELS))
def test_every_served_model_refuses_a_long_input_before_queueing_it(every_url: str, model: str) -> None:
    task = MODELS[model]["task"]
    route = f"{every_url}/v1/models/{model}/{get_codec(task).endpoint}"
    ran = batches(every_url, model)
    answer = httpx.post(route, json={"inputs": [VALID[model], sized(task, LIMIT + 1)]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "input_too_long"
    assert error["message"].startswith(f"inputs.1: {LIMIT + 1:,} characters, more than the {LIMIT:,}")
    assert batches(every_url, model) == ran  # nothing was queued
    assert httpx.post(route, json={"inputs": [VALID[model]]}).status_code == 200


def test_inputs_within_the_limit_are_truncated_at_the_encoders_token_limit(every_url: str) -> None:
    """The served embedding model is the static encoder: it reads the first MAX_TOKENS (512) tokens of a text."""
    base = "a " * (MAX_TOKENS + 100)  # one token per word: 612 tokens in 1,224 characters, within the limit of 2,000
    tails = [" apples and pears", " trains and planes"]

    def embed(texts: list[str]) -> np.ndarray:
        answer = httpx.post(f"{every_url}/v1/models/embed/embed", json={"inputs": texts})
        assert answer.status_code == 200, answer.text
        return np.array(answer.json()["embeddings"])

    long = embed([base + tail for tail in tails])
    np.testing.assert_allclose(long[0], long[1], atol=1e-6)  # the tails are past token 512: cut off
    short = embed([base[:100] + tail for tail in tails])
    assert not np.allclose(short[0], short[1], atol=1e-3)  # within 512 tokens the tails count


def test_a_client_over_the_limit_does_not_touch_a_normal_client(trained: Trained, tmp_path: Path) -> None:
    """The default limit (10,000 characters) on the served spam model: one client sends 500,000-character texts
    without pause while another sends 300 ordinary requests; the ordinary client gets 300 answers (0 errors), the
    other only 422s, and the model runs batches for the ordinary requests only."""
    ws = copy_workspace(trained, tmp_path)
    with running(ws) as url:
        route = f"{url}/v1/models/spam/predict"
        long = orjson.dumps({"inputs": ["word " * 100_000]})
        refused: Counter[str] = Counter()
        first = threading.Event()
        stop = threading.Event()

        def flood() -> None:
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    try:
                        status = http.post(route, content=long, headers={"content-type": "application/json"})
                        refused[str(status.status_code)] += 1
                    except httpx.HTTPError as error:
                        refused[type(error).__name__] += 1
                    first.set()

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            assert first.wait(30), "the long client got no answer"
            during = sum(refused.values())
            ran = batches(url, "spam")
            errors: Counter[str] = Counter()
            with httpx.Client(timeout=30) as http:
                for i in range(300):
                    try:
                        answer = http.post(route, json={"inputs": [f"are we still meeting at {i}?"]})
                        if answer.status_code != 200 or answer.json()["predictions"][0]["label"] not in ("ham", "spam"):
                            errors[str(answer.status_code)] += 1
                    except httpx.HTTPError as error:
                        errors[type(error).__name__] += 1
            assert sum(refused.values()) > during, "the long client did not run beside the normal one"
        finally:
            stop.set()
            flooder.join(40)
        assert not flooder.is_alive()
        assert errors == Counter(), errors
        assert set(refused) == {"422"}, refused
        assert batches(url, "spam") - ran == 300  # one batch per ordinary request: no long text was ever queued
