"""The soak benchmark's clients: threads sending a mix of valid and invalid requests, every outcome counted.

Each client thread keeps one connection (httpx) and, until stopped, picks a request kind by weight. Every request
is recorded with its class (valid / invalid), kind, answer (the HTTP status, or the client-side error: connection
errors, timeouts, an unexpected 2xx body) and latency; a thread that dies or does not finish is counted too.

Valid: predictions (1-4 texts from the model's held-out rows, sometimes top_k), feedback with the true label for
a request id an earlier prediction returned, and reads (models, model detail, history, readyz, healthz, metrics).
Invalid: bad JSON, bytes that are not UTF-8, wrong types, empty inputs, unknown models, wrong endpoint or
method, bodies over the server's limit (declared or chunked), a 200,000-character text, the wrong content
type, NUL characters and lone surrogates in texts, labels and data rows, state changes without (or with a
wrong) token, feedback for bogus ids, and malformed data rows. Invalid predictions carry an `X-Request-ID`
starting with `x-`, so their prediction-log rows can be told from the valid ones'.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from soak_fleet import ModelData

VALID, INVALID = "valid", "invalid"
INVALID_ID_PREFIX = "x-"
MAX_BODY_BYTES = 1_048_576  # workspace.server.max_body_bytes (the default)
LONG_TEXT_CHARS = 200_000


@dataclass(frozen=True)
class Outcome:
    cls: str  # VALID or INVALID
    kind: str
    answer: str  # "200", "422", ... or the client-side error ("ConnectTimeout", "bad body: ...")
    seconds: float
    at: float  # time.monotonic() at the answer
    client: int  # which client thread (connection) sent it; -1 for the operator
    inputs: int = 0  # inputs of a predict request (to account for the prediction log)
    expected: tuple[str, ...] = ()  # an invalid request's answers issue 12 expects


@dataclass(frozen=True)
class Request:
    cls: str
    kind: str
    method: str
    path: str
    body: bytes | Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    inputs: int = 0
    on_ok: Callable[[dict[str, Any]], str | None] | None = None  # checks a 2xx body; returns a problem or None
    expected: tuple[str, ...] = ()  # an invalid request's answers issue 12 expects


@dataclass(frozen=True)
class Logged:
    """A valid prediction the server answered: what feedback can name later."""

    model: str
    request_id: str
    labels: list[str]  # the true label of each input


class Tally:
    """Every outcome, from every thread (appends are atomic in CPython; read after the threads stopped)."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.dead: list[str] = []  # client threads that died or did not finish

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate travels as the escape \ud800


JSON = {"content-type": "application/json"}


