"""Serving throughput and latency, side by side in one run: shoal vs plain FastAPI vs a fixed-window batcher vs
LitServe and BentoML (each with its own batching), with the in-process limit (the model called in batches of 64).

    .venv/bin/python benchmarks/serve.py [--workspace benchmarks/.work/lifecycle] [--duration 20]
                                         [--concurrency 1,16,64,256] [--peers litserve,bentoml]

The peers are installed only for the benchmark, each in its own venv under benchmarks/.work/venvs/ (made on first
use: shoal's core plus the pinned peer), and serve the very same predictor object (benchmarks/peers/).

Needs `wrk` (Debian package) and a workspace whose `banking77` model has a production version (made by
benchmarks/lifecycle.py). Every request body is one Banking77 test text, cycled by a Lua script; traffic goes to
127.0.0.1 only. Each server gets a 3 s warm-up at each concurrency before the measured run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
from machine import print_command, print_machine

from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
MODEL = "banking77"
ROUTE = f"/v1/models/{MODEL}/predict"
PEERS = {"litserve": "litserve==0.2.19", "bentoml": "bentoml==1.4.40"}
PEER_DIR = ROOT / "benchmarks" / "peers"


def peer_venv(name: str) -> Path:
    """The peer's own venv (shoal core + the peer), created on first use; returns its bin folder."""
    venv = ROOT / "benchmarks" / ".work" / "venvs" / name
    if not (venv / ".ready").exists():
        print(f"installing {PEERS[name]} into {venv} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", str(ROOT), PEERS[name]], check=True)
        (venv / ".ready").touch()
    return venv / "bin"


def peer_command(name: str) -> list[str]:
    bin_dir = peer_venv(name)
    if name == "litserve":
        return [str(bin_dir / "python"), str(PEER_DIR / "litserve_app.py")]
    return [str(bin_dir / "bentoml"), "serve", "bentoml_app:Banking77", "--working-dir", str(PEER_DIR), "--port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lua_script(texts: list[str], folder: Path) -> Path:
    bodies = ",\n".join(f"[==[{json.dumps({'inputs': [t]})}]==]" for t in texts)
    script = folder / "bodies.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nbodies = {{\n{bodies}\n}}\n'
        "counter = 0\nrequest = function()\n  counter = counter + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])\nend\n"
    )
    return script


@contextmanager
def server(
    command: list[str], env: dict[str, str], port: int, *, route: str = ROUTE, timeout: float = 120
) -> Iterator[tuple[str, int]]:
    """Start a server in its own session; yield (url, pid) once it answers and /readyz is not 503."""
    process = subprocess.Popen(
        command, env={**os.environ, **env}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answered = httpx.post(url + route, json={"inputs": ["warm up"]}, timeout=5).status_code == 200
                # shoal also serves the workspace's other models: wait until all are loaded (/readyz)
                if answered and httpx.get(url + "/readyz", timeout=5).status_code != 503:
                    break
                time.sleep(0.3)
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"{command} did not answer within {timeout:.0f} s")
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d3s", url + ROUTE], capture_output=True, check=True, timeout=60)
    out = subprocess.run(
        [*base, f"-d{seconds}s", "--timeout", "10s", url + ROUTE],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "failed": float(int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def in_process(ws: Workspace, texts: list[str], seconds: float = 10) -> float:
    predictor = ws.load_predictor(ws.registry.version(MODEL, ws.registry.alias(MODEL)))
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        predictor.predict_proba(texts[i : i + 64])
        done, i = done + 64, (i + 64) % (len(texts) - 64)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "lifecycle")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--peers", default="litserve,bentoml", help="comma-separated, of: " + ", ".join(PEERS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    root = args.workspace.resolve()
    ws = Workspace(root)
    if ws.registry.alias(MODEL) is None:
        sys.exit(f"{root} has no production {MODEL}; run benchmarks/lifecycle.py first")
    texts = pd.read_csv(args.data / "banking77" / "test.csv", keep_default_na=False)["text"].tolist()
    levels = [int(c) for c in args.concurrency.split(",")]
    shoal = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--port"]
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "serve_baselines:app",
        "--factory",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(ROOT / "benchmarks"),
        "--port",
    ]
    base_env = {"SHOAL_WORKSPACE": str(root)}
    # name: (command, extra arguments, environment, server processes)
    servers = {
        "shoal (1 worker)": (shoal, ["--workers", "1"], {}, 1),
        "shoal (2 workers)": (shoal, ["--workers", "2"], {}, 2),
        "plain FastAPI (1 worker)": (uvicorn, [], {"SHOAL_BASELINE": "plain"}, 1),
        "plain FastAPI (2 workers)": (uvicorn, ["--workers", "2"], {"SHOAL_BASELINE": "plain"}, 2),
        "fixed window 64 / 2 ms": (uvicorn, [], {"SHOAL_BASELINE": "window"}, 1),
    }
    for peer in filter(None, args.peers.split(",")):
        servers[f"{peer} {PEERS[peer].split('==')[1]} (batch 64)"] = (peer_command(peer), [], {}, 1)
    begun = print_machine()
    print(f"{args.duration} s per run", flush=True)
    limit = in_process(ws, texts)
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        script = lua_script(texts, Path(folder))
        for name, (command, extra, env, _) in servers.items():
            port = free_port()
            with server([*command, str(port), *extra], {**base_env, **env}, port) as (url, _):
                results[name] = {c: wrk(url, script, c, args.duration) for c in levels}
            print(f"measured {name}", file=sys.stderr, flush=True)
    print(f"\nin-process limit (batches of 64): {limit:,.0f} texts/s\n")
    print("| server | " + " | ".join(f"c={c} req/s (p50 / p99 ms)" for c in levels) + " | failed |")
    print("|---|" + "---|" * len(levels) + "---|")
    for name, by_level in results.items():
        cells = [f"{r['rps']:,.0f} ({r['p50']:.2f} / {r['p99']:.1f})" for r in by_level.values()]
        print(f"| {name} | " + " | ".join(cells) + f" | {sum(r['failed'] for r in by_level.values()):.0f} |")
    shoal_of = {1: "shoal (1 worker)", 2: "shoal (2 workers)"}
    print("\nratios of requests/s, shoal / other with the same number of server processes:\n")
    print("| shoal / other | " + " | ".join(f"c={c}" for c in levels) + " |")
    print("|---|" + "---|" * len(levels))
    for name, by_level in results.items():
        processes = servers[name][3]
        if name.startswith("shoal") or processes not in shoal_of:
            continue
        cells = [f"{results[shoal_of[processes]][c]['rps'] / by_level[c]['rps']:.2f}x" for c in levels]
        print(f"| {shoal_of[processes]} / {name} | " + " | ".join(cells) + " |")
    print_command(begun)


if __name__ == "__main__":
    main()
