"""Many models in one process: 20 production models served by one `shoal serve` process with the load spread evenly
over all 20, vs one model served the same way, at 64 connections, in one run.

    .venv/bin/python benchmarks/serve_many.py --workspace WS [--models 20] [--connections 64] [--duration 20]
                                               [--repeat 3]

Every model is its own copy (own artifact folder) of the workspace's production Banking77 TF-IDF version, as in
benchmarks/serve_memory.py. Two servers run side by side (one process each: `--workers 1`): one with the single
model m000, one with m000..m019. A round measures the one-model server, then the 20-model server whose wrk Lua
script sends request k to model k mod 20 (an even spread); figures are medians of `--repeat` rounds, requests/s
count 2xx answers only; CPU µs per request is the server process's CPU time during a run over the requests
answered. Goal (issue 13): the spread throughput >= 80% of the one-model throughput.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from harness import (
    arguments,
    banking77_texts,
    copy_workspace,
    fleet_of,
    free_port,
    lua_script,
    median_run,
    route,
    server,
    wrk,
    wrk_binary,
)
from machine import load_average, print_command, print_machine

from shoal.workspace import Workspace


def main() -> None:
    args = arguments(__doc__, models=20, connections=64, duration=20).parse_args()
    begun = print_machine()
    wrk_binary()  # before any server or training starts
    texts = banking77_texts(args.data)
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as name, ExitStack() as servers:
        folder = Path(name)
        source = Workspace(copy_workspace(args.workspace, folder))
        loads = {}
        for count in (1, args.models):
            root, port = fleet_of(source, count, folder), free_port()
            command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--workers", "1", "--port", str(port)]
            url, pid = servers.enter_context(server(command, port, path=route("m000"), timeout=600))
            paths = [route(f"m{i:03d}") for i in range(count)]
            label = "one model" if count == 1 else f"spread evenly over {count} models"
            loads[label] = (url, pid, lua_script(texts, folder, paths))
        for round_ in range(args.repeat):
            for label, (url, pid, script) in loads.items():
                runs.setdefault(label, []).append(wrk(url, script, args.connections, args.duration, pid=pid))
            print(f"round {round_ + 1} done; {load_average()}", file=sys.stderr, flush=True)
    results = {label: median_run(r) for label, r in runs.items()}
    print(f"\none `shoal serve` process each, c={args.connections}, {args.duration} s runs, median of {args.repeat}\n")
    print("| load | requests/s (2xx) | p50 ms | p99 ms | failed | server CPU µs per request |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        figures = f"{r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.1f} | {r['failed']:.0f} | {r['cpu_us']:.0f}"
        print(f"| {label} | {figures} |")
    one, many = results.values()
    share = 100 * many["rps"] / one["rps"]
    print(f"\nspread / one model: {share:.0f}% of the requests/s (goal >= 80%: {'met' if share >= 80 else 'MISSED'})")
    print_command(begun)


if __name__ == "__main__":
    main()
