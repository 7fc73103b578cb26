"""Serving throughput and latency, side by side in one run and with equal process counts: shoal vs plain FastAPI vs
a fixed-window batcher vs LitServe, BentoML and Ray Serve (each with its own batching), against the in-process limit
(the model called in batches of 64), with issue 13's goals checked at the end.

    .venv/bin/python benchmarks/serve.py [--workspace benchmarks/.work/lifecycle] [--duration 20] [--repeat 3]
                                         [--concurrency 1,16,64,256] [--peers litserve,bentoml,ray]
                                         [--workers 1,2]

Every server runs once with each number of `--workers` (uvicorn workers, LitServe/BentoML workers, Ray replicas);
ratios only divide figures of equal worker counts. Each round starts and measures every server in turn, and every
figure is the median of `--repeat` rounds. The peers are installed only for the benchmark, each in its own venv
under benchmarks/.work/venvs/ (made on first use: shoal's core plus the pinned peer), and serve the very same
predictor object (benchmarks/peers/).

Needs `wrk` (Debian package) and a workspace whose `banking77` model has a production version (a copy of it is
served). Every request body is one Banking77 test text, cycled by a Lua script; traffic goes to 127.0.0.1 only.
Each server gets a 3 s warm-up at each concurrency before the measured run. Non-2xx answers and socket errors are
failures, excluded from requests/s.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from harness import (
    MODEL,
    ROOT,
    arguments,
    banking77_texts,
    copy_workspace,
    free_port,
    lua_script,
    median_run,
    process_count,
    server,
    wrk,
    wrk_binary,
)
from machine import load_average, print_command, print_machine

from shoal.workspace import Workspace

PEERS = {"litserve": "litserve==0.2.19", "bentoml": "bentoml==1.4.40", "ray": "ray[serve]==2.60.0"}
PEER_DIR = ROOT / "benchmarks" / "peers"
SHOAL, PLAIN, WINDOW, CEILING = "shoal", "plain FastAPI", "fixed window 64 / 2 ms", "raw ASGI, no model (ceiling)"
NOTE = """Workers: uvicorn worker processes (shoal, plain FastAPI, fixed window), LitServe inference workers (and as
many API-server processes), BentoML workers, Ray Serve replicas. `processes` counts each server's whole process tree,
supervisors and helpers included; Ray also runs its GCS, raylet, Serve controller, HTTP proxy and agents. Equal
workers is the comparison, not equal processes."""


def peer_venv(name: str) -> Path:
    """The peer's own venv (shoal core + the peer), created on first use; returns its bin folder."""
    venv = ROOT / "benchmarks" / ".work" / "venvs" / name
    if not (venv / ".ready").exists():
        print(f"installing {PEERS[name]} into {venv} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", str(ROOT), PEERS[name]], check=True, timeout=1800)
        (venv / ".ready").touch()
    return venv / "bin"


