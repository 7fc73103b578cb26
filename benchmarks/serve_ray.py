"""`shoal serve --backend ray` vs `shoal serve` on the Banking77 TF-IDF model, equal declared CPUs: 1 Ray Serve
replica vs 1 worker process, 2 replicas vs 2 workers; wrk at c=1/16/64; then a promotion under load on 2 replicas.

    PYTHONPATH=src .venv/bin/python benchmarks/serve_ray.py --workspace WS [--duration 10] [--repeat 3]
                                                            [--postgres URL]

WS holds a production Banking77 version (benchmarks/lifecycle.py makes one). Its production version is copied into a
fresh workspace whose registry is a temporary PostgreSQL database (`--postgres`: the server; default
$SHOAL_TEST_POSTGRES_URL) and whose artifacts are a folder both sides read; both backends serve that workspace.
The Ray side is a real two-node cluster on 127.0.0.1 (shoal.train.local_cluster: two `ray start` processes, one CPU
each, free ports) with Ray Serve's proxy on the head node: 1 replica uses one node, 2 replicas one per node. Every
figure is the median of `--repeat` runs; requests/s count 2xx answers only. The promotion: while wrk sends c=16 for
`--duration` seconds, a copy of the version is registered and promoted; its failed requests (non-2xx, socket
errors) are counted and every replica must serve the new version afterwards.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import yaml
from harness import (
    MODEL,
    ROUTE,
    arguments,
    banking77_texts,
    copy_version,
    free_port,
    lua_script,
    median_run,
    process_count,
    server,
    wrk,
    wrk_binary,
)
from machine import load_average, print_command, print_machine

from shoal.registry.database import temporary_database
from shoal.train.local_cluster import Cluster, actor_processes, local_cluster
from shoal.workspace import Workspace

CONCURRENCY = (1, 16, 64)
#: after the promotion, this many model descriptions in a row must name the new version (two replicas, each request
#: to one of them at random: a replica still on the old version is missed with probability 2**-19)
IN_A_ROW = 20


def _workspace(source: Workspace, folder: Path, registry: str) -> Workspace:
    """A workspace serving a copy of the source's production Banking77 version, on the PostgreSQL `registry`."""
    version = source.registry.version(MODEL, source.registry.alias(MODEL))  # type: ignore[arg-type]
    fleet = {
        "workspace": {"registry": registry, "artifacts": (folder / "artifacts").as_uri()},
        "models": {MODEL: {"task": "text-classification", "families": [version.family]}},
    }
    root = folder / "ws"
    root.mkdir()
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(root)
    ws.registry.ensure_model(MODEL, "text-classification")
    ws.registry.set_alias(MODEL, copy_version(source, ws, MODEL), actor="benchmark", reason="serve_ray benchmark")
    return ws


REPLICA = "ray::ServeReplica:shoal:shoal-replica"


def _replica_mib(cluster: Cluster) -> list[float]:
    """The resident memory (MiB) of each replica's process."""
    return [p.memory_info().rss / 2**20 for node in actor_processes(cluster, REPLICA) for p in node]


def _ray_processes(cluster: Cluster) -> int:
    """Every process of the cluster: each node's `ray start`, GCS (head), raylet, agents, and the workers (Serve's
    controller, proxy and replicas)."""
    return sum(process_count(node.pid) for node in cluster.nodes if psutil.pid_exists(node.pid))


@contextmanager
def _backend(kind: str, root: Path, n: int, cluster: Cluster, path: str = ROUTE) -> Iterator[tuple[str, str]]:
    """The server of `kind` (`local` with `n` workers, `ray` with `n` replicas), once `path` answers (at once for
    ""); yields (url, its processes)."""
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--port", str(port)]
    if kind == "local":
        with server([*command, "--workers", str(n)], port, timeout=600) as (url, pid):
            yield url, f"{process_count(pid)} (uvicorn --workers {n}: every process of its tree)"
        return
    command += ["--backend", "ray", "--address", cluster.address, "--replicas", str(n)]
    with server(command, port, cluster.env, path=path, timeout=600) as (url, pid):
        yield (
            url,
            (
                f"{_ray_processes(cluster) + process_count(pid)} (the `shoal serve --backend ray` driver, and the "
                f"cluster's: 2 `ray start`, GCS, 2 raylets and their agents, Serve's controller, 1 proxy, {n} replica"
                f"{'s' * (n > 1)})"
            ),
        )


