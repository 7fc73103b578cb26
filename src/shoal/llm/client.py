"""The async client of one OpenAI-compatible endpoint (`POST {base_url}/chat/completions`), for classification.

`classify(texts, prompt)` answers each text with a label of the prompt's set, or with the `LLMError` that kept it
from one; it never raises for one input's failure. Per text:

1. the response cache (registry, keyed by endpoint, model, prompt hash and input hash): a hit costs nothing;
2. at most `max_concurrency` requests in flight (a semaphore, held through the retries' waits);
3. the daily spend cap: once this UTC day's spend of the endpoint's model (every process, from the registry) reaches
   `max_cost_per_day`, nothing more is sent (`SpendCapReached`); the requests in flight may pass it by at most
   `max_concurrency` requests;
4. the request, each attempt within `timeout_s`; a timeout, an unreachable server, 429 or 5xx is tried again up to
   `retries` times after `backoff_s`, doubled each time (up to `max_backoff_s`), or after the server's
   `Retry-After` on 429 and 503 (one longer than `max_backoff_s` fails at once). Another 4xx is not retried; with
   `output: auto`, a 400 or 422 whose error names the constraint (`response_format`, `json_schema`, `grammar`, ...)
   steps it down for every later request (json_schema → grammar → json_object → text); any other 400 fails only
   this text (a prompt too long for the model's context must not cost every later answer its constraint);
5. the answer parsed strictly (`Prompt.parse`, or another `Asking`'s): anything but a label is `LLMAnswerInvalid`.
   Its tokens and $ are added to the day's spend either way; a valid label is cached.

`outcomes` counts the texts by how they ended (ok, cached, invalid, error, capped); `tokens_in`, `tokens_out` and
`dollars` add up this process's uncached requests. The API key is read from its environment variable for each
request and sent only as the `Authorization` header; log lines and errors name the endpoint, never a key or a text.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shoal.llm.errors import LLMAnswerInvalid, LLMError, LLMUnavailable, SpendCapReached
from shoal.llm.prompt import Asking
from shoal.llm.spec import OUTPUTS, LLMEndpoint
from shoal.registry.llm_store import CacheEntry, LLMStore, cache_key

log = logging.getLogger("shoal.llm")

RETRIED = frozenset({429, 500, 502, 503, 504})  # worth another attempt
STEP_DOWN = frozenset({400, 422})  # how servers refuse a response_format they lack
ASSUMED_TEXT_TOKENS, ASSUMED_ANSWER_TOKENS = 64, 16  # a request's size before any was measured
#: words of an error that blames the answer's constraint (OpenAI, vLLM, llama.cpp, Ollama phrase it differently)
CONSTRAINT_WORDS = re.compile(r"response_format|json_schema|json_object|grammar|schema|structured", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """A text's label, whether it came from the cache, and what it cost ($)."""

    label: str
    cached: bool
    dollars: float