def commands(peers: list[str], workers: int, ceiling: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (command whose last argument is the port, environment) of every server with `workers` workers."""
    n = str(workers)
    uvicorn = [sys.executable, "-m", "uvicorn", "serve_baselines:app", "--factory", "--loop", "uvloop", "--http"]
    uvicorn += ["httptools", "--no-access-log", "--log-level", "warning", "--app-dir", str(ROOT / "benchmarks")]
    uvicorn += ["--workers", n, "--port"]
    found = {
        SHOAL: ([sys.executable, "-m", "shoal", "serve", "--workers", n, "--port"], {}),
        PLAIN: (uvicorn, {"SHOAL_BASELINE": "plain"}),
        WINDOW: (uvicorn, {"SHOAL_BASELINE": "window"}),
    }
    if ceiling:
        found[CEILING] = (uvicorn, {"SHOAL_BASELINE": "ceiling"})
    for peer in peers:
        bin_dir, version = peer_venv(peer), PEERS[peer].split("==")[1]
        python = str(bin_dir / "python")
        peer_commands = {
            "litserve": [python, str(PEER_DIR / "litserve_app.py")],
            "bentoml": [str(bin_dir / "bentoml"), "serve", "bentoml_app:Banking77", "--working-dir", str(PEER_DIR)],
            "ray": [python, str(PEER_DIR / "ray_app.py")],
        }
        found[f"{peer} {version}"] = (
            [*peer_commands[peer], "--port"],
            {"PEER_WORKERS": n, "RAY_USAGE_STATS_ENABLED": "0"},
        )
    return found


def in_process(ws: Workspace, texts: list[str], seconds: float = 10) -> float:
    """Texts/s of the production predictor called in batches of 64, in this process."""
    predictor = ws.load_predictor(ws.registry.version(MODEL, ws.registry.alias(MODEL)))
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        predictor.predict_proba(texts[i : i + 64])
        done, i = done + 64, (i + 64) % (len(texts) - 64)
    return done / (time.perf_counter() - start)


def measure(
    command: list[str], env: dict[str, str], levels: list[int], script: Path, seconds: int
) -> tuple[int, dict[int, dict[str, float]]]:
    """Start the server (its command ends before the port), run wrk at each concurrency; returns its process count
    and each level's figures."""
    port = free_port()
    with server([*command, str(port)], port, env, timeout=300) as (url, pid):
        return process_count(pid), {c: wrk(url, script, c, seconds) for c in levels}


def goals(results: dict[tuple[str, int], dict[int, dict[str, float]]], limit: float) -> None:
    """Issue 13's serving goals, each met or missed (or not measured in this run)."""

    def figure(name: str, workers: int, c: int, key: str) -> float | None:
        return results.get((name, workers), {}).get(c, {}).get(key)

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return top / bottom if top is not None and bottom else None

    litserve = f"litserve {PEERS['litserve'].split('==')[1]}"
    rows: list[tuple[str, float | None, float, bool]] = []  # label, measured, bound, whether the bound is a maximum
    for w in (1, 2):
        for other, target in ((PLAIN, 7.0), (WINDOW, 1.5), (litserve, 2.0)):
            measured = ratio(figure(SHOAL, w, 64, "rps"), figure(other, w, 64, "rps"))
            rows.append((f"c=64, {w} v {w} workers: shoal / {other} (x)", measured, target, False))
        rows.append((f"c=64, shoal {w} worker(s): p99 (ms)", figure(SHOAL, w, 64, "p99"), 60, True))
    shoal_p50, plain_p50 = figure(SHOAL, 1, 1, "p50"), figure(PLAIN, 1, 1, "p50")
    gap = shoal_p50 - plain_p50 if shoal_p50 is not None and plain_p50 is not None else None
    rows.append(("c=1, 1 worker: shoal p50 - plain FastAPI p50 (ms)", gap, 0.3, True))
    share = ratio(figure(SHOAL, 2, 64, "rps"), limit / 100)
    rows.append(("c=64, shoal 2 workers: % of the in-process limit", share, 70, False))
    print("\n| goal (issue 13) | measured | target | verdict |\n|---|---:|---:|---|")
    for label, measured, bound, at_most in rows:
        met = measured is not None and (measured <= bound if at_most else measured >= bound)
        verdict = "not measured" if measured is None else "met" if met else "MISSED"
        shown = "-" if measured is None else f"{measured:.2f}"
        print(f"| {label} | {shown} | {'<=' if at_most else '>='} {bound:g} | {verdict} |")


def main() -> None:
    parser = arguments(__doc__, duration=20)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--workers", default="1,2", help="worker counts every server runs with")
    parser.add_argument("--peers", default="litserve,bentoml,ray", help="comma-separated, of: " + ", ".join(PEERS))
    parser.add_argument(
        "--ceiling", action="store_true", help="also a raw ASGI app without a model: what uvicorn itself answers"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    texts = banking77_texts(args.data)
    levels = [int(c) for c in args.concurrency.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    servers = {
        (name, w): spec
        for w in map(int, args.workers.split(","))
        for name, spec in commands(peers, w, args.ceiling).items()
    }
    begun = print_machine()
    wrk_binary()  # before any server or training starts
    print(f"{args.duration} s per run, median of {args.repeat} rounds\n{NOTE}", flush=True)
    runs: dict[tuple[str, int], dict[int, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    limits, tree = [], {}
    with tempfile.TemporaryDirectory() as folder:
        root = copy_workspace(args.workspace, Path(folder))
        script = lua_script(texts, Path(folder))
        for round_ in range(args.repeat):
            limits.append(in_process(Workspace(root), texts))
            print(f"round {round_ + 1}: in-process limit {limits[-1]:,.0f} texts/s; {load_average()}", flush=True)
            for (name, workers), (command, env) in servers.items():
                try:
                    tree[name, workers], figures = measure(
                        command, {"SHOAL_WORKSPACE": str(root), **env}, levels, script, args.duration
                    )
                except RuntimeError as error:  # one server that does not start leaves the others' figures
                    print(f"  SKIPPED {name}, workers={workers} this round: {error}", flush=True)
                    continue
                for c, figure in figures.items():
                    runs[name, workers][c].append(figure)
                print(f"  measured {name}, workers={workers}; {load_average()}", file=sys.stderr, flush=True)
    results = {key: {c: median_run(r) for c, r in by_level.items()} for key, by_level in runs.items()}
    limit = statistics.median(limits)
    print(f"\nin-process limit (batches of 64, median of {len(limits)}): {limit:,.0f} texts/s\n")
    print(
        "| server | workers | processes | " + " | ".join(f"c={c} req/s (p50 / p99 ms)" for c in levels) + " | failed |"
    )
    print("|---|---:|---:|" + "---|" * len(levels) + "---:|")
    for (name, workers), by_level in results.items():
        cells = [f"{r['rps']:,.0f} ({r['p50']:.2f} / {r['p99']:.1f})" for r in by_level.values()]
        failed = sum(r["failed"] for r in by_level.values())
        print(f"| {name} | {workers} | {tree[name, workers]} | " + " | ".join(cells) + f" | {failed:.0f} |")
    print("\nratios of 2xx requests/s, shoal / other, with equal workers:\n")
    print("| shoal / other (workers) | " + " | ".join(f"c={c}" for c in levels) + " |")
    print("|---|" + "---|" * len(levels))
    for (name, workers), by_level in results.items():
        if name != SHOAL and (SHOAL, workers) in results:
            cells = [f"{results[SHOAL, workers][c]['rps'] / max(by_level[c]['rps'], 1e-9):.2f}x" for c in levels]
            print(f"| shoal / {name} ({workers} v {workers}) | " + " | ".join(cells) + " |")
    goals(results, limit)
    print_command(begun)


if __name__ == "__main__":
    main()
