"""Concurrent client load for the zero-failure tests: every client error is counted — a non-2xx answer, a
connection error, a timeout, a body that is not the expected JSON, and a client thread that died or did not
finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

CLIENTS = 16
# the load was on at a swap: this many answers within SWAP_WINDOW_S before and after the new version's first
MIN_AROUND_SWAP, SWAP_WINDOW_S = 16, 0.5


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    version: int


class Load:
    """`with Load(url, body) as load:` — `clients` threads, each with its own connection, POST `body` to `url`
    until the block ends; then every thread is joined with a timeout."""

    def __init__(
        self,
        url: str,
        body: dict[str, Any],
        *,
        clients: int = CLIENTS,
        timeout_s: float = 10.0,
        version_of: Callable[[Any], int] = lambda answer: int(answer["version"]),
    ) -> None:
        self.url = url
        self.body = body
        self.timeout_s = timeout_s
        self.version_of = version_of  # the version that answered, read from a 200 answer's JSON
        self.failures: list[str] = []
        self.answers: list[list[Answer]] = [[] for _ in range(clients)]  # per client, in order
        self._all: list[Answer] = []  # every client's, in arrival order
        self._finished: set[int] = set()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"load-{i}", daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.timeout_s + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            unfinished = [i for i in range(len(self._threads)) if i not in self._finished]
            self.failures += [f"client {i} died or did not finish" for i in unfinished]

    def _client(self, index: int) -> None:
        with httpx.Client(timeout=self.timeout_s) as http:
            while not self._stop.is_set():
                try:
                    response = http.post(self.url, json=self.body)
                except httpx.HTTPError as error:  # connection refused or reset, timeouts, protocol errors
                    self._record_failure(f"client {index}: {type(error).__name__}: {error}")
                    continue
                if response.status_code != 200:
                    self._record_failure(f"client {index}: HTTP {response.status_code}: {response.text[:200]}")
                    continue
                answer = Answer(time.monotonic(), self.version_of(response.json()))
                with self._changed:
                    self.answers[index].append(answer)
                    self._all.append(answer)
                    self._changed.notify_all()
        with self._changed:
            self._finished.add(index)

    def _record_failure(self, failure: str) -> None:
        with self._changed:
            self.failures.append(failure)
            self._changed.notify_all()

    def all_answers(self) -> list[Answer]:
        with self._changed:
            return list(self._all)

    def wait(self, condition: Callable[[list[Answer]], bool], message: str, timeout_s: float) -> None:
        """Block until `condition(every answer so far, in arrival order)` holds (checked at each answer); fail
        after `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self._all), timeout=timeout_s):
                raise AssertionError(f"{message} within {timeout_s} s (failures so far: {self.failures[:5]})")

    def every_client_got(self, version: int, count: int) -> bool:
        """Each client has had at least `count` answers from `version` (call it inside `wait` or after the load)."""
        return all(sum(a.version == version for a in client) >= count for client in self.answers)

    def check_switch(self, old: int, new: int) -> float:
        """Each client saw `old` until it first saw `new`, then only `new` (no flip back), and the load was on at
        the switch: at least MIN_AROUND_SWAP answers, from both versions, within SWAP_WINDOW_S of the first answer
        from `new`. Returns when that first answer came."""
        for index, answers in enumerate(self.answers):
            versions = [a.version for a in answers]
            assert new in versions, f"client {index} never got an answer from v{new}"
            first = versions.index(new)
            assert set(versions[:first]) <= {old} and set(versions[first:]) == {new}, (index, versions)
        everything = self.all_answers()
        switched = min(a.at for a in everything if a.version == new)
        around = [a.version for a in everything if abs(a.at - switched) <= SWAP_WINDOW_S]
        assert len(around) >= MIN_AROUND_SWAP and {old, new} <= set(around), f"little load at the swap: {around}"
        return switched
