"""Prometheus metrics of one server process, kept in plain dicts and rendered in the text format.

Everything is updated on the event loop thread, so no locks are needed and an update costs a dict lookup.
Labels are bounded: `model` (a served model, or `_unknown` for requests naming no served model), `pipeline` and
`step` (of the fleet file, or `_unknown`), `endpoint` (of the fleet file's `llm:` section), `version`,
`code` (HTTP status), and the fixed sets `reason` (why a batch was flushed, or a prediction not logged) and
`result` (of a load).
With `--workers N` every worker process keeps and exposes its own series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_MODEL = "_unknown"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

Labels = tuple[str, ...]


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


def quantile(bounds: tuple[float, ...], counts: list[int], q: float) -> float | None:
    """The `q` quantile of a histogram's observations as Prometheus' histogram_quantile estimates it: linear inside
    its bucket (the last finite bound when it falls in +Inf); None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i == len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


@dataclass(frozen=True)
class Traffic:
    """A model's predict requests since this process started, over all its versions."""

    requests: int
    failed: int  # answered with a status of 400 or more
    p50_s: float | None
    p95_s: float | None


class Family:
    """One metric name with its help text, type and labelled values."""

    def __init__(self, name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name, self.kind, self.help, self.labels = name, kind, help_text, labels
        self.values: dict[Labels, float | Histogram] = {}

    def inc(self, labels: Labels, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount  # type: ignore[operator]

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def histogram(self, labels: Labels, bounds: tuple[float, ...]) -> Histogram:
        found = self.values.get(labels)
        if found is None:
            found = self.values[labels] = Histogram(bounds)
        return found  # type: ignore[return-value]

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            pairs = [f'{k}="{_escape(v)}"' for k, v in zip(self.labels, labels, strict=True)]
            if isinstance(value, Histogram):
                cumulative = 0
                for bound, count in zip((*value.bounds, "+Inf"), value.counts, strict=True):
                    cumulative += count
                    bucket = ",".join([*pairs, f'le="{bound}"'])
                    yield f"{self.name}_bucket{{{bucket}}} {cumulative}"
                yield f"{self.name}_sum{{{','.join(pairs)}}} {value.total}"
                yield f"{self.name}_count{{{','.join(pairs)}}} {cumulative}"
            else:
                yield f"{self.name}{{{','.join(pairs)}}} {value}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's series; `gauges` are sampled at scrape time from the model pool."""

    def __init__(self) -> None:
        mv = ("model", "version")
        self.requests = Family("shoal_requests_total", "counter", "Predict requests by answer code.", (*mv, "code"))
        self.inputs = Family("shoal_inputs_total", "counter", "Inputs predicted.", mv)
        self.latency = Family(
            "shoal_request_duration_seconds", "histogram", "Predict request time inside the server.", mv
        )
        self.queue_wait = Family(
            "shoal_queue_wait_seconds", "histogram", "Time from joining the queue to starting a batch.", mv
        )
        self.batch_size = Family("shoal_batch_size", "histogram", "Inputs per executed batch.", mv)
        self.flushes = Family(
            "shoal_batch_flushes_total",
            "counter",
            "Batches started, by reason: full (max_batch_size reached), drained (queue empty), "
            "version (next request is for another version).",
            (*mv, "reason"),
        )
        self.rejected = Family(
            "shoal_rejected_total",
            "counter",
            "Inputs refused as overloaded, by reason: queue_full, deadline.",
            (*mv, "reason"),
        )
        self.loads = Family(
            "shoal_model_loads_total", "counter", "Version loads by result: ok or failed.", (*mv, "result")
        )
        self.polls_failed = Family("shoal_registry_poll_errors_total", "counter", "Registry polls that failed.", ())
        self.queue_depth = Family("shoal_queue_depth", "gauge", "Inputs waiting in the model's queue.", ("model",))
        self.running = Family("shoal_batches_running", "gauge", "Batches executing now.", ("model",))
        self.serving = Family("shoal_model_serving", "gauge", "1 for the version each model answers with.", mv)
        self.degraded = Family(
            "shoal_model_degraded",
            "gauge",
            "1 while a model's production version failed to load: the version it serves instead (none) and its "
            "production version.",
            ("model", "serving", "production"),
        )
        self.live_accuracy = Family(
            "shoal_live_accuracy", "gauge", "Share of feedback labels the version predicted.", mv
        )
        self.feedback = Family("shoal_feedback_labels", "gauge", "Feedback labels received per version.", mv)
        self.alerts = Family(
            "shoal_alerts_total", "counter", "Alerts raised by the worker's drift and quality checks.", ("model",)
        )
        self.log_dropped = Family(
            "shoal_prediction_log_dropped_total",
            "counter",
            "Predictions not logged, by reason: refused (by the database), overflow (the write buffer was full),"
            " closed (recorded after shutdown began).",
            ("reason",),
        )
        self.log_buffered = Family("shoal_prediction_log_buffered", "gauge", "Predictions waiting to be logged.", ())
        self.cascade_tiers = Family(
            "shoal_cascade_inputs_total",
            "counter",
            "Inputs of a model with a cascade by the tier that answered: small (sure), fallback, small-capped (unsure, "
            "the fallback's cap was reached), small-fallback-down (unsure, the fallback did not answer).",
            ("model", "tier"),
        )
        self.cascade_latency = Family(
            "shoal_cascade_tier_duration_seconds",
            "histogram",
            "Per request of a model with a cascade, the time of each tier: small (its batch), fallback (the deferred "
            "inputs).",
            ("model", "tier"),
        )
        self.cascade_spent = Family(
            "shoal_cascade_fallback_cost_dollars_total", "counter", "$ of the fallback's answers.", ("model",)
        )
        self.llm_requests = Family(
            "shoal_llm_requests_total",
            "counter",
            "Inputs sent to an LLM endpoint (this process), by outcome: ok, cached (answered from the registry's "
            "cache), invalid (answered no label of the set), error (no answer after the retries), capped (the "
            "endpoint's daily spend cap was reached).",
            ("endpoint", "outcome"),
        )
        self.llm_tokens = Family(
            "shoal_llm_tokens_total",
            "counter",
            "Tokens of an LLM endpoint's requests, by kind: prompt, completion.",
            ("endpoint", "kind"),
        )
        self.llm_cost = Family(
            "shoal_llm_cost_dollars_total", "counter", "$ of an LLM endpoint's requests, by its prices.", ("endpoint",)
        )
        self.pipeline_requests = Family(
            "shoal_pipeline_requests_total", "counter", "Pipeline requests by answer code.", ("pipeline", "code")
        )
        self.pipeline_latency = Family(
            "shoal_pipeline_request_duration_seconds",
            "histogram",
            "Pipeline request time inside the server.",
            ("pipeline",),
        )
        self.pipeline_steps = Family(
            "shoal_pipeline_step_inputs_total",
            "counter",
            "Inputs that reached a pipeline's step, by result: answered or skipped.",
            ("pipeline", "step", "result"),
        )
        self.gauges: list[Callable[[Metrics], None]] = []

    def request(self, model: str, version: str, code: int, seconds: float) -> None:
        self.requests.inc((model, version, str(code)))
        self.latency.histogram((model, version), LATENCY_BUCKETS).observe(seconds)

    def cascade_inputs(self, model: str, tier: str, count: int) -> None:
        self.cascade_tiers.inc((model, tier), count)

    def cascade_tier_seconds(self, model: str, tier: str, seconds: float) -> None:
        self.cascade_latency.histogram((model, tier), LATENCY_BUCKETS).observe(seconds)

    def cascade_cost(self, model: str, dollars: float) -> None:
        self.cascade_spent.inc((model,), dollars)

    def llm(self, endpoint: str, outcomes: Mapping[str, int], tokens_in: int, tokens_out: int, dollars: float) -> None:
        """An LLM client's totals so far (sampled at scrape time)."""
        for outcome, count in outcomes.items():
            self.llm_requests.set((endpoint, outcome), count)
        self.llm_tokens.set((endpoint, "prompt"), tokens_in)
        self.llm_tokens.set((endpoint, "completion"), tokens_out)
        self.llm_cost.set((endpoint,), dollars)

    def pipeline_request(self, pipeline: str, code: int, seconds: float) -> None:
        self.pipeline_requests.inc((pipeline, str(code)))
        self.pipeline_latency.histogram((pipeline,), LATENCY_BUCKETS).observe(seconds)

    def traffic(self) -> dict[str, Traffic]:
        """Per model (not `_unknown`): its requests, those that failed, and its latency p50 and p95."""
        requests: dict[str, list[int]] = {}
        for (model, _, code), count in self.requests.values.items():
            seen = requests.setdefault(model, [0, 0])
            seen[0] += int(count)  # type: ignore[arg-type]
            seen[1] += int(count) if int(code) >= 400 else 0  # type: ignore[arg-type]
        counts: dict[str, list[int]] = {}
        for (model, _), histogram in self.latency.values.items():
            merged = counts.setdefault(model, [0] * (len(LATENCY_BUCKETS) + 1))
            for i, count in enumerate(histogram.counts):  # type: ignore[union-attr]
                merged[i] += count
        return {
            model: Traffic(
                total,
                failed,
                quantile(LATENCY_BUCKETS, counts.get(model, []), 0.5),
                quantile(LATENCY_BUCKETS, counts.get(model, []), 0.95),
            )
            for model, (total, failed) in requests.items()
            if model != UNKNOWN_MODEL
        }

    def render(self) -> str:
        for sample in self.gauges:
            sample(self)
        families = [value for value in vars(self).values() if isinstance(value, Family)]
        return "\n".join(line for family in families for line in family.render()) + "\n"
