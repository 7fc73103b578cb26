"""Training on Ray: a real two-node Ray cluster on 127.0.0.1 (two `ray start` processes, one CPU each), PostgreSQL
and a shared artifact folder. The fleet trained with `--executor ray` gets the versions and scores the local
executor gets, its fits land on both nodes, and a fit whose Ray worker is killed — or whose whole node is lost — is
retried without a duplicate version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import SKIP_RAY, read_csv
from ray_cluster import Cluster, _stop, postgres_databases, ray_cluster
from shoal.data.ingest import ingest_file
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry.jobs import DONE, TRAIN, JobQueue
from shoal.train.executor import comparable_versions
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

pytest.importorskip("ray", reason=SKIP_RAY)
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROWS = 240


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster() as started:
        yield started


@pytest.fixture
def postgres() -> Iterator[Callable[[], str]]:
    with postgres_databases() as make:
        yield make


def _fleet() -> dict[str, Any]:
    return {
        "spam": {"task": "text-classification", "metric": "f1:spam", "families": ["majority", "tfidf-logreg"]},
        "emotion": {"task": "text-classification", "families": ["majority", "tfidf-svm"]},
        "house": {"task": "regression", "target_column": "median_house_value", "families": ["mean", "ridge"]},
    }


DATA = {
    "spam": "sms_spam/sms_spam.csv",
    "emotion": "tweeteval_emotion/train.csv",
    "house": "california_housing/housing.csv",
}


def _workspace(
    make_workspace: Callable[..., Workspace],
    registry: str,
    artifacts: Path,
    data: Path,
    models: list[str],
    families: list[str] | None = None,
) -> Workspace:
    """`models` of `_fleet()` (each with `families` instead of its own, when given), their data ingested."""
    fleet = {model: {**spec, **({"families": families} if families else {})} for model, spec in _fleet().items()}
    fleet = {model: spec for model, spec in fleet.items() if model in models}
    ws = make_workspace(fleet, registry=registry, artifacts=artifacts.as_uri(), n_jobs=1)
    for model in models:
        path = data / f"{model}.csv"
        if not path.exists():
            read_csv(DATA[model]).iloc[:ROWS].to_csv(path, index=False)
        ingest_file(ws, model, path)
    return ws


def _train_command(ws: Workspace, address: str) -> list[str]:
    """`shoal train --executor ray` of the whole fleet on the cluster at `address`, its reports printed as JSON."""
    return [
        sys.executable,
        "-m",
        "shoal",
        "train",
        "--json",
        "-w",
        str(ws.root),
        "--executor",
        "ray",
        "--address",
        address,
    ]


def _reports(code: int, out: str, err: str) -> Any:
    """The trained models' reports `shoal train --json` printed, each without an error."""
    assert code == 0, (out[-3000:], err[-3000:])
    reports = json.loads(out)  # Ray's own lines went to stderr
    assert [r["error"] for r in reports] == [None] * len(reports)
    return reports


