"""The LLM client against real HTTP servers on 127.0.0.1: a scripted OpenAI-compatible server (retries, backoff,
Retry-After, timeouts, labels outside the set, servers without JSON schema, the concurrency limit, the spend cap)
and llama.cpp's server with SmolLM2 (constrained labels from a real model); the cache and the spend live in a real
registry (SQLite, and PostgreSQL where the test says)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from local_llm import local_llm
from processes import free_port
from scripted_llm import COMPLETION_TOKENS, PROMPT_TOKENS, Script, scripted_llm
from shoal.llm.client import Answer, LLMClient
from shoal.llm.errors import LLMAnswerInvalid, LLMError, LLMUnavailable
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt
from shoal.llm.spec import LLMEndpoint
from shoal.llm.synth import ExamplesPrompt
from shoal.registry import Registry
from shoal.registry import schema as t
from shoal.registry.llm_store import LLMStore

SPAM = Prompt(DEFAULT_PROMPT, ("ham", "spam"))
DAY = date(2026, 1, 1)


@pytest.fixture
def script() -> Iterator[Script]:
    with scripted_llm() as script:
        yield script


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "artifacts")
    yield registry
    registry.close()


def client(registry: Registry, url: str, today: Callable[[], date] = lambda: DAY, **spec: Any) -> LLMClient:
    endpoint = LLMEndpoint(base_url=url, **{"model": "scripted", "backoff_s": 0.01, **spec})
    return LLMClient("scripted", endpoint, LLMStore(registry), today=today)


def ask(llm: LLMClient, texts: list[str], prompt: Prompt = SPAM) -> list[Answer | LLMError]:
    """`llm.classify(texts, prompt)` in an event loop of its own (the client's connections close with it)."""
    return run(llm, llm.classify(texts, prompt))


def run(llm: LLMClient, work: Coroutine[Any, Any, Any]) -> Any:
    async def main() -> Any:
        try:
            return await work
        finally:
            await llm.aclose()

    return asyncio.run(main())


def labels(results: list[Answer | LLMError]) -> list[str]:
    return [r.label if isinstance(r, Answer) else type(r).__name__ for r in results]


def test_labels_are_asked_with_a_schema_enum_and_each_text_once(script: Script, registry: Registry) -> None:
    script.label = lambda text: "spam" if "win" in text else "ham"
    llm = client(registry, script.url, price_in=2.0, price_out=10.0)
    assert labels(ask(llm, ["win a prize", "see you at 6", "win a prize"])) == ["spam", "ham", "spam"]
    assert sorted(script.texts()) == ["see you at 6", "win a prize"]  # the repeated text was asked once
    body = script.requests[0].body
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["properties"]["label"]["enum"] == ["ham", "spam"]
    assert body["temperature"] == 0 and body["seed"] == 0 and body["model"] == "scripted"
    assert body["messages"][0]["role"] == "system" and '"ham", "spam"' in body["messages"][0]["content"]
    cost = (PROMPT_TOKENS * 2.0 + COMPLETION_TOKENS * 10.0) / 1e6
    assert (llm.outcomes["ok"], llm.tokens_in, llm.tokens_out) == (2, 2 * PROMPT_TOKENS, 2 * COMPLETION_TOKENS)
    assert llm.dollars == pytest.approx(2 * cost) and llm.expected_cost("any") == pytest.approx(cost)


def test_before_its_first_request_a_text_is_expected_to_cost_a_typical_request(registry: Registry) -> None:
    llm = client(registry, "http://127.0.0.1:9/v1", price_in=2.0, price_out=10.0)
    instruction = "x" * 400  # 100 tokens by the estimate
    assert llm.expected_cost(instruction) == pytest.approx(((100 + 64) * 2.0 + 16 * 10.0) / 1e6)


def test_the_cache_and_the_spend_live_in_the_registry_without_texts(
    script: Script, registry_url: str, tmp_path: Path
) -> None:
    registry = Registry(registry_url, tmp_path / "artifacts")
    try:
        texts = ["my secret text one", "my secret text two"]
        assert labels(ask(client(registry, script.url, price_in=1.0), texts)) == ["ham", "ham"]
        again = client(registry, script.url, price_in=1.0)  # another process: a new client on the same registry
        assert labels(ask(again, [*texts, "a third"])) == ["ham", "ham", "ham"]
        assert len(script.requests) == 3 and again.outcomes == {"cached": 2, "ok": 1}
        store = LLMStore(registry)
        spend = store.spend("scripted", "scripted", DAY)
        assert (spend.requests, spend.tokens_in, spend.dollars) == (3, 3 * PROMPT_TOKENS, pytest.approx(0.003))
        with registry.engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(select(t.llm_cache))]
        assert len(rows) == 3 and not [row for row in rows if any("secret" in str(value) for value in row)]
        # another prompt (or other labels) is another key
        assert labels(ask(client(registry, script.url), texts, Prompt("Spam or not? {labels}", ("ham", "spam")))) == [
            "ham",
            "ham",
        ]
        assert len(script.requests) == 5
    finally:
        registry.close()


