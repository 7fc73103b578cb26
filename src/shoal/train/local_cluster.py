"""A real Ray cluster on 127.0.0.1 for the scale-out tests and benchmarks: a head and further nodes, each a
`ray start --block` process in a session of its own (one CPU each by default), stopped at the end — only these
processes, never `ray stop`, which ends every Ray process of the machine, other users' too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import shoal

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
START_SECONDS = 90.0
#: each node: one CPU, 1.5 GiB for tasks, a small object store, the quiet resource for latency timing
NODE = ["--num-cpus=1", f"--memory={3 * 2**29}", f"--object-store-memory={100 * 2**20}"]
LATENCY = ['--resources={"shoal_latency": 1}']
#: the `src` folder (or site-packages) this shoal is imported from: the nodes' workers import the same code
SOURCES = str(Path(shoal.__file__).resolve().parents[1])


class ClusterFailed(RuntimeError):
    """A node did not start (the message has the end of its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    """The ports a node listens on besides its GCS: free ones, so two nodes on one machine never collide."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port")
    names += ("dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    return [f"--{name}={free_port()}" for name in names]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    #: the `ray start --block` processes, the head first
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a `ray start --block` and everything it started: its session's process group and every descendant."""
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
            raise ClusterFailed(f"'ray start' did not start its node within {START_SECONDS:g} s")
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
        except BaseException:  # its deadline, or the caller's timeout: never leave the node running
            stop(process)
            raise
        stop(process)
    raise ClusterFailed(f"'ray start' ended with code {process.returncode}: {log.read_text(errors='replace')[-3000:]}")


@contextmanager
def local_cluster(
    nodes: int = 2, node_args: list[str] | None = None, node_env: dict[int, dict[str, str]] | None = None
) -> Iterator[Cluster]:
    """A head node and `nodes - 1` more on 127.0.0.1, each started with `NODE + LATENCY` (or `node_args`); node `i`
    (0: the head) with `node_env[i]` added to its environment (its workers inherit it)."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # the mode said outright: else Ray turns token auth on where ~/.ray/auth_token exists (any local `ray.init()`
    # writes one), and the cluster's processes refuse each other ('InvalidAuthToken')
    env.update(PYTHONPATH=SOURCES, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *(node_args or [*NODE, *LATENCY])]
    head = ["start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
    cluster = Cluster(address, env)
    try:
        for args in (head, *[["start", f"--address={address}"]] * (nodes - 1)):
            i = len(cluster.nodes)
            cluster.nodes.append(
                _start([*args, *common], {**env, **(node_env or {}).get(i, {})}, temp / f"node{i}.log")
            )
        yield cluster
    finally:
        for process in reversed(cluster.nodes):
            stop(process)
        shutil.rmtree(temp, ignore_errors=True)


def actor_processes(cluster: Cluster, title: str) -> list[list[psutil.Process]]:
    """Per node (the head first), its live processes whose title (`ray::CLASS`) contains `title`: a Ray actor's
    worker process, found without the dashboard's state API."""
    found: list[list[psutil.Process]] = []
    for node in cluster.nodes:
        matching = []
        with suppress(psutil.NoSuchProcess):
            for process in psutil.Process(node.pid).children(recursive=True):
                with suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    if process.status() != psutil.STATUS_ZOMBIE and title in " ".join(process.cmdline()):
                        matching.append(process)
        found.append(matching)
    return found