def _training(ws: Workspace, cluster: Cluster) -> subprocess.Popen[str]:
    """`shoal train --executor ray` on `cluster`, started (its output for `_reports`)."""
    command = _train_command(ws, cluster.address)
    return subprocess.Popen(command, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _paused(pause: Path, running: subprocess.Popen[str], seconds: float = 180) -> psutil.Process:
    """The process paused at a fault point (it wrote its pid to `pause`), waited for while `running` runs."""
    deadline = time.monotonic() + seconds
    while not pause.exists():
        assert running.poll() is None, "the training ended before a fit paused"
        assert time.monotonic() < deadline, "no fit paused"
        time.sleep(0.1)
    return psutil.Process(int(pause.read_text()))


def _versions(ws: Workspace) -> dict[str, Any]:
    return comparable_versions(ws.registry, list(ws.fleet.models))


def test_the_fleet_trained_on_ray_matches_the_local_executor_and_spreads_over_both_nodes(
    cluster: Cluster, postgres: Callable[[], str], make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    shared = tmp_path / "shared-artifacts"
    started = time.perf_counter()
    local = _workspace(make_workspace, postgres(), tmp_path / "local-artifacts", tmp_path, list(_fleet()))
    remote = _workspace(make_workspace, postgres(), shared, tmp_path, list(_fleet()))
    print(f"\ntwo workspaces in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    assert [r.error for r in train_models(local)] == [None] * len(_fleet())
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    done = subprocess.run(
        _train_command(remote, cluster.address), env=cluster.env, capture_output=True, text=True, timeout=240
    )
    reports = _reports(done.returncode, done.stdout, done.stderr)
    ray_seconds = time.perf_counter() - started
    overhead = [v.metrics.phases["ray_overhead"] for model in _fleet() for v in remote.registry.versions(model)]
    print(
        f"\nlocal {local_seconds:.1f} s, ray {ray_seconds:.1f} s (a fresh driver process) for {len(overhead)} fits; "
        f"Ray overhead per fit {min(overhead):.2f}..{max(overhead):.2f} s, mean {sum(overhead) / len(overhead):.2f} s "
        f"(loaded: load average {os.getloadavg()[0]:.1f})"
    )
    assert _versions(remote) == _versions(local)
    assert all(m["production"] is not None for m in _versions(remote).values())
    nodes = {c["node"] for r in reports for c in r["candidates"]}
    assert None not in nodes and len(nodes) == 2, nodes  # every fit ran on Ray, on both nodes
    assert sorted(p.name for p in (shared / "models").iterdir()) == sorted(_fleet())  # in the shared folder


def test_a_fit_whose_ray_worker_is_killed_is_retried_without_a_duplicate_version(
    cluster: Cluster, postgres: Callable[[], str], make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    """`shoal worker --executor ray` runs a queued job; the first fit to reach its search is killed there (its Ray
    worker process); Ray runs it again and the job registers one version per family."""
    ws = _workspace(make_workspace, postgres(), tmp_path / "shared", tmp_path, ["spam"])
    queue = JobQueue(ws.registry)
    queue.enqueue("spam", TRAIN, ws.registry.dataset_version("spam"), "test")
    pause = tmp_path / "paused"
    command = [sys.executable, "-m", "shoal", "worker", "--once", "-w", str(ws.root), "--executor", "ray", "--address"]
    env = {**cluster.env, PAUSE_AT_ENV: "search", PAUSE_FILE_ENV: str(pause)}
    with subprocess.Popen([*command, cluster.address], env=env, stdout=subprocess.PIPE, text=True) as worker:
        try:
            deadline = time.monotonic() + 120
            while not pause.exists():  # the first fit to reach its search pauses there and writes its pid
                assert worker.poll() is None and time.monotonic() < deadline, "no fit paused at its search"
                time.sleep(0.1)
            paused = psutil.Process(int(pause.read_text()))
            assert "ray" in " ".join(paused.cmdline()).lower()  # a Ray worker process, not the trainer
            paused.kill()
            out, _ = worker.communicate(timeout=240)
        finally:
            worker.kill()
    assert worker.returncode == 0, out
    [job] = queue.jobs("spam")
    assert job.status == DONE, job.error
    families = [version[1] for version in _versions(ws)["spam"]["versions"]]
    assert sorted(families) == sorted(_fleet()["spam"]["families"])  # one version per family: none twice


def test_the_fits_of_several_models_run_at_once_on_the_cluster(
    postgres: Callable[[], str], make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    """Two models of one family each: with one model at a time, one fit would run while the other model waited. Each
    node's first fit pauses at its search (a pause file per node), so both files appear only when the two models'
    fits run at once; the paused fits are then killed, Ray runs them again, and each model has its one version."""
    ws = _workspace(make_workspace, postgres(), tmp_path / "shared", tmp_path, ["spam", "emotion"], ["tfidf-logreg"])
    pauses = [tmp_path / "paused-head", tmp_path / "paused-second"]
    node_env = {i: {PAUSE_AT_ENV: "search", PAUSE_FILE_ENV: str(pause)} for i, pause in enumerate(pauses)}
    with ray_cluster(nodes=2, node_env=node_env) as cluster, _training(ws, cluster) as run:
        try:
            paused = [_paused(pause, run) for pause in pauses]  # one fit of each model, at once
            for fit in paused:
                fit.kill()
            out, err = run.communicate(timeout=240)
        finally:
            run.kill()
    reports = _reports(run.returncode, out, err)
    assert [c["error"] for r in reports for c in r["candidates"]] == [None, None]
    for model, found in _versions(ws).items():
        assert [v[1] for v in found["versions"]] == ["tfidf-logreg"], model  # once, though its fit ran twice


@pytest.mark.timeout(480)
def test_a_ray_node_lost_mid_training_has_its_fits_retried_on_the_others_without_a_duplicate_version(
    postgres: Callable[[], str], make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    """`shoal train --executor ray` of the fleet on a head and a second node: the first fit to reach its search on
    the second node pauses there; the whole node is killed (its `ray start`, raylet, workers, all of it). Ray runs
    the lost fit again on the head, the job completes, and each model has every family's version exactly once."""
    ws = _workspace(make_workspace, postgres(), tmp_path / "shared", tmp_path, list(_fleet()))
    pause = tmp_path / "paused"
    on_second = {PAUSE_AT_ENV: "search", PAUSE_FILE_ENV: str(pause)}  # only the second node's workers pause
    with ray_cluster(nodes=2, node_env={1: on_second}) as cluster, _training(ws, cluster) as run:
        try:
            paused = _paused(pause, run)
            second = psutil.Process(cluster.nodes[1].pid)
            assert paused.pid in {p.pid for p in second.children(recursive=True)}  # a fit on the second node
            _stop(cluster.nodes[1])
            out, err = run.communicate(timeout=300)
        finally:
            run.kill()
    reports = _reports(run.returncode, out, err)
    assert [c["error"] for r in reports for c in r["candidates"]] == [None] * 6
    nodes = {c["node"] for r in reports for c in r["candidates"]}
    assert len(nodes) == 1 and None not in nodes, nodes  # every fit ended on the head, the lost one retried there
    for model, found in _versions(ws).items():
        assert sorted(v[1] for v in found["versions"]) == sorted(_fleet()[model]["families"])  # each once
        assert found["production"] is not None


def test_a_fits_ray_overhead_leaves_out_its_wait_for_a_cpu_behind_other_fits() -> None:
    """Two fits submitted at 0 on a one-CPU node: the second waits for the first (not Ray's cost), then starts 2 s
    after the CPU is free (Ray's: a worker started, its data sent); each result reaches the driver 0.5 s after it
    ended. A fit on another node starts 3 s after its submission."""
    from shoal.train.ray_executor import overhead

    ran = [("a", 5.0, 10.0), ("a", 12.0, 20.0), ("b", 3.0, 9.0)]
    assert overhead(0.0, "a", 5.0, 10.0, 10.5, ran) == 5.5
    assert overhead(0.0, "a", 12.0, 20.0, 20.5, ran) == 2.5
    assert overhead(0.0, "b", 3.0, 9.0, 9.5, ran) == 3.5