class Traffic:
    """What a client sends: request builders over the fleet's data."""

    def __init__(self, models: list[ModelData], token: str) -> None:
        self.models = models
        self.token = token
        self.auth = {"authorization": f"Bearer {token}"}
        self.logged: deque[Logged] = deque(maxlen=20_000)  # popped once each: feedback never names an id twice
        self.valid: list[tuple[float, Callable[[random.Random], Request]]] = [
            (80, self.predict),
            (5, self.feedback),
            (3, self.read),
        ]
        self.invalid: list[tuple[float, Callable[[random.Random], Request]]] = [
            (1.5, self.bad_json),
            (1.5, self.wrong_types),
            (1.0, self.empty_inputs),
            (1.0, self.unknown_model),
            (0.5, self.wrong_endpoint),
            (0.3, self.over_long_body),
            (0.1, self.long_text),
            (1.0, self.wrong_content_type),
            (1.0, self.nul_text),
            (1.0, self.lone_surrogate),
            (1.5, self.missing_token),
            (1.0, self.bogus_feedback),
            (1.0, self.bad_data),
        ]

    def pick(self, rng: random.Random) -> Request:
        kinds = self.valid + self.invalid
        build = rng.choices([b for _, b in kinds], weights=[w for w, _ in kinds])[0]
        return build(rng)

    # -- valid ------------------------------------------------------------------------------------------
    def predict(self, rng: random.Random) -> Request:
        m = rng.choice(self.models)
        rows = m.pool.sample(n=rng.choice([1, 1, 1, 2, 4]), random_state=rng.randrange(2**31))
        texts, labels = rows["text"].tolist(), rows["label"].tolist()
        body: dict[str, Any] = {"inputs": texts}
        if rng.random() < 0.2:
            body["top_k"] = 2

        def check(answer: dict[str, Any]) -> str | None:
            if len(answer.get("predictions", [])) != len(texts) or not isinstance(answer.get("version"), int):
                return "bad body: not one prediction per input"
            self.logged.append(Logged(m.name, str(answer["request_id"]), labels))
            return None

        return Request(VALID, "predict", "POST", f"/v1/models/{m.name}/predict", _json(body), JSON, len(texts), check)

    def feedback(self, rng: random.Random) -> Request:
        try:
            logged = self.logged.popleft()
        except IndexError:
            return self.predict(rng)
        index = rng.randrange(len(logged.labels))
        body: dict[str, Any] = {"request_id": logged.request_id, "label": logged.labels[index]}
        if len(logged.labels) > 1:
            body["index"] = index
        path = f"/v1/models/{logged.model}/feedback"
        return Request(VALID, "feedback", "POST", path, _json(body), {**JSON, **self.auth})

    def read(self, rng: random.Random) -> Request:
        m = rng.choice(self.models).name
        path = rng.choice(
            ["/v1/models", f"/v1/models/{m}", f"/v1/models/{m}/history?limit=20", "/readyz", "/healthz", "/metrics"]
        )
        return Request(VALID, "read " + path.split("?")[0].replace(m, "{name}"), "GET", path)

    # -- invalid ----------------------------------------------------------------------------------------
    def _bad_predict(
        self,
        kind: str,
        rng: random.Random,
        body: bytes | Iterator[bytes],
        expected: tuple[str, ...] = ("422",),
        inputs: int = 1,
        **headers: str,
    ) -> Request:
        m = rng.choice(self.models).name
        request_id = f"{INVALID_ID_PREFIX}{uuid.uuid4().hex}"
        merged = {**JSON, "x-request-id": request_id, **headers}
        return Request(INVALID, kind, "POST", f"/v1/models/{m}/predict", body, merged, inputs, expected=expected)

    def _text(self, rng: random.Random) -> str:
        return str(rng.choice(self.models).pool["text"].iloc[rng.randrange(100)])

    def bad_json(self, rng: random.Random) -> Request:
        body = rng.choice([b'{"inputs": ["unterminated', b"", b"inputs=hello", b'{"inputs": ["\xff\xfe broken"]}'])
        return self._bad_predict("bad JSON or not UTF-8", rng, body, ("400", "422"))

    def wrong_types(self, rng: random.Random) -> Request:
        text = self._text(rng)
        body = rng.choice(
            [
                {"inputs": [1, 2]},
                {"inputs": text},
                {"inputs": [[text]]},
                {"inputs": [None]},
                {"inputs": [{"text": text}]},
                {"inputs": [text], "top_k": "three"},
                {"inputs": [text], "top_k": 0},
                {"inputs": [text], "top_k": 1.5},
                {"inputs": [text], "unknown": 1},
                [text],
            ]
        )
        return self._bad_predict("wrong types", rng, _json(body))

    def empty_inputs(self, rng: random.Random) -> Request:
        body = rng.choice([{"inputs": []}, {}, {"inputs": [""]}, {"inputs": None}])
        return self._bad_predict("empty inputs", rng, _json(body))

    def unknown_model(self, rng: random.Random) -> Request:
        name = rng.choice(["no-such-model", "UPPER", "a" * 300])
        target = rng.choice(["predict", "feedback", "data"])
        body = {"predict": {"inputs": ["x"]}, "feedback": {"request_id": "r", "label": "x"}}.get(
            target, {"rows": [{"text": "x", "label": "y"}]}
        )
        return Request(
            INVALID,
            "unknown model",
            "POST",
            f"/v1/models/{name}/{target}",
            _json(body),
            {**JSON, **self.auth},
            expected=("404",),
        )

    def wrong_endpoint(self, rng: random.Random) -> Request:
        m = rng.choice(self.models).name
        if rng.random() < 0.5:
            return Request(
                INVALID,
                "wrong endpoint or method",
                "POST",
                f"/v1/models/{m}/embed",
                _json({"inputs": ["x"]}),
                JSON,
                expected=("404", "405", "422"),
            )
        return Request(INVALID, "wrong endpoint or method", "GET", f"/v1/models/{m}/predict", expected=("405",))

    def over_long_body(self, rng: random.Random) -> Request:
        """Over `max_body_bytes`: declared by Content-Length, or chunked (no length) to predict, data or feedback."""
        m = rng.choice(self.models).name
        filler = "a" * (MAX_BODY_BYTES + 1024)
        target = rng.choice(["predict", "data", "feedback"])
        body = {
            "predict": {"inputs": [filler]},
            "data": {"rows": [{"text": filler, "label": "x"}]},
            "feedback": {"request_id": "r", "label": filler},
        }[target]
        raw = _json(body)
        chunked = rng.random() < 0.5
        content: bytes | Iterator[bytes] = (
            iter([raw[i : i + 65536] for i in range(0, len(raw), 65536)]) if chunked else raw
        )
        kind = f"over-long body ({'chunked' if chunked else 'declared'})"
        return Request(
            INVALID, kind, "POST", f"/v1/models/{m}/{target}", content, {**JSON, **self.auth}, expected=("413",)
        )

    def long_text(self, rng: random.Random) -> Request:
        return self._bad_predict(
            f"{LONG_TEXT_CHARS:,}-character text",
            rng,
            _json({"inputs": ["word " * (LONG_TEXT_CHARS // 5)]}),
            ("413", "422"),
        )

    def wrong_content_type(self, rng: random.Random) -> Request:
        kind = "wrong content-type"
        ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded", "application/xml"])
        if rng.random() < 0.7:
            return self._bad_predict(
                kind, rng, _json({"inputs": [self._text(rng)]}), ("415",), **{"content-type": ctype}
            )
        m = rng.choice(self.models)
        body = _json({"rows": [{"text": "wrong content type", "label": m.labels[0]}]})
        return Request(
            INVALID,
            kind,
            "POST",
            f"/v1/models/{m.name}/data",
            body,
            {"content-type": ctype, **self.auth},
            expected=("415",),
        )

    def nul_text(self, rng: random.Random) -> Request:
        return self._special("NUL in text", "poison \u0000 here", rng, ("200", "404", "422"))

    def lone_surrogate(self, rng: random.Random) -> Request:
        return self._special("lone surrogate in text", "x\ud800y", rng, ("404", "422"))

    def _special(self, kind: str, text: str, rng: random.Random, expected: tuple[str, ...]) -> Request:
        """`text` in a prediction, a data row or a feedback label."""
        where = rng.choice(["predict", "predict", "data", "feedback"])
        if where == "predict":
            return self._bad_predict(kind, rng, _json({"inputs": [text, self._text(rng)]}), expected, inputs=2)
        m = rng.choice(self.models)
        if where == "data":
            body = _json({"rows": [{"text": text, "label": m.labels[0]}]})
        else:
            body = _json({"request_id": f"{INVALID_ID_PREFIX}none", "label": text})
        return Request(
            INVALID, kind, "POST", f"/v1/models/{m.name}/{where}", body, {**JSON, **self.auth}, expected=expected
        )

    def missing_token(self, rng: random.Random) -> Request:
        m = rng.choice(self.models)
        path, body = rng.choice(
            [
                (f"/v1/models/{m.name}/data", {"rows": [{"text": "no token", "label": m.labels[0]}]}),
                (f"/v1/models/{m.name}/feedback", {"request_id": "r", "label": m.labels[0]}),
                ("/v1/reload", {}),
            ]
        )
        auth = rng.choice([{}, {"authorization": "Bearer wrong-token"}, {"authorization": self.token}])
        return Request(
            INVALID, "missing or wrong token", "POST", path, _json(body), {**JSON, **auth}, expected=("401",)
        )

    def bogus_feedback(self, rng: random.Random) -> Request:
        m = rng.choice(self.models)
        body = rng.choice(
            [
                {"request_id": f"{INVALID_ID_PREFIX}{uuid.uuid4().hex}", "label": m.labels[0]},
                {"request_id": "", "label": m.labels[0]},
                {"request_id": "r" * 500, "label": m.labels[0]},
                {"request_id": 12, "label": m.labels[0]},
                {"request_id": "r", "label": ""},
                {"request_id": "r", "label": m.labels[0], "index": -1},
            ]
        )
        return Request(
            INVALID,
            "bogus feedback",
            "POST",
            f"/v1/models/{m.name}/feedback",
            _json(body),
            {**JSON, **self.auth},
            expected=("404", "422"),
        )

    def bad_data(self, rng: random.Random) -> Request:
        m = rng.choice(self.models)
        label = m.labels[0]
        body = rng.choice(
            [
                {"rows": []},
                {"rows": [{"text": 5, "label": label}]},
                {"rows": [{"text": ["a", "list"], "label": label}]},
                {"rows": [{"text": {"an": "object"}, "label": label}]},
                {"rows": [{"text": True, "label": label}]},
                {"rows": [{"text": "no label column"}]},
                {"rows": [{"text": "", "label": label}]},
                {"rows": [{"text": "x", "label": label}], "split": "sideways"},
                {"rows": "not a list"},
            ]
        )
        return Request(
            INVALID,
            "bad data rows",
            "POST",
            f"/v1/models/{m.name}/data",
            _json(body),
            {**JSON, **self.auth},
            expected=("422",),
        )


def send(client: httpx.Client, request: Request, index: int = -1) -> Outcome:
    """One request; a transport error or a 2xx body that fails `on_ok` is an answer too."""
    started = time.perf_counter()
    try:
        response = client.request(request.method, request.path, content=request.body, headers=request.headers)
    except httpx.HTTPError as error:  # connection refused or reset, timeouts, protocol errors
        answer = type(error).__name__
    else:
        answer = str(response.status_code)
        if response.is_success and request.on_ok is not None:
            try:
                answer = request.on_ok(response.json()) or answer
            except ValueError:
                answer = "bad body: not JSON"
    seconds = time.perf_counter() - started
    return Outcome(
        request.cls, request.kind, answer, seconds, time.monotonic(), index, request.inputs, request.expected
    )


class Clients:
    """`with Clients(url, traffic, n, seed, timeout) as clients:` — n threads send `traffic` until the block ends;
    then each is joined with a timeout and a thread that died or did not finish is counted in `tally.dead`."""

    def __init__(self, url: str, traffic: Traffic, clients: int, seed: int, timeout_s: float) -> None:
        self.url, self.traffic, self.timeout_s = url, traffic, timeout_s
        self.tally = Tally()
        self._stop = threading.Event()
        self._finished: set[int] = set()
        self._died: set[int] = set()
        self._threads = [
            threading.Thread(target=self._run, args=(i, seed + i), name=f"soak-client-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.timeout_s + 10
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        done = self._finished | self._died
        self.tally.dead += [f"client {i} did not finish" for i in range(len(self._threads)) if i not in done]

    def _run(self, index: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
                while not self._stop.is_set():
                    self.tally.add(send(client, self.traffic.pick(rng), index))
        except Exception as error:  # counted: the thread's death shows in tally.dead, with its cause here
            self.tally.dead.append(f"client {index} died: {type(error).__name__}: {error}")
            self._died.add(index)
            return
        self._finished.add(index)
