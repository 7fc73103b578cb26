"""The fault matrix: a real `shoal` process killed with SIGKILL at each named stage of the loop (ingest, the
training's points, promote, a server's hot swap) on SQLite and on PostgreSQL. After each kill `shoal doctor`
finds the store consistent, or repairs only what is safe (a dead process's staging folder, a file whose row was
never written) and then finds it consistent; and the next run of the same step succeeds.

The test knows the killed process is dead and that nothing else writes to the store, so it runs the repair with
no grace period. The table stage x database is written to <pytest basetemp>/fault_matrix.md and printed at the
end of the module."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import spam_model, write_rows
from processes import (
    POINTS,
    assert_stopped_at,
    assert_store_consistent,
    kill_when_paused,
    start_group,
    wait_for,
)
from shoal.data.ingest import ingest_file
from shoal.doctor import examine
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

FAMILIES = ["majority", "tfidf-logreg"]
ROWS = 300
SHOAL = [sys.executable, "-m", "shoal"]
RESULTS: dict[tuple[str, str], tuple[str, str]] = {}


@dataclass
class Case:
    ws: Workspace
    csv: Path  # the spam rows the case ingests
    tmp: Path

    def run(self, *args: str, point: str, started: Callable[[], None] | None = None) -> None:
        """`shoal ARGS -w WS` killed when it pauses at `point` (after `started()`, when given, has run)."""
        log = self.tmp / f"{point}.log"
        process = start_group([*SHOAL, *args, "-w", str(self.ws.root)], log, point, self.tmp / "paused")
        try:
            if started is not None:
                started()
        finally:
            kill_when_paused(process, point, self.tmp / "paused", 180)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*SHOAL, *args, "-w", str(self.ws.root)], capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def trained(self) -> tuple[int, int]:
        """Ingest and train in this process: (the production version, the other version)."""
        ingest_file(self.ws, "spam", self.csv)
        [report] = train_models(self.ws)
        assert report.error is None, report.error
        production = self.ws.registry.alias("spam")
        [other] = [v.number for v in self.ws.registry.versions("spam") if v.number != production]
        assert production is not None
        return production, other


@pytest.fixture
def case(make_workspace, sms: pd.DataFrame, registry_url: str, tmp_path: Path) -> Case:
    ws = make_workspace({"spam": spam_model(families=FAMILIES, cv_folds=2)}, registry=registry_url, n_jobs=1)
    return Case(ws, write_rows(tmp_path / "spam.csv", sms.head(ROWS)), tmp_path)


# -- the stages: each kills its step, hands over to the doctor (the `yield`), then runs the step again ----------
def stage_ingest(case: Case) -> Iterator[None]:
    case.run("ingest", "spam", str(case.csv), point="drop_written")
    assert case.ws.registry.model_names() == [] or case.ws.registry.drops("spam") == []
    yield
    result = ingest_file(case.ws, "spam", case.csv)
    assert result.created and case.ws.registry.drops("spam") == [result.drop]


def stage_train(point: str) -> Callable[[Case], Iterator[None]]:
    def stage(case: Case) -> Iterator[None]:
        ingest_file(case.ws, "spam", case.csv)
        case.run("train", point=point)
        if point in POINTS:
            assert_stopped_at(case.ws, "spam", point, FAMILIES)
        yield
        [report] = train_models(case.ws)
        assert report.error is None, report.error
        assert sorted(v.family for v in case.ws.registry.versions("spam")) == FAMILIES  # none made twice
        assert case.ws.registry.alias("spam") is not None

    return stage


def stage_promote(case: Case) -> Iterator[None]:
    production, other = case.trained()
    case.run("promote", "spam", str(other), point="promote")
    assert case.ws.registry.alias("spam") == production  # the killed transaction left no trace
    assert [c.to_version for c in case.ws.registry.alias_history("spam")] == [production]
    yield
    case.cli("promote", "spam", str(other))
    assert case.ws.registry.alias("spam") == other


def stage_swap(case: Case) -> Iterator[None]:
    production, other = case.trained()
    url = free_url()
    serve = ["serve", "--port", url.rsplit(":", 1)[1]]

    def promote_once_serving() -> None:
        wait_for(lambda: serving(url) == production, 120, f"the server serving v{production}")
        case.ws.registry.set_alias("spam", other, actor="manual", reason="a promotion the server swaps to")

    case.run(*serve, point="swap", started=promote_once_serving)  # killed with v{other} loaded, not switched to
    yield
    server = start_group([*SHOAL, *serve, "-w", str(case.ws.root)], case.tmp / "serve-again.log")
    try:
        wait_for(lambda: serving(url) == other, 120, f"the restarted server serving v{other}")
        answer = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": ["WIN a prize now"]}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def serving(url: str) -> int | None:
    try:
        [model] = httpx.get(f"{url}/v1/models", timeout=5).json()["models"]
    except (httpx.HTTPError, ValueError):
        return None
    return model["serving_version"]


#: each stage, and what a kill there leaves for the doctor to repair (check -> how many)
STAGES: dict[str, tuple[Callable[[Case], Iterator[None]], dict[str, int]]] = {
    "ingest: drop file written, no row": (stage_ingest, {"unreferenced files": 1}),
    "train: search": (stage_train("search"), {}),
    # the families' final fits run together: every artifact is staged before the first is registered
    "train: artifact_written": (stage_train("artifact_written"), {"staging folders": len(FAMILIES)}),
    "train: artifact committed, no row": (
        stage_train("artifact_committed"),
        {"unreferenced files": 1, "staging folders": len(FAMILIES) - 1},
    ),
    "train: registered": (stage_train("registered"), {"staging folders": len(FAMILIES) - 1}),
    "train: gate": (stage_train("gate"), {}),
    "promote: alias written, not committed": (stage_promote, {}),
    "serve: hot swap loaded, not switched": (stage_swap, {}),
}


@pytest.fixture(scope="module", autouse=True)
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Write and print the table once the module's cases ran."""
    yield
    lines = ["| stage | database | consistent after the kill? | next run ok? |", "|---|---|---|---|"]
    order = list(STAGES)
    rows = sorted(RESULTS.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))
    lines += [f"| {stage} | {db} | {doctor} | {rerun} |" for (stage, db), (doctor, rerun) in rows]
    table = "\n".join(lines)
    (tmp_path_factory.getbasetemp() / "fault_matrix.md").write_text(table + "\n", encoding="utf-8")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\nfault matrix:\n" + table)