class _Refused(Exception):
    """The server answered a status that another attempt would not change; `blames_constraint`: its error names
    the answer's constraint."""

    def __init__(self, status: int, blames_constraint: bool) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.blames_constraint = status, blames_constraint


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a `Retry-After` header asks to wait (a number or an HTTP date), None without a valid one."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _error_message(response: httpx.Response) -> str:
    """What an error reply says, without any echo of the request: OpenAI's `error.message`, FastAPI's `detail`
    (each entry's `loc` and `msg`, never its `input`, which repeats the request's `response_format`), else the
    text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000]
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    error = body.get("error")
    parts.append(str(error.get("message", "")) if isinstance(error, dict) else str(error or ""))
    detail = body.get("detail")
    if isinstance(detail, list):
        parts += [f"{d.get('loc', '')} {d.get('msg', '')}" for d in detail if isinstance(d, dict)]
    elif detail is not None:
        parts.append(str(detail))
    parts.append(str(body.get("message") or ""))
    return " ".join(parts)[:2000]


def _tokens(text: str) -> int:
    """A token count estimated from characters, for servers whose reply has no `usage`."""
    return math.ceil(len(text) / 4)


class LLMClient:
    """One endpoint of the fleet file's `llm:` section, in one process (one event loop)."""

    def __init__(
        self,
        name: str,
        spec: LLMEndpoint,
        store: LLMStore,
        *,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.name, self.spec, self.store, self.today = name, spec, store, today
        self.output = OUTPUTS[0] if spec.output == "auto" else spec.output  # the constraint asked for now
        self.outcomes: Counter[str] = Counter()
        self.tokens_in = self.tokens_out = self.sent = 0
        self.dollars = 0.0
        self._slots = asyncio.Semaphore(spec.max_concurrency)
        self._http: httpx.AsyncClient | None = None

    def expected_cost(self, instruction: str) -> float:
        """What one uncached text is expected to cost ($): the mean of this process's requests so far; before the
        first, a request of `instruction`, a text of `ASSUMED_TEXT_TOKENS` and an answer of `ASSUMED_ANSWER_TOKENS`
        (so a cascade's spend cap holds from its first deferral)."""
        if self.sent:
            return self.dollars / self.sent
        return self.spec.cost(_tokens(instruction) + ASSUMED_TEXT_TOKENS, ASSUMED_ANSWER_TOKENS)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def classify(self, texts: list[str], prompt: Asking) -> list[Answer | LLMError]:
        """Each text's label (or the error that kept it from one); a text given twice is asked once."""
        hashes = [hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() for text in texts]
        keys = [cache_key(self.name, self.spec.model, prompt.hash, digest) for digest in hashes]
        try:
            found = await asyncio.to_thread(self.store.cached, keys)
        except Exception as error:  # the registry is down: answer uncached
            log.error("endpoint %s: cannot read the LLM cache (%s)", self.name, type(error).__name__)
            found = {}
        first: dict[str, int] = {}  # each key's first text, in order (under the limit, requests start in this order)
        for i, key in enumerate(keys):
            first.setdefault(key, i)

        async def one(i: int) -> Answer | LLMError:
            if keys[i] in found:
                self.outcomes["cached"] += 1
                return Answer(found[keys[i]], True, 0.0)
            try:
                answer = await self._ask(texts[i], prompt, keys[i], hashes[i])
            except LLMError as error:
                self.outcomes[error.outcome] += 1
                return error
            self.outcomes["ok"] += 1
            return answer

        unique = await asyncio.gather(*(one(i) for i in first.values()))
        by_key = dict(zip(first, unique, strict=True))
        return [by_key[key] for key in keys]

    async def _ask(self, text: str, prompt: Asking, key: str, input_hash: str) -> Answer:
        async with self._slots:  # held until the spend is recorded: the next request's cap check sees it
            await self._check_cap()
            messages = prompt.messages(text)
            reply = await self._complete(messages, prompt)
            return await self._answer(reply, messages, prompt, key, input_hash)

    async def _answer(
        self, reply: dict[str, Any], messages: list[dict[str, str]], prompt: Asking, key: str, input_hash: str
    ) -> Answer:
        """The label of a reply, its tokens and $ added to this process's totals and the day's spend (and to the
        cache when valid)."""
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        tokens_in = int(usage.get("prompt_tokens") or _tokens("".join(m["content"] for m in messages)))
        tokens_out = int(usage.get("completion_tokens") or _tokens(content if isinstance(content, str) else ""))
        dollars = self.spec.cost(tokens_in, tokens_out)
        self.tokens_in, self.tokens_out = self.tokens_in + tokens_in, self.tokens_out + tokens_out
        self.dollars, self.sent = self.dollars + dollars, self.sent + 1
        invalid: LLMAnswerInvalid | None = None
        try:
            label = prompt.parse(content)
        except LLMAnswerInvalid as error:
            invalid = LLMAnswerInvalid(f"endpoint {self.name}: {error}")
        kept = None if invalid else CacheEntry(key, prompt.hash, input_hash, label)
        try:
            await asyncio.to_thread(
                self.store.record,
                self.name,
                self.spec.model,
                self.today(),
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                dollars=dollars,
                entry=kept,
            )
        except Exception as error:  # the answer stands; the spend of this process is still counted above
            log.error("endpoint %s: cannot record an answer's spend (%s)", self.name, type(error).__name__)
        if invalid:
            raise invalid
        return Answer(label, False, dollars)

    async def _check_cap(self) -> None:
        cap = self.spec.max_cost_per_day
        if cap is None:
            return
        day = self.today()
        try:
            spent = (await asyncio.to_thread(self.store.spend, self.name, self.spec.model, day)).dollars
        except Exception as error:
            raise LLMUnavailable(
                f"endpoint {self.name}: cannot read today's spend from the registry ({type(error).__name__})"
            ) from None
        if spent >= cap:
            raise SpendCapReached(
                f"endpoint {self.name}: ${spent:.4f} of its ${cap:g} for {day} (UTC) is spent; nothing more is sent "
                "until the next UTC day"
            )

    async def _complete(self, messages: list[dict[str, str]], prompt: Asking) -> dict[str, Any]:
        """The server's reply to the chat completion, with the strongest answer constraint it accepts."""
        while True:
            output = self.output
            body: dict[str, Any] = {
                "model": self.spec.model,
                "messages": messages,
                "temperature": self.spec.temperature,
                "max_tokens": prompt.max_tokens,
            }
            if self.spec.seed is not None:
                body["seed"] = self.spec.seed
            body.update(prompt.constraint(output))
            try:
                return await self._post(body)
            except _Refused as refused:
                stepping = refused.status in STEP_DOWN and refused.blames_constraint
                if self.spec.output != "auto" or output == OUTPUTS[-1] or not stepping:
                    hint = f" (check the key in ${self.spec.api_key_env})" if refused.status in (401, 403) else ""
                    raise LLMUnavailable(f"endpoint {self.name} refused the request: {refused}{hint}") from None
                if self.output == output:  # not stepped down by another request meanwhile
                    self.output = OUTPUTS[OUTPUTS.index(output) + 1]
                    log.warning(
                        "endpoint %s refused the answer constraint %s (%s); asking for %s from now on",
                        self.name,
                        output,
                        refused,
                        self.output,
                    )

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, with its retries; the reply's JSON object."""
        spec, url, headers = self.spec, f"{self.spec.base_url}/chat/completions", self._headers()
        if self._http is None:
            self._http = httpx.AsyncClient()  # the semaphore limits the requests in flight
        attempt = 0
        while True:
            wait = min(spec.backoff_s * 2**attempt, spec.max_backoff_s)
            try:
                async with asyncio.timeout(spec.timeout_s):
                    response = await self._http.post(url, json=body, headers=headers, timeout=spec.timeout_s)
            except (TimeoutError, httpx.TimeoutException):
                why = f"no answer within {spec.timeout_s:g} s"
            except httpx.HTTPError as error:
                why = f"cannot reach {spec.base_url} ({type(error).__name__})"
            else:
                if response.status_code == 200:
                    try:
                        reply = response.json()
                    except ValueError:
                        reply = None
                    if not isinstance(reply, dict):
                        raise LLMAnswerInvalid(f"endpoint {self.name}: the reply is not a JSON object")
                    return reply
                if response.status_code not in RETRIED:
                    raise _Refused(response.status_code, bool(CONSTRAINT_WORDS.search(_error_message(response))))
                why = f"HTTP {response.status_code}"
                asked = retry_after(response) if response.status_code in (429, 503) else None
                if asked is not None and asked > spec.max_backoff_s:
                    raise LLMUnavailable(
                        f"endpoint {self.name}: {why} with Retry-After {asked:g} s, longer than max_backoff_s"
                    )
                wait = wait if asked is None else asked
            if attempt >= spec.retries:
                raise LLMUnavailable(f"endpoint {self.name}: {why} (after {attempt + 1} attempt(s))")
            attempt += 1
            await asyncio.sleep(wait)

    def _headers(self) -> dict[str, str]:
        variable = self.spec.api_key_env
        if variable is None:
            return {}
        key = os.environ.get(variable)
        if not key:
            raise LLMUnavailable(f"endpoint {self.name}: the environment variable {variable} (its API key) is not set")
        return {"Authorization": f"Bearer {key}"}
