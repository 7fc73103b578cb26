"""Fuzz the request codecs of a real server (uvicorn on 127.0.0.1) that serves one model of every task kind.

Hypothesis (fixed seed, bounded number of examples) generates predict bodies for each task's codec, data rows and
feedback bodies — JSON of every shape, near-valid bodies, over-long inputs, odd text (NUL, line separators, BOM),
raw bytes that are not JSON or not UTF-8, and wrong Content-Types. The property, for every body: the answer is a 2xx
with a valid answer or a 4xx JSON error — never a 5xx; a 4xx leaves the store as it was (drops, versions, aliases,
feedback); and the next valid request of the same model still answers 200.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from every_kind import MODELS, SERVE, VALID, EveryKind, copy_every_kind, every_kind  # noqa: F401 (a fixture)
from serve_fixtures import running
from shoal.registry.prediction_log import PredictionLog
from shoal.serve.codecs import response_model
from shoal.serve.lifecycle_routes import DataResponse, FeedbackResponse
from shoal.tasks import get_codec
from shoal.workspace import Workspace

SEED = 20261130
EXAMPLES = 80  # per test below: 4 predict tests, raw bytes, data and feedback
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True
)
TALLY: Counter[str] = Counter()  # requests sent by the fuzzers, by route and status class

ODD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u2028line\u2029",
    "a\x85b",
    "\ufeffbom",
    "x\ud800y",  # a lone surrogate: the escape \ud800 in an ASCII body, the bytes ED A0 80 (not UTF-8) otherwise
    "é" * 3,
    "x" * SERVE["max_input_chars"],
]
TOO_LONG = "y" * (SERVE["max_input_chars"] + 1)
texts = st.text(max_size=40) | st.sampled_from([*ODD_TEXT, TOO_LONG])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=10
)
content_types = st.sampled_from(
    ["application/json"] * 6
    + ["application/json; charset=utf-8", "application/problem+json", "text/plain", "application/json; charset=latin-1"]
)


def items(model: str) -> st.SearchStrategy[Any]:
    """One input of `model`'s codec: mostly the right shape with odd values, sometimes any JSON."""
    if MODELS[model]["task"] == "regression":
        rows = st.fixed_dictionaries(
            {key: st.just(value) | scalars for key, value in VALID["house"].items()},
            optional={"extra": scalars, TOO_LONG[:30]: st.just(TOO_LONG)},
        )
        return rows | json_values
    return st.just(VALID[model]) | texts | json_values


def good_items(model: str) -> st.SearchStrategy[Any]:
    """One valid input of `model` (any text; a row with any finite numbers; the car sales series)."""
    task = MODELS[model]["task"]
    if task == "regression":
        numbers = st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6)
        categories = st.sampled_from(["NEAR BAY", "INLAND", "<1H OCEAN", "NEAR OCEAN", "ISLAND"])
        return st.fixed_dictionaries(
            {k: categories if isinstance(v, str) else numbers | st.none() for k, v in VALID["house"].items()}
        )
    if task == "forecasting":
        return st.just(VALID[model])
    return st.text(min_size=1, max_size=60)


def predict_bodies(model: str) -> st.SearchStrategy[Any]:
    options = st.dictionaries(
        st.sampled_from(["top_k", "return_probabilities", "extra", "inputs"]), json_values, max_size=2
    )
    near_valid = st.builds(lambda inputs, more: {"inputs": inputs, **more}, st.lists(items(model), max_size=5), options)
    valid_options = (
        st.fixed_dictionaries({}, optional={"top_k": st.integers(1, 5), "return_probabilities": st.booleans()})
        if MODELS[model]["task"] == "text-classification"
        else st.just({})
    )
    valid = st.builds(
        lambda inputs, more: {"inputs": inputs, **more},
        st.lists(good_items(model), min_size=1, max_size=5),
        valid_options,
    )
    return valid | near_valid | json_values


def encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def store(ws: Workspace, log: PredictionLog) -> dict[str, Any]:
    """What a refused request may not change: every model's drops, versions, production alias and feedback, and
    the files of the artifact store (a temporary file left behind is a change)."""
    registry = ws.registry
    models = {
        name: (
            [(d.hash, d.n_rows) for d in registry.drops(name)],
            [v.number for v in registry.versions(name)],
            registry.alias(name),
            len(log.feedback(name)),
        )
        for name in MODELS
    }
    return {"models": models, "files": sorted(str(path) for path in ws.artifact_root.rglob("*"))}


class Server:
    def __init__(self, url: str, ws: Workspace) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.ws = ws
        self.log = PredictionLog.for_registry(ws.registry)
        self.request_ids: dict[str, list[str]] = {name: [] for name in MODELS}  # answered predictions
        self.stored = store(ws, self.log)  # as it was after the last request

    def valid(self, model: str) -> httpx.Response:
        endpoint = get_codec(MODELS[model]["task"]).endpoint
        return self.http.post(f"/v1/models/{model}/{endpoint}", json={"inputs": [VALID[model]]})

    def send(self, model: str, route: str, raw: bytes, content_type: str | None) -> None:
        """One fuzzed request, and the property."""
        headers = {"content-type": content_type} if content_type else {}
        response = self.http.post(f"/v1/models/{model}/{route}", content=raw, headers=headers)
        status = response.status_code
        TALLY[f"{route} {status // 100}xx"] += 1
        assert status < 500, (status, response.text)
        body = response.json()
        if status == 200:
            shape = {"data": DataResponse, "feedback": FeedbackResponse}.get(route)
            (shape or response_model(MODELS[model]["task"])).model_validate(body)
            if shape is None:
                self.request_ids[model].append(body["request_id"])
        else:
            assert 400 <= status < 500 and set(body) == {"error"}, (status, body)
            assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
        now = store(self.ws, self.log)
        if status != 200:
            assert now == self.stored, f"a {status} changed the store"
        self.stored = now
        after = self.valid(model)
        assert after.status_code == 200, after.text
        self.request_ids[model].append(after.json()["request_id"])


@pytest.fixture(scope="module")
def server(every_kind: EveryKind, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    ws = copy_every_kind(every_kind, tmp_path_factory.mktemp("fuzz"))
    reader = Workspace(ws.root)
    with running(ws) as url:
        fuzz = Server(url, reader)
        yield fuzz
        fuzz.http.close()
        fuzz.log.close()
    reader.close()


@pytest.mark.parametrize("model", list(MODELS))
def test_predict_bodies_of_every_codec(server: Server, model: str) -> None:
    endpoint = get_codec(MODELS[model]["task"]).endpoint

    @seed(SEED)
    @FUZZ
    @given(body=predict_bodies(model), ascii_only=st.booleans(), content_type=content_types)
    def check(body: Any, ascii_only: bool, content_type: str) -> None:
        server.send(model, endpoint, encode(body, ascii_only), content_type)

    check()


@given(
    model=st.sampled_from(list(MODELS)),
    route=st.sampled_from(["predict", "data", "feedback"]),
    raw=st.binary(max_size=80)
    | st.builds(
        lambda valid, at, junk: valid[:at] + junk + valid[at:],
        st.sampled_from([encode({"inputs": [VALID["spam"]]}, True), b'{"rows": [{"text": "hi", "label": "ham"}]}']),
        st.integers(0, 40),
        st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\\ud800", b"NaN", b"Infinity", b"\x00", b"\xef\xbb\xbf", b"}"]),
    ),
)
@seed(SEED)
@FUZZ
def test_raw_bodies_that_are_not_json_or_not_utf8(server: Server, model: str, route: str, raw: bytes) -> None:
    if route == "predict":
        route = get_codec(MODELS[model]["task"]).endpoint
    server.send(model, route, raw, "application/json")