@pytest.mark.timeout(600)  # a fresh `shoal` process to its pause point and a training: minutes on a loaded machine
@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_at_each_stage_leaves_a_store_the_doctor_finds_consistent_and_the_next_run_succeeds(
    case: Case, stage: str, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("registry_url").split(":", 1)[0].split("+")[0]
    key = (stage, database)
    RESULTS[key] = ("no", "not run")
    run, leftovers = STAGES[stage]
    steps = run(case)
    next(steps)  # the step, killed at its point

    found = examine(case.ws)
    repaired = examine(case.ws, repair=True, grace_seconds=0)
    assert repaired.healthy, repaired.as_dict()
    assert_store_consistent(case.ws, "spam")
    done = {check.name: len(check.repaired) for check in repaired.checks if check.repaired}
    assert done == {c.name: len(c.problems) for c in found.checks if c.problems} == leftovers
    repairs = ", ".join(f"{count} {name}" for name, count in done.items())
    RESULTS[key] = (f"yes, after repairing {repairs}" if done else "yes", "not run")

    next(steps, None)  # the step again, to its end
    assert examine(case.ws).healthy
    assert case.ws.registry.alias("spam", PRODUCTION) is not None or stage.startswith("ingest")
    RESULTS[key] = (RESULTS[key][0], "yes")