def test_a_429_is_retried_after_its_retry_after(script: Script, registry: Registry) -> None:
    script.plan.append(("status", 429, {"Retry-After": "1"}))
    assert labels(ask(client(registry, script.url), ["hello"])) == ["ham"]
    first, second = script.requests
    assert second.at - first.at >= 1.0


def test_a_5xx_is_retried_with_exponential_backoff_then_fails(script: Script, registry: Registry) -> None:
    script.plan.extend([("status", 500, {}), ("status", 502, {})])
    assert labels(ask(client(registry, script.url, backoff_s=0.2), ["hello"])) == ["ham"]
    gaps = [b.at - a.at for a, b in zip(script.requests, script.requests[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4
    script.plan.extend([("status", 500, {})] * 2)
    llm = client(registry, script.url, retries=1)
    [failed] = ask(llm, ["again"])
    assert isinstance(failed, LLMUnavailable) and str(failed) == "endpoint scripted: HTTP 500 (after 2 attempt(s))"
    assert llm.outcomes == {"error": 1}


def test_a_retry_after_past_max_backoff_fails_at_once(script: Script, registry: Registry) -> None:
    script.plan.append(("status", 503, {"Retry-After": "120"}))
    [failed] = ask(client(registry, script.url), ["hello"])
    assert isinstance(failed, LLMUnavailable) and "Retry-After 120 s" in str(failed)
    assert len(script.requests) == 1


def test_a_slow_server_times_out_each_attempt(script: Script, registry: Registry) -> None:
    script.plan.extend([("hang",), ("hang",)])
    started = time.monotonic()
    [failed] = ask(client(registry, script.url, timeout_s=0.3, retries=1), ["hello"])
    assert isinstance(failed, LLMUnavailable) and "no answer within 0.3 s (after 2 attempt(s))" in str(failed)
    assert len(script.requests) == 2 and time.monotonic() - started < 5


def test_a_server_that_is_down(registry: Registry) -> None:
    llm = client(registry, f"http://127.0.0.1:{free_port()}/v1", retries=1)
    [failed] = ask(llm, ["hello"])
    assert isinstance(failed, LLMUnavailable) and "cannot reach http://127.0.0.1:" in str(failed)


def test_an_answer_outside_the_label_set_is_counted_never_used_nor_cached(script: Script, registry: Registry) -> None:
    script.plan.extend([("content", '{"label": "eggs"}'), ("content", "spam!"), ("content", "spam")])
    llm = client(registry, script.url, price_in=1.0, max_concurrency=1)  # the plan's answers in the texts' order
    results = ask(llm, ["one", "two", "three"])
    assert labels(results) == ["LLMAnswerInvalid", "LLMAnswerInvalid", "spam"]
    assert llm.outcomes == {"invalid": 2, "ok": 1}
    assert llm.dollars == pytest.approx(0.003)  # answered, so paid for
    assert "one" not in str(results[0]) and "eggs" not in str(results[0])  # neither the text nor the answer
    assert labels(ask(client(registry, script.url), ["one", "two", "three"])) == ["ham", "ham", "spam"]
    assert len(script.requests) == 5  # the invalid answers were asked again


def _kind(body: dict[str, Any]) -> str:
    return "grammar" if "grammar" in body else (body.get("response_format") or {"type": "text"})["type"]


@pytest.mark.parametrize(
    ("formats", "used"), [({"grammar"}, "grammar"), ({"json_object"}, "json_object"), ({"text"}, "text")]
)
def test_a_server_without_json_schema_gets_the_next_constraint(
    script: Script, registry: Registry, formats: set[str], used: str
) -> None:
    script.formats = formats
    llm = client(registry, script.url)

    async def one_then_another() -> list[list[Answer | LLMError]]:
        return [await llm.classify(["one"], SPAM), await llm.classify(["two"], SPAM)]

    assert [labels(answers) for answers in run(llm, one_then_another())] == [["ham"], ["ham"]]
    kinds = [_kind(seen.body) for seen in script.requests]
    steps = ["json_schema", "grammar", "json_object", "text"]
    assert kinds == [*steps[: steps.index(used) + 1], used] and llm.output == used


def test_the_grammar_admits_exactly_the_labels(script: Script, registry: Registry) -> None:
    grammar = Prompt("x", ("ham", 'say "hi"', "back\\slash", "é")).grammar
    assert grammar == (
        r'root ::= "{\"label\": " ( "\"ham\"" | "\"say \\\"hi\\\"\"" | "\"back\\\\slash\"" | "\"é\"" ) "}"' + "\n"
    )
    assert labels(ask(client(registry, script.url, output="grammar"), ["one"])) == ["ham"]
    [body] = [seen.body for seen in script.requests]
    assert body["grammar"] == SPAM.grammar and "response_format" not in body


def test_an_error_that_echoes_the_request_does_not_step_the_constraint_down(script: Script, registry: Registry) -> None:
    """FastAPI-style servers repeat the request in a validation error: its `response_format` is no complaint."""
    body = {"model": "scripted", "response_format": {"type": "json_schema"}, "seed": "x"}
    echo = {"detail": [{"loc": ["body", "seed"], "msg": "Input should be a valid integer", "input": body}]}
    script.plan.append(("status", 422, {}, echo))
    llm = client(registry, script.url, max_concurrency=1)
    results = ask(llm, ["refused", "fine"])
    assert isinstance(results[0], LLMUnavailable) and labels(results[1:]) == ["ham"]
    assert llm.output == "json_schema"
    named = {"detail": [{"loc": ["body", "response_format"], "msg": "json_schema is not supported", "input": body}]}
    script.plan.append(("status", 422, {}, named))
    assert labels(ask(llm, ["third"])) == ["ham"] and llm.output == "grammar"  # an error that names it steps down


def test_a_400_that_does_not_name_the_constraint_fails_only_its_text(script: Script, registry: Registry) -> None:
    script.plan.append(("status", 400, {}))  # e.g. a text too long for the model's context
    llm = client(registry, script.url, max_concurrency=1)
    results = ask(llm, ["too long", "fine"])
    assert isinstance(results[0], LLMUnavailable) and "refused the request: HTTP 400" in str(results[0])
    assert labels(results[1:]) == ["ham"] and llm.output == "json_schema"
    assert [_kind(seen.body) for seen in script.requests] == ["json_schema", "json_schema"]


def test_a_declared_output_is_never_stepped_down(script: Script, registry: Registry) -> None:
    script.formats = {"json_object"}
    [failed] = ask(client(registry, script.url, output="json_schema"), ["one"])
    assert isinstance(failed, LLMUnavailable) and "refused the request: HTTP 400" in str(failed)
    assert len(script.requests) == 1


def test_the_spend_cap_per_utc_day_is_shared_by_every_client(script: Script, registry: Registry) -> None:
    today = [DAY]
    spec = {"price_in": 1.0, "max_cost_per_day": 0.0025, "max_concurrency": 1}  # $0.001 a request
    llm = client(registry, script.url, lambda: today[0], **spec)
    results = ask(llm, [f"text {i}" for i in range(5)])
    assert labels(results) == ["ham"] * 3 + ["SpendCapReached"] * 2
    assert "$0.0030 of its $0.0025 for 2026-01-01 (UTC) is spent" in str(results[-1])
    assert llm.outcomes == {"ok": 3, "capped": 2}
    other = client(registry, script.url, lambda: today[0], **spec)  # another server of the fleet
    assert labels(ask(other, ["text 9", "text 0"])) == ["SpendCapReached", "ham"]  # the cache is never capped
    assert len(script.requests) == 3
    today[0] = date(2026, 1, 2)
    assert labels(ask(client(registry, script.url, lambda: today[0], **spec), ["text 9"])) == ["ham"]


def test_no_more_requests_are_in_flight_than_max_concurrency(script: Script, registry: Registry) -> None:
    script.hold, script.hold_s = 3, 0.3  # a third request in flight would be let through at once
    llm = client(registry, script.url, max_concurrency=2)
    assert labels(ask(llm, [f"text {i}" for i in range(6)])) == ["ham"] * 6
    assert script.max_in_flight == 2


def test_the_key_is_sent_but_never_logged_nor_stored(
    script: Script,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("SCRIPTED_KEY", raising=False)
    llm = client(registry, script.url, api_key_env="SCRIPTED_KEY")
    [failed] = ask(llm, ["hello"])
    assert isinstance(failed, LLMUnavailable) and "SCRIPTED_KEY (its API key) is not set" in str(failed)
    assert script.requests == []
    monkeypatch.setenv("SCRIPTED_KEY", "sk-very-secret-1234")
    script.plan.append(("status", 401, {}))
    [refused] = ask(client(registry, script.url, api_key_env="SCRIPTED_KEY"), ["hello"])
    assert str(refused) == "endpoint scripted refused the request: HTTP 401 (check the key in $SCRIPTED_KEY)"
    assert labels(ask(client(registry, script.url, api_key_env="SCRIPTED_KEY"), ["hello"])) == ["ham"]
    assert [seen.authorization for seen in script.requests] == ["Bearer sk-very-secret-1234"] * 2
    stored = b"".join(path.read_bytes() for path in tmp_path.rglob("registry.db*"))
    assert b"sk-very-secret" not in stored and "sk-very-secret" not in caplog.text


def test_the_prompt_parses_answers_strictly() -> None:
    assert SPAM.parse(' {"label": "spam"} ') == "spam" and SPAM.parse("ham\n") == "ham"
    for answer in ['{"label": "Spam"}', "spam.", '["spam"]', '{"answer": "spam"}', None, "eggs"]:
        with pytest.raises(LLMAnswerInvalid):
            SPAM.parse(answer)
    assert Prompt("Pick one.", ("a", "b")).system == 'Pick one.\nThe labels: "a", "b".'


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_llm(tmp_path_factory.mktemp("llm")) as url:
        yield url


def test_a_real_local_llm_answers_only_labels_of_the_set(smollm2: str, registry: Registry) -> None:
    intents = Prompt(DEFAULT_PROMPT, ("card_arrival", "card_linking", "exchange_rate", "lost_or_stolen_card"))
    texts = ["my card has not arrived yet", "what is the euro rate today", "someone stole my card", "hello there"]
    llm = client(registry, smollm2, model="smollm2", price_in=0.1, price_out=0.2, timeout_s=120)
    first = ask(llm, texts, intents)
    assert all(isinstance(answer, Answer) and answer.label in intents.labels for answer in first), first
    assert llm.output == "json_schema" and llm.outcomes == {"ok": len(texts)}  # the schema was accepted
    assert llm.tokens_in > 50 * len(texts) and llm.tokens_out > 0 and llm.dollars > 0
    again = client(registry, smollm2, model="smollm2")
    assert labels(ask(again, texts, intents)) == labels(first) and again.outcomes == {"cached": len(texts)}


def test_a_real_local_llm_held_to_the_grammar_answers_only_labels(smollm2: str, registry: Registry) -> None:
    """llama.cpp's `grammar` field, the step below json_schema: the answer is one of the labels, as JSON."""
    intents = Prompt(DEFAULT_PROMPT, ("card_arrival", 'say "hi"', "exchange_rate"))
    llm = client(registry, smollm2, model="smollm2", output="grammar", timeout_s=120)
    answers = ask(llm, ["my card has not arrived yet", "what is the euro rate today", "hello there"], intents)
    assert all(isinstance(answer, Answer) and answer.label in intents.labels for answer in answers), answers
    assert llm.outcomes == {"ok": 3}


def test_a_real_local_llm_held_to_the_examples_grammar_writes_at_most_n_texts(smollm2: str, registry: Registry) -> None:
    """synth's request on a llama.cpp server without json_schema: 1 to n JSON strings of at most max_chars each."""
    asking = ExamplesPrompt(3, 60)
    assert asking.grammar.count('", " text') == 2 and "char{0,60}" in asking.grammar
    llm = client(registry, smollm2, model="smollm2", output="grammar", timeout_s=120)
    [answer] = ask(llm, ["label: refund. Examples: I want my money back"], asking)
    assert isinstance(answer, Answer), answer
    examples = json.loads(answer.label)
    assert 1 <= len(examples) <= 3 and all(isinstance(e, str) and len(e) <= 60 for e in examples)
