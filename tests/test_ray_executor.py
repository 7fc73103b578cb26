"""Training on Ray: a real two-node Ray cluster on 127.0.0.1 (two `ray start` processes, one CPU each), PostgreSQL
and a shared artifact folder. The fleet trained with `--executor ray` gets the versions and scores the local
executor gets, its fits land on both nodes, and a fit whose Ray worker is killed is retried without a duplicate
version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import POSTGRES_ENV, REPO, SKIP_POSTGRES, SKIP_RAY, read_csv
from shoal.data.ingest import ingest_file
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry import PRODUCTION
from shoal.registry.jobs import DONE, TRAIN, JobQueue
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

pytest.importorskip("ray", reason=SKIP_RAY)
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROWS = 240
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
START_SECONDS = 90.0
#: each node: one CPU, 1.5 GiB for tasks, a small object store, the quiet resource for latency timing
NODE = ["--num-cpus=1", f"--memory={3 * 2**29}", f"--object-store-memory={100 * 2**20}"]
LATENCY = ['--resources={"shoal_latency": 1}']

TRAIN_ON = """\
import json, sys
from shoal.train.executor import open_executor
from shoal.train.trainer import train_models
from shoal.workspace import Workspace
ws = Workspace(sys.argv[1])
reports = train_models(ws, executor=open_executor(sys.argv[2], sys.argv[3] or None))
ws.close()
print(json.dumps([{"model": r.model, "error": r.error, "seconds": r.seconds,
    "candidates": [{"family": c.family, "node": c.node, "error": c.error} for c in r.candidates]} for r in reports]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    """The ports a node listens on besides its GCS: free ones, so two nodes on one machine never collide."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port")
    names += ("dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={_free_port()}" for name in names]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a `ray start --block` and everything it started: its session's process group and every descendant.
    Only these processes: never `ray stop`, which ends every Ray process of the machine, other users' too."""
    tree: list[psutil.Process] = []
    with suppress(psutil.NoSuchProcess):
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for left in tree:
        with suppress(psutil.NoSuchProcess):
            left.kill()
    psutil.wait_procs(tree, timeout=20)
    with suppress(subprocess.TimeoutExpired):
        process.wait(20)


def _started(process: subprocess.Popen[bytes], log: Path) -> bool:
    """Wait until `ray start` says its node runs (its raylet registered with the GCS); False: it ended first."""
    deadline = time.monotonic() + START_SECONDS
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"'ray start' did not start its node within {START_SECONDS:g} s")
        time.sleep(0.2)
    return True


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`ray start --block ARGS` in a session of its own, once more if it ends before its node runs: Ray gives a
    raylet 30 s to register, which a busy 2-core machine can miss."""
    for _attempt in range(2):
        with log.open("wb") as out:
            process = subprocess.Popen([RAY, *args, *_ports()], env=env, stdout=out, stderr=out, start_new_session=True)
        try:
            if _started(process, log):
                return process
        except BaseException:  # its deadline (pytest.fail) or pytest-timeout: never leave the node running
            _stop(process)
            raise
        _stop(process)
    pytest.fail(f"'ray start' ended with code {process.returncode}: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node and a second node, each a `ray start --block` process in a session of its own, on 127.0.0.1."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO / "src"), RAY_USAGE_STATS_ENABLED="0")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *NODE, *LATENCY]
    head = ["start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for args in (head, ["start", f"--address={address}"]):
            started.append(_start([*args, *common], env, temp / f"node{len(started)}.log"))
        yield Cluster(address, env)
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Callable[[], str]]:
    """`make()`: a new PostgreSQL database's URL (each dropped at the end)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(SKIP_POSTGRES)
    from contextlib import ExitStack

    from shoal.registry.database import temporary_database

    with ExitStack() as stack:
        yield lambda: stack.enter_context(temporary_database(base, "shoal_ray"))


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
    make_workspace: Callable[..., Workspace], registry: str, artifacts: Path, data: Path, models: list[str]
) -> Workspace:
    fleet = {model: spec for model, spec in _fleet().items() if model in models}
    ws = make_workspace(fleet, registry=registry, artifacts=artifacts.as_uri(), n_jobs=1)
    for model in models:
        path = data / f"{model}.csv"
        if not path.exists():
            read_csv(DATA[model]).iloc[:ROWS].to_csv(path, index=False)
        ingest_file(ws, model, path)
    return ws


def _train(ws: Workspace, executor: str, address: str, env: dict[str, str], extra: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_ON, str(ws.root), executor, address],
        env={**env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["error"] for r in reports] == [None] * len(reports)
    return reports


def _versions(ws: Workspace) -> dict[str, Any]:
    """Each model's versions as figures that must not depend on where they were fitted, and its production."""
    found: dict[str, Any] = {}
    for model in ws.fleet.models:
        versions = ws.registry.versions(model)
        found[model] = {
            "production": ws.registry.alias(model, PRODUCTION),
            "versions": sorted(
                (
                    v.number,
                    v.family,
                    v.dataset_version,
                    json.dumps(v.params, sort_keys=True),
                    v.metrics.value,
                    tuple(v.metrics.ci),
                    v.metrics.cv.score if v.metrics.cv else None,
                )
                for v in versions
            ),
        }
    return found


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
    reports = _train(remote, "ray", cluster.address, cluster.env)
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
