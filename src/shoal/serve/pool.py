"""The models a server answers: load, warm, hot-swap and release versions as the registry changes.

A background task polls `registry.production_versions()` every `poll_interval_s`. A new production version
is loaded beside the serving one in a thread (its artifact checksum verified), warmed with a prediction, then
switched in with one assignment on the event loop; requests already queued finish on the version they started
with, and the old version is released when the last of them is done. Models that newly appear in production are
picked up the same way.

A production version that fails to verify, load or warm is never served. When another version is serving, it
keeps serving; when none is (start-up), the newest earlier production version that loads is served instead
(status `fallback`); when none loads, the model answers 503 saying what is wrong and what to do (status
`failed`). Either way the problem is shown by `/readyz` and `GET /v1/models/{name}`, the `shoal_model_degraded`
gauge names the served and the production version, and it is logged and recorded as a registry event
(`failed` or `fallback`). Failed versions are retried only by `POST /v1/reload` (or a new promotion).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

from shoal.cascade.combiner import Caps, Cascade, load_route
from shoal.cascade.fallback import Fallback, FleetFallback
from shoal.cascade.spec import CascadeSpec, model_cascade
from shoal.faults import checkpoint
from shoal.fleet import FleetError, ServeSpec
from shoal.llm.answerer import LLM_FAMILY, LLMAnswerer, LLMRecord
from shoal.llm.client import LLMClient
from shoal.llm.fallback import LLMFallback
from shoal.llm.spec import ColdStartSpec
from shoal.registry import Version
from shoal.registry.llm_store import LLMStore
from shoal.serve.batcher import Batcher, InferencePool, Loaded
from shoal.serve.errors import ServeError, unavailable
from shoal.serve.metrics import Metrics
from shoal.serve.redact import without_paths
from shoal.workspace import Workspace

log = logging.getLogger("shoal.serve")


def _why(error: Exception) -> str:
    """A failed load's reason without the advice an `ArtifactError` carries for the command line."""
    return f"{type(error).__name__}: {getattr(error, 'problem', error)}"


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: its allocator is left alone
        return None


def _give_back_freed_memory() -> None:
    """Return the freed heap pages of a replaced version to the system. glibc keeps freed memory in its per-thread
    arenas, and versions are loaded in worker threads, so without this a server's RSS creeps up with every swap
    (benchmarks/soak.py measures it). ctypes releases the GIL while it runs."""
    if trim := _malloc_trim():
        trim(0)


def _repair(name: str) -> str:
    return (
        f"Run 'shoal doctor' to check the store, then promote a version that verifies ('shoal promote {name} "
        "VERSION'), or restore the artifact and POST /v1/reload"
    )


@dataclass
class Slot:
    """One served model: its batcher, the version it answers with, and how its last swap went."""

    name: str
    task: str
    spec: ServeSpec
    batcher: Batcher
    current: Loaded | None = None
    production: int | None = None
    swaps: int = 0
    last_error: str | None = None
    last_error_version: int | None = None
    last_error_at: datetime | None = None
    failed: set[int] = field(default_factory=set)
    degraded: str | None = None  # why the production version is not served (shown while it is not)
    cascade: Cascade | None = None  # where its unsure inputs go, when the fleet file names a fallback

    @property
    def max_inputs(self) -> int:
        """Inputs one request may carry: more could never fit in the queue."""
        return min(self.spec.max_inputs, self.spec.max_queue)

    @property
    def status(self) -> str:
        if self.current is None:
            return "failed" if self.production in self.failed else "loading"
        if self.current.number == self.production:
            return "ready"
        return "fallback" if self.production in self.failed else "swapping"

    @property
    def problem(self) -> str | None:
        """Why the production version is not served (for a `fallback` or `failed` model), else None."""
        return self.degraded if self.status in ("fallback", "failed") else None

    def unavailable(self) -> ServeError:
        """The 503 a request gets while this model serves no version."""
        if self.status == "failed":
            return ServeError(503, "model_unavailable", f"model {self.name!r} cannot be served: {self.degraded}")
        return unavailable("not_ready", f"model {self.name!r} is still loading; retry after the Retry-After delay")


