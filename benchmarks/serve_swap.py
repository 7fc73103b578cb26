"""Hot swap under load: 10 promotions/rollbacks of Banking77 during a 30 s `wrk` run at 64 connections.

    .venv/bin/python benchmarks/serve_swap.py [--workspace benchmarks/.work/lifecycle] [--duration 30]
                                              [--changes 10] [--connections 64]

Works on a copy of the workspace (the source's aliases are left alone). Another process (this script) moves
the production alias between the two best TF-IDF versions — promote, rollback, promote, ... — evenly spread
over the run; the server notices each change by polling the registry, loads and warms the new version beside
the old and switches. `wrk` counts every non-2xx answer and socket error; a sampler records which version
answered, to show the swaps really happened.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
from machine import print_command, print_machine
from serve import MODEL, ROOT, ROUTE, free_port, lua_script, server, wrk

from shoal.workspace import Workspace


def sample_versions(url: str, stop: threading.Event, seen: list[tuple[float, int]]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            answer = client.post(url + ROUTE, json={"inputs": ["my card has not arrived"]})
            if answer.status_code == 200:
                seen.append((time.monotonic(), int(answer.json()["version"])))
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "lifecycle")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    begun = print_machine()
    texts = pd.read_csv(args.data / "banking77" / "test.csv", keep_default_na=False)["text"].tolist()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "ws"
        shutil.copytree(args.workspace.resolve(), root)
        ws = Workspace(root)
        champion = ws.registry.alias(MODEL)
        others = [v.number for v in ws.registry.versions(MODEL) if v.family != "majority" and v.number != champion]
        if champion is None or not others:
            sys.exit(f"{args.workspace} needs a production {MODEL} and a second non-majority version")
        challenger = others[-1]
        script = lua_script(texts, Path(folder))
        port = free_port()
        command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--port", str(port)]
        with server(command, {}, port) as (url, _):
            stop, seen = threading.Event(), []
            sampler = threading.Thread(target=sample_versions, args=(url, stop, seen))
            results: dict[str, float] = {}
            load = threading.Thread(target=lambda: results.update(wrk(url, script, args.connections, args.duration)))
            load.start()
            time.sleep(3)  # wrk's own warm-up run
            sampler.start()
            start, changes = time.monotonic(), []
            interval = args.duration / (args.changes + 1)
            for i in range(args.changes):
                time.sleep(max(0.0, start + interval * (i + 1) - time.monotonic()))
                if i % 2 == 0:
                    ws.registry.set_alias(MODEL, challenger, actor="benchmark", reason="swap under load")
                else:
                    ws.registry.rollback(MODEL)
                changes.append((time.monotonic(), ws.registry.alias(MODEL)))
            load.join()
            stop.set()
            sampler.join()
            ws.close()
    switches = sum(1 for (_, a), (_, b) in itertools.pairwise(seen) if a != b)
    print(
        f"\nswap under load: {args.changes} alias changes (v{champion} <-> v{challenger}) during {args.duration} s "
        f"at c={args.connections}\n"
    )
    print("| requests/s | p50 ms | p99 ms | non-2xx + socket errors | alias changes | version switches seen |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {results['rps']:,.0f} | {results['p50']:.2f} | {results['p99']:.1f} | {results['failed']:.0f} "
        f"| {len(changes)} | {switches} |"
    )
    print(f"\nversions answering the sampler: {dict(Counter(v for _, v in seen))}")
    print_command(begun)
    if results["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
