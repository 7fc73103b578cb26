"""Hot swap under load: p99 at 64 connections without swaps, then during 10 promotions/rollbacks of Banking77, in
one run against one `shoal serve` process.

    .venv/bin/python benchmarks/serve_swap.py --workspace WS [--duration 30] [--changes 10] [--connections 64]
                                              [--repeat 3]

Works on a copy of the workspace, into which a copy (own artifact folder) of the production Banking77 version is
registered as the challenger. A round is a 3 s warm-up, a `wrk` run without swaps, then a `wrk` run of the same
length during which another process (this script) moves the production alias — promote, rollback, promote, ... —
`--changes` times, evenly spread; the server notices each change by polling the registry, loads and warms the
new version beside the old and switches. Figures are medians of `--repeat` rounds; non-2xx answers and socket
errors are failures, excluded from requests/s. A sampler records which version answered, to show the swaps
really happened. Goals (issue 13): p99 during swaps <= 2x p99 without, 0 failures.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from harness import (
    MODEL,
    ROUTE,
    arguments,
    banking77_texts,
    copy_version,
    copy_workspace,
    free_port,
    lua_script,
    median_run,
    server,
    wrk,
    wrk_binary,
)
from machine import load_average, print_command, print_machine

from shoal.workspace import Workspace


def sample_versions(url: str, stop: threading.Event, seen: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            answer = client.post(url + ROUTE, json={"inputs": ["my card has not arrived"]})
            if answer.status_code == 200:
                seen.append(int(answer.json()["version"]))
            time.sleep(0.1)


def swap_run(
    url: str, load: Callable[[], dict[str, float]], ws: Workspace, challenger: int, changes: int, seconds: int
) -> tuple[dict[str, float], int]:
    """Run `load` (lasting `seconds`) while moving the alias `changes` times, evenly spread; returns its figures and
    how many version switches the sampler saw."""
    result: dict[str, float] = {}
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=sample_versions, args=(url, stop, seen))
    runner = threading.Thread(target=lambda: result.update(load()))
    runner.start()
    sampler.start()
    start, interval = time.monotonic(), seconds / (changes + 1)
    for i in range(changes):
        time.sleep(max(0.0, start + interval * (i + 1) - time.monotonic()))
        if i % 2 == 0:
            ws.registry.set_alias(MODEL, challenger, actor="benchmark", reason="swap under load")
        else:
            ws.registry.rollback(MODEL)
    runner.join()
    stop.set()
    sampler.join(timeout=30)
    return result, sum(1 for a, b in itertools.pairwise(seen) if a != b)


def main() -> None:
    args = arguments(__doc__, duration=30, changes=10, connections=64).parse_args()
    begun = print_machine()
    wrk_binary()  # before any server or training starts
    texts = banking77_texts(args.data)
    quiet, swaps, switches = [], [], []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        ws = Workspace(copy_workspace(args.workspace, folder))
        challenger = copy_version(ws, ws, MODEL)
        script, port = lua_script(texts, folder), free_port()
        command = [sys.executable, "-m", "shoal", "serve", "-w", str(ws.root), "--workers", "1", "--port", str(port)]
        with server(command, port) as (url, _):
            for round_ in range(args.repeat):
                wrk(url, script, args.connections, 3, warmup=0)
                quiet.append(wrk(url, script, args.connections, args.duration, warmup=0))
                load = partial(wrk, url, script, args.connections, args.duration, warmup=0)
                result, seen = swap_run(url, load, ws, challenger, args.changes, args.duration)
                swaps.append(result)
                switches.append(seen)
                print(f"round {round_ + 1} done; {load_average()}", file=sys.stderr, flush=True)
        ws.close()
    rows = {"no swaps": median_run(quiet), f"during {args.changes} swaps": median_run(swaps)}
    print(f"\none `shoal serve` process, c={args.connections}, {args.duration} s runs, median of {args.repeat}\n")
    print("| run | requests/s (2xx) | p50 ms | p99 ms | failed |\n|---|---:|---:|---:|---:|")
    for label, r in rows.items():
        print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.1f} | {r['failed']:.0f} |")
    ratio = rows[f"during {args.changes} swaps"]["p99"] / rows["no swaps"]["p99"]
    failed = sum(r["failed"] for r in swaps)
    print(f"\nversion switches the sampler saw in each swap run: {switches} ({args.changes} alias changes each)")
    print(f"p99 during swaps / without: {ratio:.2f}x (goal <= 2x: {'met' if ratio <= 2 else 'MISSED'})")
    print(f"failed requests during swaps: {failed:.0f} (goal 0: {'met' if failed == 0 else 'MISSED'})")
    print_command(begun)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