class ModelPool:
    """Every production model of the workspace, kept in step with the registry."""

    def __init__(self, ws: Workspace, metrics: Metrics, poll_interval_s: float) -> None:
        self.ws = ws
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.slots: dict[str, Slot] = {}
        self.llm: dict[str, LLMClient] = {}  # the LLM endpoints the cascades call, one client each
        self.inference = InferencePool()  # the batch threads every model shares
        self.first_poll = asyncio.Event()  # set once one poll has completed (every production version tried)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._skipped: set[str] = set()
        self._poll_failing = False
        metrics.gauges.append(self._sample)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_forever(), name="shoal-registry-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(slot.batcher.stop() for slot in self.slots.values()))  # before the LLM clients close
        for client in self.llm.values():
            await client.aclose()
        self.inference.close()

    @property
    def ready(self) -> bool:
        return self.first_poll.is_set() and all(slot.current is not None for slot in self.slots.values())

    def statuses(self) -> dict[str, str]:
        return {name: slot.status for name, slot in sorted(self.slots.items())}

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.refresh()
                if self._poll_failing:
                    log.info("registry polls succeed again")
                self._poll_failing = False
            except Exception as error:  # keep serving what is loaded while the registry is unreachable
                self.metrics.polls_failed.inc(())
                if not self._poll_failing:
                    log.error("cannot read production versions from the registry (still serving): %s", error)
                self._poll_failing = True
            await asyncio.sleep(self.poll_interval_s)

    async def refresh(self, *, retry_failed: bool = False) -> None:
        """Load every production version that is not served yet (failed versions only with `retry_failed`)."""
        async with self._lock:
            production = await asyncio.to_thread(self.ws.registry.production_versions)
            for name, number in sorted(production.items()):
                slot = self.slots.get(name) or await self._add(name, retry_failed)
                if slot is None:
                    continue
                slot.production = number
                if retry_failed:
                    slot.failed.discard(number)
                serving = slot.current is not None and slot.current.number == number
                if not serving and number not in slot.failed:
                    await self._swap(slot, number)
            self.first_poll.set()

    async def _add(self, name: str, reload_fleet: bool) -> Slot | None:
        if name in self._skipped and not reload_fleet:
            return None
        spec = self.ws.fleet.models.get(name)
        if spec is None:  # promoted after the server read the fleet file: read it again
            try:
                spec = (await asyncio.to_thread(self.ws.reload)).models.get(name)
            except FleetError as error:
                log.error("cannot re-read the fleet file to serve %s: %s", name, error)
        if spec is None:
            if name not in self._skipped:
                log.warning("model %s is in production but not in the fleet file; not serving it", name)
            self._skipped.add(name)
            return None
        self._skipped.discard(name)
        batcher = Batcher(name, spec.serve, self.metrics, self.inference)
        slot = self.slots[name] = Slot(name, spec.task, spec.serve, batcher)
        cascade = model_cascade(spec)
        if cascade is not None:
            slot.cascade = Cascade(name, cascade, self._fallback(cascade), self.metrics, Caps(cascade))
        return slot

    def _fallback(self, cascade: CascadeSpec) -> Fallback:
        """The cascade's fallback: a model this server serves, or an LLM endpoint (one client per endpoint)."""
        if cascade.fallback_llm is None:
            return FleetFallback(cascade.fallback_name, self.slots)
        return LLMFallback(self._client(cascade.fallback_llm.llm), cascade.fallback_llm.prompt)

    def _client(self, endpoint: str) -> LLMClient:
        """The one client of an LLM endpoint in this server (its concurrency limit and totals shared)."""
        client = self.llm.get(endpoint)
        if client is None:
            if endpoint not in self.ws.fleet.llm:
                raise FleetError(f"no endpoint {endpoint!r} in the fleet file's llm: section")
            store = LLMStore(self.ws.registry)
            client = self.llm[endpoint] = LLMClient(endpoint, self.ws.fleet.llm[endpoint], store)
        return client

    async def _swap(self, slot: Slot, number: int) -> None:
        previous = slot.current.number if slot.current else None
        try:
            loaded = await asyncio.to_thread(self._load, slot.name, number)
        except Exception as error:
            reason = _why(error)
            slot.failed.add(number)
            slot.last_error, slot.last_error_version, slot.last_error_at = reason, number, datetime.now(UTC)
            self.metrics.loads.inc((slot.name, str(number), "failed"))
            if previous is None:
                await self._fall_back(slot, number, reason)
            else:
                message = f"server could not load v{number}: {reason}; still serving v{previous}. {_repair(slot.name)}"
                await self._report(slot, "failed", number, message)
            return
        checkpoint("swap" if previous else "load")
        self._install(slot, loaded)
        log.info("model %s: serving v%d (was %s)", slot.name, number, f"v{previous}" if previous else "none")
        if previous is not None:  # in a thread: trimming a large heap takes milliseconds the event loop keeps
            await asyncio.to_thread(_give_back_freed_memory)

    async def _fall_back(self, slot: Slot, production: int, reason: str) -> None:
        """Serve the newest earlier production version that loads, since `production` does not."""
        lineage = await asyncio.to_thread(self.ws.registry.alias_lineage, slot.name)
        for number in dict.fromkeys(lineage):
            if number == production:
                continue
            try:
                loaded = await asyncio.to_thread(self._load, slot.name, number)
            except Exception as error:
                self.metrics.loads.inc((slot.name, str(number), "failed"))
                log.error("model %s: earlier v%d cannot be loaded either: %s", slot.name, number, _why(error))
                continue
            self._install(slot, loaded)
            message = (
                f"production v{production} cannot be loaded ({reason}); serving v{number} instead, the newest "
                f"earlier production version that loads. {_repair(slot.name)}"
            )
            await self._report(slot, "fallback", number, message, production)
            return
        message = (
            f"production v{production} cannot be loaded ({reason}) and no earlier production version loads. "
            + _repair(slot.name)
        )
        await self._report(slot, "failed", production, message)

    def _install(self, slot: Slot, loaded: Loaded) -> None:
        slot.current = loaded  # the switch: new requests use it, queued ones keep the version they hold
        slot.swaps += 1
        # a model is many long-lived objects; leaving them in the collector's generations makes every full
        # collection walk them, so after collecting what is garbage now, move what is alive out of its reach. Only
        # objects made since the last freeze are walked: a few ms on the event loop (unfreezing first made this
        # walk every module and model, tens of ms per swap). So a frozen version is never collected: a replaced one
        # is freed by reference counting once its last queued request is done (it holds no reference cycle:
        # tests/test_serve_load.py)
        gc.collect()
        gc.freeze()
        self.metrics.loads.inc((slot.name, str(loaded.number), "ok"))

    def _load(self, name: str, number: int) -> Loaded:
        version = self.ws.registry.version(name, number)
        if version.family == LLM_FAMILY:
            return self._load_llm(name, version)
        predictor = self.ws.load_predictor(version)
        proba = predictor.predict_proba(predictor.warm_up_inputs())
        if proba.shape != (1, len(predictor.labels)):
            raise ValueError(f"warm-up returned shape {proba.shape}, expected (1, {len(predictor.labels)})")
        cascade = model_cascade(self.ws.fleet.models.get(name))
        route = None
        if cascade is not None:  # the artifact was verified by load_predictor just now
            route = load_route(self.ws.registry.artifacts.folder(version.artifact_uri, version.checksum), cascade)
            if route is None:
                log.warning("model %s v%d has no calibration record: its cascade defers nothing", name, number)
        return Loaded(version, predictor, datetime.now(UTC), route)

    def _load_llm(self, name: str, version: Version) -> Loaded:
        """An LLM version (a model's cold start): its endpoint answers; no warm-up call (it would cost money). Its
        timeout and rest are the model's `llm:` key's (defaults without one: a rolled-back fleet file)."""
        folder = self.ws.registry.artifacts.open(version.artifact_uri, version.checksum)
        record = LLMRecord.load(folder)
        cold = getattr(self.ws.fleet.models.get(name), "llm", None) or ColdStartSpec(endpoint=record.endpoint)
        answerer = LLMAnswerer(record, self._client(record.endpoint), cold.timeout_s, cold.cooldown_s)
        return Loaded(version, answerer, datetime.now(UTC))

    async def _report(self, slot: Slot, kind: str, number: int, message: str, production: int | None = None) -> None:
        """Keep `message` for the status routes and predict's 503 (without server paths: predict and the status
        routes need no token), log it and record it as a `kind` event of version `number`."""
        slot.degraded = without_paths(message, self.ws.root)
        log.error("model %s: %s", slot.name, message)
        payload = {"stage": "serve", "production": production or number}
        try:
            await asyncio.to_thread(self.ws.registry.record_event, slot.name, kind, message, number, payload)
        except Exception as error:
            log.error("model %s: could not record the failure in the registry: %s", slot.name, error)

    def _sample(self, metrics: Metrics) -> None:
        metrics.serving.values.clear()
        metrics.degraded.values.clear()
        for endpoint, client in self.llm.items():
            metrics.llm(endpoint, client.outcomes, client.tokens_in, client.tokens_out, client.dollars)
        for name, slot in self.slots.items():
            metrics.queue_depth.set((name,), slot.batcher.queued)
            metrics.running.set((name,), slot.batcher.running)
            if slot.current is not None:
                metrics.serving.set((name, str(slot.current.number)), 1)
            if slot.problem is not None:
                serving = str(slot.current.number) if slot.current is not None else "none"
                metrics.degraded.set((name, serving, str(slot.production)), 1)
