"""What watching production costs the server: serving throughput while the worker's drift checks run vs not.

    .venv/bin/python benchmarks/monitor_overhead.py --workspace WS [--connections 64] [--duration 10] [--repeat 3]

WS holds a production `banking77` model and the drops it was trained on (the checks build their reference from
them). One `shoal serve` process (`--workers 1`) serves a copy of it; `wrk` sends Banking77 test texts, one per
request, so the prediction log fills. A round measures "off" (the server alone), then "on": a second process runs the
worker's check of `banking77` (`shoal.monitor.watch.latest_window`: the newest 500 logged predictions, the drift and
quality tests) back to back for the whole run — a check every few seconds, where the default `monitor.every` is one
an hour. Printed: requests/s (2xx) of both, their ratio (goal >= 95%), the checks done and the CPU seconds one check
takes, and the share of one core an hourly check costs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    MODEL,
    arguments,
    banking77_texts,
    copy_workspace,
    free_port,
    lua_script,
    median_run,
    route,
    server,
    wrk,
    wrk_binary,
)
from machine import load_average, print_command, print_machine


def check_loop(workspace: Path, seconds: float) -> None:
    """Run the drift check back to back for `seconds`; print the checks done and their CPU seconds."""
    from shoal.monitor.watch import latest_window
    from shoal.workspace import Workspace

    ws = Workspace(workspace)
    checks, cpu, deadline = 0, 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.process_time()
        latest_window(ws, MODEL, window=500, min_samples=200, level=1 / 168)
        cpu += time.process_time() - started
        checks += 1
    print(f"CHECKS {checks} CPU {cpu:.3f}", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--check-loop"]:
        check_loop(Path(sys.argv[2]), float(sys.argv[3]))
        return
    args = arguments(__doc__, connections=64, duration=10).parse_args()
    begun = print_machine()
    wrk_binary()  # before any server starts
    texts = banking77_texts(args.data)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    per_check: list[float] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        root, port = copy_workspace(args.workspace, folder), free_port()
        command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--workers", "1", "--port", str(port)]
        with server(command, port, path=route()) as (url, _):
            script = lua_script(texts, folder)
            wrk(url, script, args.connections, 5)  # fills the log before the first check
            for round_ in range(args.repeat):
                runs["off"].append(wrk(url, script, args.connections, args.duration, warmup=0))
                loop = [sys.executable, __file__, "--check-loop", str(root), str(args.duration + 1)]
                checker = subprocess.Popen(loop, stdout=subprocess.PIPE, text=True)
                runs["on"].append(wrk(url, script, args.connections, args.duration, warmup=0))
                out, _ = checker.communicate(timeout=args.duration + 120)
                checks, cpu = out.split()[1], out.split()[3]
                per_check.append(float(cpu) / max(1, int(checks)))
                print(f"round {round_ + 1}: {checks} checks while on; {load_average()}", file=sys.stderr, flush=True)
    off, on = median_run(runs["off"]), median_run(runs["on"])
    print(f"\none `shoal serve` process, c={args.connections}, {args.duration} s runs, median of {args.repeat}\n")
    print("| drift checks | requests/s (2xx) | p50 ms | p99 ms | failed |\n|---|---:|---:|---:|---:|")
    for label, r in (("off", off), ("on, back to back", on)):
        print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.1f} | {r['failed']:.0f} |")
    cpu = statistics.median(per_check)
    print(
        f"\non / off: {100 * on['rps'] / off['rps']:.1f}% of the requests/s with checks back to back "
        f"(goal >= 95%); one check: {cpu:.2f} CPU s, so an hourly check takes {100 * cpu / 3600:.3f}% of one core"
    )
    print_command(begun)


if __name__ == "__main__":
    main()
