"""Soak: one `shoal serve` and one `shoal worker` under mixed valid and invalid traffic, with two promotions a minute.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--models 10] [--clients 8]
                                        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Before the soak (not timed): a workspace of --models TF-IDF text classifiers on real data (Banking77, TweetEval,
SMS spam; benchmarks/soak_fleet.py) is built under --workspace and trained once, with a progress bar. The
registry (and the prediction log) is the workspace's SQLite file, or, with --database, a new PostgreSQL database
created on that server and dropped at the end.

The soak: `shoal serve` and `shoal worker` run as subprocesses on 127.0.0.1 (logs in <workspace>/logs/). --clients
threads send valid requests (predictions, feedback for earlier predictions' ids, reads) and invalid ones (bad
JSON, wrong types, empty inputs, unknown models, over-long bodies, the wrong content type, NUL characters and lone
surrogates, missing tokens, bogus feedback ids, malformed data rows; benchmarks/soak_traffic.py). An operator
thread moves a production alias --promotions-per-minute times a minute, round-robin over the models (`shoal
promote` to another trained version; each model's second move is `shoal rollback`), and waits until the server
answers with the new version (a hot swap under load each time); it also sends --drops-per-minute data drops of
100 held-out rows, alternately over HTTP and into the model's inbox, so the worker retrains (as it does on the
feedback).

At the end the clients stop, the worker stops, the server's prediction-log buffer drains, the server stops (its
shutdown flush), and the prediction log is read from the registry database. The summary (Markdown, for
benchmarks/RESULTS.md) has server and worker RSS at the start, the end and the maximum; answers by HTTP status
for the valid and the invalid class apart, with client-side errors (connection errors, timeouts, bad bodies,
dead client threads); throughput and p50/p99 latency; prediction-log rows against 2xx predicted inputs; the
alias changes and swaps; and a list of checks. It exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from harness import free_port
from machine import code_commit, cpu_model, load_average, memory_gib, print_command, print_machine
from soak_fleet import ModelData, database, model_data, no_registry_override, train_fleet, write_fleet
from soak_traffic import INVALID, INVALID_ID_PREFIX, VALID, Clients, Outcome, Request, Traffic, send
from sqlalchemy import func, select

from shoal.registry.prediction_log import PredictionLog, predictions
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SHOAL = [sys.executable, "-m", "shoal"]
DROP_ROWS = 100
SWAP_TIMEOUT_S = 120.0
RSS_GROWTH_LIMIT = 0.25  # flagged: RSS at the end above the RSS at 20% of the run by more than this share


# -- processes ---------------------------------------------------------------------------------------------
@contextmanager
def started(name: str, command: list[str], env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in its own session, its output in logs/<name>.log; stopped with SIGTERM at the end (if it
    still runs) and waited for at most 120 s, then killed."""
    log = (logs / f"{name}.log").open("wb")
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    return int(process.returncode)


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"shoal serve exited with {server.returncode} before it was ready; see its log")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"shoal serve was not ready within {timeout:.0f} s")


def rss_mib(pid: int, tree: bool = True) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if tree else [root]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.Error:
        return float("nan")


class RssSampler:
    """RSS of the server (its process tree) and of the worker's own process, once a second."""

    def __init__(self, server: int, worker: int) -> None:
        self.server, self.worker = server, worker
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, server MiB, worker MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic(), rss_mib(self.server), rss_mib(self.worker, tree=False)))


# -- the operator: promotions, rollbacks and data drops ------------------------------------------------------
@dataclass
class Move:
    model: str
    action: str  # promote or rollback
    before: int | None
    after: int | None
    ok: bool  # the CLI command succeeded
    swap_s: float | None  # until the server answered with the new production version; None: not within the timeout