def data_bodies(model: str) -> st.SearchStrategy[Any]:
    """Valid rows of `model` (twice as likely), rows with odd columns and values, or any JSON."""
    spec = MODELS[model]
    columns = {
        "text-classification": {"text": texts, "label": st.sampled_from(["ham", "spam"]) | texts},
        "regression": {
            **{k: st.just(v) | scalars for k, v in VALID["house"].items()},
            spec.get("target_column"): scalars,
        },
        "forecasting": {"Month": st.sampled_from(["1969-01", "1969-02"]) | texts, "Sales": scalars},
        "embedding": {"text": texts, "text_pair": texts, "score": scalars},
        "token-classification": {
            "text": texts,
            "entities": st.lists(
                st.fixed_dictionaries(
                    {"start": st.integers(-2, 40) | scalars, "end": st.integers(-2, 40), "label": st.just("person")}
                ),
                max_size=3,
            ),
            "tokens": st.lists(texts, max_size=4),
            "tags": st.lists(st.sampled_from(["O", "B-person", "I-person", "E-group", "X"]), max_size=4),
        },
    }[spec["task"]]
    fields = {key: value | json_values for key, value in columns.items() if key}
    odd_row = st.fixed_dictionaries({}, optional=fields) | st.dictionaries(texts, scalars, max_size=3)
    options = st.dictionaries(
        st.sampled_from(["split", "extra"]), st.sampled_from(["train", "auto"]) | scalars, max_size=2
    )
    odd = st.builds(lambda rows, more: {"rows": rows, **more}, st.lists(odd_row, max_size=4), options)
    valid_row = {
        "text-classification": st.fixed_dictionaries(
            {
                "text": st.text(min_size=1, max_size=60) | st.sampled_from(ODD_TEXT),
                "label": st.sampled_from(["ham", "spam"]),
            }
        ),
        "regression": st.fixed_dictionaries(
            {**{k: st.just(v) for k, v in VALID["house"].items()}, spec.get("target_column"): st.floats(0, 1e6)}
        ),
    }.get(spec["task"], odd_row)
    valid = st.fixed_dictionaries(
        {"rows": st.lists(valid_row, min_size=1, max_size=4)}, optional={"split": st.sampled_from(["train", "auto"])}
    )
    return st.one_of(valid, valid, odd, json_values)


@given(
    data=st.sampled_from(list(MODELS)).flatmap(lambda model: st.tuples(st.just(model), data_bodies(model))),
    ascii_only=st.booleans(),
    content_type=content_types,
)
@seed(SEED)
@FUZZ
def test_data_bodies(server: Server, data: tuple[str, Any], ascii_only: bool, content_type: str) -> None:
    model, body = data
    server.send(model, "data", encode(body, ascii_only), content_type)


KNOWN = "a request id this model answered"
known_feedback = st.fixed_dictionaries(
    {"request_id": st.just(KNOWN), "label": st.sampled_from(["ham", "spam"])}, optional={"index": st.just(0)}
)
odd_feedback = st.fixed_dictionaries(
    {},
    optional={
        "request_id": st.just(KNOWN) | texts | json_values,
        "label": st.sampled_from(["ham", "spam"]) | texts | json_values,
        "index": st.none() | st.integers(0, 2) | st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "extra": scalars,
    },
)


@given(
    model=st.sampled_from(list(MODELS)),
    body=st.one_of(known_feedback, known_feedback, odd_feedback, json_values),
    pick=st.integers(min_value=0),
    ascii_only=st.booleans(),
    content_type=content_types,
)
@seed(SEED)
@FUZZ
def test_feedback_bodies(server: Server, model: str, body: Any, pick: int, ascii_only: bool, content_type: str) -> None:
    known = server.request_ids[model]
    if isinstance(body, dict) and body.get("request_id") == KNOWN and known:
        body = {**body, "request_id": known[pick % len(known)]}  # a logged prediction of this model
    server.send(model, "feedback", encode(body, ascii_only), content_type)