def _wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}/readyz did not answer 200 within {timeout:g} s")
        time.sleep(0.5)


def _promotion(url: str, ws: Workspace, source: Workspace, script: Path, seconds: int) -> tuple[dict[str, float], int]:
    """wrk at c=16 while a new version is promoted a third of the way in; (its figures, the new version)."""
    result: dict[str, dict[str, float]] = {}
    load = threading.Thread(target=lambda: result.update(run=wrk(url, script, 16, seconds, warmup=0)))
    load.start()
    time.sleep(seconds / 3)
    new = copy_version(source, ws, MODEL, copy=2)
    ws.registry.set_alias(MODEL, new, actor="benchmark", reason="promotion under load")
    load.join(seconds + 90)
    deadline = time.monotonic() + 60
    seen: list[int] = []
    while seen[-IN_A_ROW:] != [new] * IN_A_ROW:
        if time.monotonic() > deadline:
            raise SystemExit(f"the replicas did not all serve v{new} within 60 s: {seen[-IN_A_ROW:]}")
        seen.append(httpx.get(f"{url}/v1/models/{MODEL}", timeout=10).json()["serving_version"])
    return result["run"], new


def main() -> None:
    parser = arguments(__doc__, duration=10)
    parser.add_argument("--postgres", default=os.environ.get("SHOAL_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL (a PostgreSQL server where a temporary database can be made)")
    begun = print_machine()
    wrk_binary()
    texts = banking77_texts(args.data)
    source = Workspace(args.workspace)
    rows: list[str] = []
    counts: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory() as name,
        temporary_database(args.postgres, "shoal_bench_ray") as registry,
        local_cluster(nodes=2) as cluster,
    ):
        folder = Path(name)
        ws = _workspace(source, folder, registry)
        script = lua_script(texts, folder)
        for n in (1, 2):
            for kind in ("local", "ray"):
                with _backend(kind, ws.root, n, cluster) as (url, processes):
                    counts[f"{kind} {n}"] = processes
                    for c in CONCURRENCY:
                        runs = [wrk(url, script, c, args.duration) for _ in range(args.repeat)]
                        r = median_run(runs)
                        label = f"{n} worker{'s' * (n > 1)}" if kind == "local" else f"{n} replica{'s' * (n > 1)}"
                        rows.append(
                            f"| {kind} | {label} | {c} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.1f} | "
                            f"{r['failed']:.0f} |"
                        )
                        print(f"{rows[-1]}  ({load_average()})", file=sys.stderr, flush=True)
        with _backend("ray", ws.root, 2, cluster) as (url, _):
            promoted, new = _promotion(url, ws, source, script, 3 * args.duration)
            with_model = _replica_mib(cluster)  # both replicas have answered with the new version: both loaded
        ws.close()
        empty = folder / "empty"  # a replica's own cost: the same app with no model to load
        empty.mkdir()
        (empty / "shoal.yaml").write_text(yaml.safe_dump({"workspace": {"registry": registry}, "models": {}}))
        with _backend("ray", empty, 1, cluster, path="") as (url, _):
            _wait_ready(url)
            without_model = _replica_mib(cluster)
    print(
        f"\nBanking77 TF-IDF, wrk {args.duration} s runs (3 s warm-up), median of {args.repeat}; one CPU declared "
        "per worker / replica, on a 2-core machine shared by both sides' processes\n"
    )
    print("| backend | size | c | requests/s (2xx) | p50 ms | p99 ms | failed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nprocesses:")
    for label, processes in counts.items():
        print(f"- {label}: {processes}")
    print(
        f"\npromotion under load (2 replicas, c=16, {3 * args.duration} s, promoted after {args.duration} s): "
        f"{promoted['rps']:,.0f} requests/s (2xx), p99 {promoted['p99']:.1f} ms, {promoted['failed']:.0f} failed "
        f"requests; then {IN_A_ROW} descriptions in a row served v{new}"
    )
    print(
        f"\nreplica RSS: {', '.join(f'{m:,.0f}' for m in with_model)} MiB serving Banking77 (after the promotion); "
        f"{', '.join(f'{m:,.0f}' for m in without_model)} MiB with no model (what one more replica costs before "
        "its models)"
    )
    print_command(begun)


if __name__ == "__main__":
    main()