@dataclass
class Operator:
    ws: Workspace
    url: str
    models: list[ModelData]
    traffic: Traffic
    outcomes: list[Outcome]
    promotions_per_minute: float
    drops_per_minute: float
    moves: list[Move] = field(default_factory=list)
    inbox_files: list[tuple[str, str]] = field(default_factory=list)  # (model, file name)
    errors: list[str] = field(default_factory=list)
    _cursor: Counter[str] = field(default_factory=Counter)

    def run(self, seconds: float) -> None:
        """Promotions and drops evenly spread over `seconds` (each at the middle of its slot)."""
        events = [
            ((k + 0.5) * 60 / self.promotions_per_minute, "alias", k)
            for k in range(self._count(seconds, self.promotions_per_minute))
        ]
        events += [
            ((k + 0.25) * 60 / self.drops_per_minute, "drop", k)
            for k in range(self._count(seconds, self.drops_per_minute))
        ]
        start = time.monotonic()
        for at, what, k in sorted(events):
            time.sleep(max(0.0, start + at - time.monotonic()))
            if time.monotonic() - start >= seconds:
                break
            try:
                self.move_alias(k) if what == "alias" else self.drop(k)
            except Exception as error:  # recorded and shown: the soak goes on
                self.errors.append(f"{what} {k}: {type(error).__name__}: {error}")
        time.sleep(max(0.0, start + seconds - time.monotonic()))

    @staticmethod
    def _count(seconds: float, per_minute: float) -> int:
        return int(seconds / 60 * per_minute + 0.5) if per_minute > 0 else 0

    def move_alias(self, k: int) -> None:
        name = self.models[k % len(self.models)].name
        registry = self.ws.registry
        before = registry.alias(name)
        if k // len(self.models) % 2 == 1:  # each model's 2nd, 4th, ... move undoes its previous one
            action, args = "rollback", [name]
        else:
            versions = [v for v in registry.versions(name) if v.number != before]
            # another trained family if there is one (a family can fail on a model's data), else the floor
            others = [v.number for v in versions if v.family != "majority"] or [v.number for v in versions]
            action, args = "promote", [name, str(others[k % len(others)]), "--reason", "soak"]
        done = subprocess.run(
            [*SHOAL, action, *args, "-w", str(self.ws.root)], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            self.errors.append(f"shoal {action} {name} failed: {done.stdout.strip()} {done.stderr.strip()[-500:]}")
        after = registry.alias(name)
        began = time.monotonic()
        swap_s = self._wait_serving(name, began) if after != before else None
        self.moves.append(Move(name, action, before, after, done.returncode == 0, swap_s))

    def _wait_serving(self, name: str, began: float) -> float | None:
        """Seconds until GET /v1/models/{name} shows the server answering with the production version."""
        serving: list[int | None] = [None]

        def note(body: dict[str, Any]) -> None:
            serving[0] = body.get("serving_version")

        read = Request(VALID, "read /v1/models/{name} (operator)", "GET", f"/v1/models/{name}", on_ok=note)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while time.monotonic() - began < SWAP_TIMEOUT_S:
                self.outcomes.append(send(client, read))
                if serving[0] is not None and serving[0] == self.ws.registry.alias(name):
                    return time.monotonic() - began
                time.sleep(0.2)
        return None

    def drop(self, k: int) -> None:
        """100 held-out rows of the next model: over HTTP (even k) or as a CSV file into its inbox (odd k)."""
        m = self.models[(k // 2) % len(self.models)]
        start = self._cursor[m.name]
        rows = m.pool.iloc[start : start + DROP_ROWS]
        self._cursor[m.name] = start + DROP_ROWS if start + 2 * DROP_ROWS <= len(m.pool) else 0
        if k % 2 == 0:
            body = {"rows": rows.to_dict(orient="records")}
            headers = {"content-type": "application/json", **self.traffic.auth}
            with httpx.Client(base_url=self.url, timeout=60) as client:
                request = Request(
                    VALID, "data (operator)", "POST", f"/v1/models/{m.name}/data", json.dumps(body).encode(), headers
                )
                self.outcomes.append(send(client, request))
            return
        inbox = self.ws.inbox(m.name)
        inbox.mkdir(parents=True, exist_ok=True)
        staged = self.ws.root / "data" / f"drop-{k}.csv"
        rows.to_csv(staged, index=False)
        os.replace(staged, inbox / staged.name)  # whole at once: the inbox never sees a half-written file
        self.inbox_files.append((m.name, staged.name))


# -- what the server and the worker said ---------------------------------------------------------------------
def scrape(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=30).text


def metric(text: str, name: str, labels: str = "") -> float:
    """The sum of a Prometheus series' samples whose labels contain `labels`."""
    found = re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE)
    return sum(float(value) for label, value in found if labels in label)


def drain(url: str, timeout: float = 60.0) -> str:
    """The server's metrics once its prediction-log buffer is empty (or after `timeout`; "" if it cannot answer)."""
    deadline = time.monotonic() + timeout
    try:
        text = scrape(url)
        while metric(text, "shoal_prediction_log_buffered") > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            text = scrape(url)
    except httpx.HTTPError:
        return ""
    return text


def log_lines(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(lines by level, worker events) of a --log-json log; a line that is not JSON counts as level 'raw'."""
    levels: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            levels["raw"] += 1
            continue
        levels[str(entry.get("level"))] += 1
        if "event" in entry:
            events[str(entry["event"])] += 1
    return levels, events


@dataclass(frozen=True)
class LogCount:
    valid_rows: int
    invalid_rows: int


def count_log(ws: Workspace) -> LogCount:
    """Prediction-log rows, read from the registry database after the server stopped."""
    log = PredictionLog.for_registry(ws.registry)
    invalid = predictions.c.request_id.like(f"{INVALID_ID_PREFIX}%")
    with log.engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())
        bad = int(conn.execute(select(func.count()).select_from(predictions).where(invalid)).scalar_one())
    log.close()
    return LogCount(total - bad, bad)


# -- the summary ---------------------------------------------------------------------------------------------
def percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return f"{p50:.1f} / {p99:.1f}"


def answers(outcomes: list[Outcome]) -> str:
    counts = Counter(o.answer for o in outcomes)
    return ", ".join(f"{answer}: {n:,}" for answer, n in sorted(counts.items())) or "-"


def ok(outcome: Outcome) -> bool:
    return outcome.answer.startswith("2")


def unexpected(outcome: Outcome) -> bool:
    """A valid request not answered 2xx, or an invalid one answered otherwise than issue 12 expects."""
    return outcome.answer not in outcome.expected if outcome.expected else not ok(outcome)


def client_error(outcome: Outcome) -> bool:
    return not outcome.answer.isdigit()


def after_errors(outcomes: list[Outcome]) -> Counter[str]:
    """Each client-side error with the request before it on the same connection (what may have broken it)."""
    found: Counter[str] = Counter()
    last: dict[int, Outcome] = {}
    for o in outcomes:  # each client's outcomes are in the order it sent them
        if client_error(o):
            before = last.get(o.client)
            after = f"{before.cls} {before.kind!r} answered {before.answer}" if before else "nothing"
            found[f"{o.cls} {o.kind!r}: {o.answer}, after {after}"] += 1
        last[o.client] = o
    return found


def rss_row(name: str, samples: list[float], start: float) -> str:
    if not samples:
        return f"| {name} | {start:,.0f} | - | - | - |"
    base = samples[len(samples) // 5]
    return f"| {name} | {start:,.0f} | {base:,.0f} | {samples[-1]:,.0f} | {max(samples):,.0f} |"


@dataclass
class Result:
    seconds: float  # from the first request to the last answer
    outcomes: list[Outcome]
    dead: list[str]
    operator: Operator
    inbox: Counter[str]  # the operator's inbox files: processed, rejected, waiting
    actors: Counter[str]  # production alias changes during the soak, by actor
    server_rss: tuple[float, list[float]]  # (at the start, once a second)
    worker_rss: tuple[float, list[float]]
    metrics: str  # the server's /metrics after the clients stopped and its log buffer drained
    exits: dict[str, bool]  # stopped cleanly on SIGTERM, per process
    levels: dict[str, Counter[str]]  # log lines by level, per process
    worker_events: Counter[str]
    load: tuple[str, str]  # the load average when the soak began and when the clients stopped

    def of(self, cls: str, kind: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.cls == cls and (kind is None or o.kind == kind)]

    def predicted(self, cls: str) -> int:
        """Inputs of `cls` predictions answered 2xx."""
        return sum(o.inputs for o in self.of(cls) if o.inputs and ok(o))

    def checks(self, logged: LogCount) -> list[tuple[str, bool]]:
        valid, invalid = self.of(VALID), self.of(INVALID)
        refused = metric(self.metrics, "shoal_prediction_log_dropped_total")
        rss = self.server_rss[1]
        base = rss[len(rss) // 5] if rss else float("nan")
        moves = self.operator.moves
        return [
            ("every valid request answered 2xx", all(ok(o) for o in valid)),
            (
                "no client-side error (connection, timeout, bad body) in either class",
                not any(map(client_error, self.outcomes)),
            ),
            ("no client thread died or hung", not self.dead),
            ("no invalid request answered 5xx", not any(o.answer.startswith("5") for o in invalid)),
            ("every invalid request answered as issue 12 expects (table above)", not any(map(unexpected, invalid))),
            (
                "prediction-log rows of valid requests = their 2xx predicted inputs",
                logged.valid_rows == self.predicted(VALID),
            ),
            (
                "prediction-log rows of invalid requests = their 2xx predicted inputs - the rows the server dropped",
                logged.invalid_rows == self.predicted(INVALID) - refused,
            ),
            (
                "the server answered /metrics after the load and drained its log buffer before stopping",
                "shoal_prediction_log_buffered" in self.metrics
                and metric(self.metrics, "shoal_prediction_log_buffered") == 0,
            ),
            (
                "every alias move succeeded and the server swapped to it",
                all(m.ok and m.swap_s is not None for m in moves),
            ),
            ("the operator had no errors", not self.operator.errors),
            (
                f"server RSS at the end within {RSS_GROWTH_LIMIT:.0%} of its RSS at 20% of the run",
                rss[-1] <= base * (1 + RSS_GROWTH_LIMIT) if rss else False,
            ),
            ("the server and the worker stopped cleanly on SIGTERM", all(self.exits.values())),
            (
                "no error lines in the server's and worker's logs",
                not any(c["error"] + c["critical"] + c["raw"] for c in self.levels.values()),
            ),
        ]

    def failed(self, logged: LogCount) -> bool:
        return not all(passed for _, passed in self.checks(logged))


def soak(ws: Workspace, models: list[ModelData], args: argparse.Namespace) -> Result:
    token = secrets.token_urlsafe(24)
    # the log must keep every row of the run to be counted: no pruning by row count
    env = {"SHOAL_TOKEN": token, "SHOAL_PREDICTION_MAX_ROWS": str(10**9)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs, w = ws.root / "logs", ["-w", str(ws.root)]
    since = datetime.now(UTC)
    with started("serve", [*SHOAL, "serve", "--port", str(port), "--log-json", *w], env, logs) as server:
        wait_ready(url, server, timeout=600)
        with started("worker", [*SHOAL, "worker", "--poll", "1", "--log-json", *w], env, logs) as worker:
            wait_for_line(logs / "worker.log", "worker_started", worker, timeout=300)
            server_start, worker_start = rss_mib(server.pid), rss_mib(worker.pid, tree=False)
            traffic = Traffic(models, token)
            operator = Operator(ws, url, models, traffic, [], args.promotions_per_minute, args.drops_per_minute)
            print(f"soak: {args.minutes:g} min, {args.clients} clients, server {url}", file=sys.stderr, flush=True)
            with RssSampler(server.pid, worker.pid) as sampler:
                began, load_before = time.monotonic(), load_average()
                with Clients(url, traffic, args.clients, args.seed, args.timeout) as clients:
                    operator.run(args.minutes * 60)
                load_after = load_average()
            worker_exit = stop(worker)
        metrics = drain(url)
        server_exit = stop(server)
    outcomes = clients.tally.outcomes + operator.outcomes
    serve_log = (logs / "serve.log").read_text(errors="replace")
    levels = {name: log_lines(logs / f"{name}.log")[0] for name in ("serve", "worker")}
    return Result(
        seconds=max((o.at for o in outcomes), default=began) - began,
        outcomes=outcomes,
        dead=clients.tally.dead,
        operator=operator,
        inbox=inbox_state(ws, operator.inbox_files),
        actors=Counter(
            change.actor for m in models for change in ws.registry.alias_history(m.name) if change.at >= since
        ),
        server_rss=(server_start, [s for _, s, _ in sampler.samples]),
        worker_rss=(worker_start, [w for _, _, w in sampler.samples]),
        metrics=metrics,
        # uvicorn re-raises SIGTERM once its graceful shutdown is complete: -15 with that line is clean
        exits={
            "serve": server_exit in (0, -signal.SIGTERM) and "Application shutdown complete" in serve_log,
            "worker": worker_exit == 0,
        },
        levels=levels,
        worker_events=log_lines(logs / "worker.log")[1],
        load=(load_before, load_after),
    )


def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{path.stem} exited with {process.returncode}; see {path}")
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise SystemExit(f"no {text!r} in {path} within {timeout:.0f} s")


def inbox_state(ws: Workspace, files: list[tuple[str, str]]) -> Counter[str]:
    """Where the operator's inbox files are now: processed, rejected, or still waiting."""
    state: Counter[str] = Counter()
    for model, name in files:
        inbox = ws.inbox(model)
        where = [p.relative_to(inbox).parts[0] for p in inbox.rglob(f"*{Path(name).stem}*")]
        state["processed" if "processed" in where else "rejected" if "rejected" in where else "waiting"] += 1
    return state


def report(
    args: argparse.Namespace, models: list[ModelData], result: Result, logged: LogCount, trained: float, db: str
) -> None:
    valid, invalid = result.of(VALID), result.of(INVALID)
    predicts = result.of(VALID, "predict")
    moves = result.operator.moves
    swaps = [m.swap_s for m in moves if m.swap_s is not None]
    refused = metric(result.metrics, "shoal_prediction_log_dropped_total", 'reason="refused"')
    overflow = metric(result.metrics, "shoal_prediction_log_dropped_total", 'reason="overflow"')
    out = print
    out(
        f"\n### Soak: {len(models)} models, {args.minutes:g} min, {args.clients} clients, {db} "
        f"(training before the soak: {trained:.0f} s, not counted)\n"
    )
    out(f"code: {code_commit()}")
    out(f"machine: {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB")
    out(f"at the soak's start: {result.load[0]}; when the clients stopped: {result.load[1]}\n")
    out("| class | requests | answers (HTTP status, or client-side error) | p50 / p99 ms |")
    out("|---|---:|---|---:|")
    out(f"| valid | {len(valid):,} | {answers(valid)} | {percentiles([o.seconds for o in valid])} |")
    out(f"| valid: predict | {len(predicts):,} | {answers(predicts)} | {percentiles([o.seconds for o in predicts])} |")
    out(f"| invalid | {len(invalid):,} | {answers(invalid)} | {percentiles([o.seconds for o in invalid])} |")
    out(f"\nclient threads dead or hung: {len(result.dead)}{': ' + '; '.join(result.dead) if result.dead else ''}")
    for error, n in sorted(after_errors(result.outcomes).items()):
        out(f"client-side error: {error} ({n}x)")
    inputs = sum(o.inputs for o in predicts if ok(o))
    out(
        f"throughput: {len(result.outcomes) / result.seconds:,.1f} requests/s over {result.seconds:.0f} s; "
        f"valid predictions {sum(map(ok, predicts)) / result.seconds:,.1f}/s ({inputs / result.seconds:,.1f} inputs/s)"
    )
    out("\n| kind | class | requests | answers | issue 12 expects | other answers |\n|---|---|---:|---|---|---:|")
    for cls in (VALID, INVALID):
        for kind in sorted({o.kind for o in result.of(cls)}):
            group = result.of(cls, kind)
            expected = sorted({a for o in group for a in o.expected}) or ["2xx"]
            other = sum(1 for o in group if unexpected(o))
            out(f"| {kind} | {cls} | {len(group):,} | {answers(group)} | {', '.join(expected)} | {other:,} |")
    out("\n| RSS MiB | start (ready, idle) | at 20% of the run | end | max |\n|---|---:|---:|---:|---:|")
    out(rss_row("server (shoal serve)", result.server_rss[1], result.server_rss[0]))
    out(rss_row("worker (shoal worker, without its job processes)", result.worker_rss[1], result.worker_rss[0]))
    rss = result.server_rss[1]
    timeline = [rss[min(len(rss) - 1, len(rss) * i // 10)] for i in range(11)] if rss else []
    out(f"\nserver RSS MiB at 0%, 10%, ..., 100% of the run: {', '.join(f'{r:,.0f}' for r in timeline)}")
    out(
        f"\nprediction log (read after the server's shutdown flush): valid requests' rows {logged.valid_rows:,} "
        f"vs 2xx predicted inputs {result.predicted(VALID):,}; invalid requests' rows {logged.invalid_rows:,} vs 2xx "
        f"predicted inputs {result.predicted(INVALID):,} - dropped by the server (refused {refused:.0f}, "
        f"overflow {overflow:.0f})"
    )
    actions = Counter(m.action for m in moves)
    out(
        f"alias moves by the operator: {len(moves)} ({', '.join(f'{a} {n}' for a, n in sorted(actions.items()))}); "
        f"swap seen by the server after {percentiles(swaps)} ms (p50 / p99), max {max(swaps, default=0):.1f} s; "
        f"production alias changes by actor: {dict(sorted(result.actors.items()))}"
    )
    events = result.worker_events
    out(
        f"worker: jobs started {events['job_started']}, finished {events['job_finished']}, failed "
        f"{events['job_failed']}; feedback drops "
        f"{events['feedback_ingested']}; inbox files {dict(sorted(result.inbox.items()))}"
    )
    out(
        "log lines by level: "
        + "; ".join(f"{name} {dict(sorted(levels.items()))}" for name, levels in result.levels.items())
        + f"; stopped cleanly {result.exits}; logs in {args.workspace.resolve() / 'logs'}"
    )
    for error in result.operator.errors:
        out(f"operator error: {error}")
    out("\nchecks:")
    for name, passed in result.checks(logged):
        out(f"- {'PASS' if passed else '**FAIL**'}: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--models", type=int, default=10, help="models in the fleet (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--database",
        default=None,
        help="a PostgreSQL URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test): a new database is "
        "created on that server for the run and dropped at the end (default: the workspace's SQLite file)",
    )
    parser.add_argument("--promotions-per-minute", type=float, default=2.0, help="alias moves a minute (default 2)")
    parser.add_argument(
        "--drops-per-minute", type=float, default=2.0, help=f"data drops of {DROP_ROWS} rows a minute (default 2)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, s (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices (default 0)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared datasets")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=ROOT / "benchmarks" / ".work" / "soak",
        help="emptied and rebuilt; logs stay in <workspace>/logs (default benchmarks/.work/soak)",
    )
    args = parser.parse_args()
    no_registry_override()
    begun = print_machine()
    root = args.workspace.resolve()
    shutil.rmtree(root, ignore_errors=True)
    (root / "logs").mkdir(parents=True)
    models = model_data(args.data, args.models)
    with database(args.database) as registry_url:
        write_fleet(root, models, registry_url)
        ws = Workspace(root)
        trained = time.perf_counter()
        train_fleet(ws, models)
        trained = time.perf_counter() - trained
        result = soak(ws, models, args)
        logged = count_log(ws)
        ws.close()
    report(args, models, result, logged, trained, "PostgreSQL" if args.database else "SQLite")
    print_command(begun)
    if result.failed(logged):
        sys.exit(1)


if __name__ == "__main__":
    main()