SURROGATE = "x\ud800y"
INF, NAN = float("inf"), float("nan")  # json.dumps writes them as Infinity and NaN, which JSON does not have
HOUSE = VALID["house"]
KNOWN_BAD: list[tuple[str, str, Any]] = [
    # what issue 12 found, and its neighbours, on every route they reach
    *[(model, "predict", {"inputs": [SURROGATE]}) for model in ("spam", "cars", "embed")],
    *[(model, "predict", {"inputs": [TOO_LONG]}) for model in ("spam", "cars", "embed")],
    *[(model, "predict", {"inputs": [value]}) for model in ("spam", "embed") for value in ("\x00", "\u2028", INF)],
    ("spam", "predict", {"inputs": ["ok"], "top_k": NAN}),
    ("spam", "predict", {"inputs": ["ok"] * (SERVE["max_inputs"] + 1)}),
    ("house", "predict", {"inputs": [{**HOUSE, "ocean_proximity": SURROGATE}]}),
    ("house", "predict", {"inputs": [{**HOUSE, "median_income": INF}]}),
    ("house", "predict", {"inputs": [{**HOUSE, "median_income": [1, 2]}]}),
    ("house", "predict", {"inputs": [{**HOUSE, "ocean_proximity": TOO_LONG}]}),
    ("house", "predict", {"inputs": [{**HOUSE, TOO_LONG: 1}]}),
    ("spam", "data", {"rows": [{"text": SURROGATE, "label": "ham"}]}),
    ("spam", "data", {"rows": [{"text": "ok", "label": SURROGATE}]}),
    ("spam", "data", {"rows": [{"text": INF, "label": "ham"}]}),
    ("spam", "data", {"rows": [{"text": ["a", "list"], "label": "ham"}]}),
    ("spam", "data", {"rows": [{"text": {"an": "object"}, "label": "ham"}]}),
    ("spam", "data", {"rows": [{"text": "\x00", "label": "ham"}]}),
    ("house", "data", {"rows": [{**HOUSE, "median_house_value": INF}]}),
    ("house", "data", {"rows": [{**HOUSE, "median_house_value": NAN}]}),
    ("cars", "data", {"rows": [{"Month": SURROGATE, "Sales": 1}]}),
    ("embed", "data", {"rows": [{"text": SURROGATE, "text_pair": "b", "score": 1}]}),
    ("spam", "feedback", {"request_id": SURROGATE, "label": "ham"}),
    ("spam", "feedback", {"request_id": KNOWN, "label": SURROGATE}),
    ("spam", "feedback", {"request_id": KNOWN, "label": "\x00"}),
    ("spam", "feedback", {"request_id": KNOWN, "label": "ham", "index": 2**70}),
    ("spam", "feedback", {"request_id": KNOWN, "label": "ham", "index": INF}),
    ("house", "feedback", {"request_id": KNOWN, "label": "1"}),
]


@pytest.mark.parametrize("ascii_only", [True, False], ids=["escaped", "raw"])
def test_the_known_bad_bodies(server: Server, ascii_only: bool) -> None:
    """Every body of KNOWN_BAD, written with escapes (\\ud800) and raw (the bytes ED A0 80, not UTF-8)."""
    for model, route, body in KNOWN_BAD:
        known = server.request_ids[model]
        if isinstance(body, dict) and body.get("request_id") == KNOWN:
            body = {**body, "request_id": known[-1] if known else "none"}
        if route == "predict":
            route = get_codec(MODELS[model]["task"]).endpoint
        server.send(model, route, encode(body, ascii_only), "application/json")


def test_the_fuzzers_ran(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """Says how many requests the fuzzers above sent (run after them, in file order)."""
    total = sum(TALLY.values())
    with capsys.disabled():
        print(f"\nfuzzed requests: {total} ({', '.join(f'{k}: {v}' for k, v in sorted(TALLY.items()))})")
    assert total >= 6 * EXAMPLES + 2 * len(KNOWN_BAD), TALLY
