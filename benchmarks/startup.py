"""Start-up costs a user meets every day: `shoal --help`, `shoal serve` until ready, and the server's memory.

    .venv/bin/python benchmarks/startup.py --workspace WS [--help-runs 10] [--models 10] [--repeat 3]

- `shoal --help`: wall time of the `shoal` script next to this Python (`python -m shoal` if there is none), the
  median of `--help-runs` runs.
- `shoal serve` (one process): wall time from launching it to the first `GET /readyz` 200 (polled every 20 ms),
  for a fleet of `--models` production models, each its own copy of the workspace's production Banking77 version.
- Server RSS (psutil, the server's whole process tree) once /readyz is 200: "before any model" is a fleet whose
  one model has no production version, so the server has started, polled the registry and loaded nothing; "1
  model" and "N models" after each model has answered one prediction.
Each server figure is the median of `--repeat` starts. Goals (issue 13): help <= 0.5 s, ready with 10 models
<= 5 s, RSS before any model <= 150 MiB.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from harness import arguments, copy_workspace, fleet_of, free_port, route, server
from machine import load_average, print_command, print_machine

from shoal.workspace import Workspace


def help_seconds(runs: int) -> list[float]:
    script = Path(sys.executable).parent / "shoal"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "shoal"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*command, "--help"], capture_output=True, check=True, timeout=120)
        times.append(time.perf_counter() - start)
    return times


def ready_and_rss(root: Path, models: int) -> tuple[float, float]:
    """Seconds from launching `shoal serve` to /readyz 200, and the server's RSS (MiB) once each model answered."""
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--workers", "1", "--port", str(port)]
    start = time.perf_counter()
    with server(command, port, path="") as (url, pid), httpx.Client(timeout=5) as client:
        while True:
            try:
                if client.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > 300:
                raise RuntimeError(f"shoal serve with {models} models was not ready in 300 s")
            time.sleep(0.02)
        ready = time.perf_counter() - start
        for i in range(models):
            client.post(url + route(f"m{i:03d}"), json={"inputs": ["my card has not arrived"]}).raise_for_status()
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return ready, sum(p.memory_info().rss for p in tree) / 2**20


def main() -> None:
    args = arguments(__doc__, help_runs=10, models=10).parse_args()
    begun = print_machine()
    helps = help_seconds(args.help_runs)
    print(f"shoal --help done; {load_average()}", file=sys.stderr, flush=True)
    figures: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        source = Workspace(copy_workspace(args.workspace, folder))
        fleets = {
            "before any model (1 model, no production version)": (fleet_of(source, 1, folder, promote=False), 0),
            "1 model": (fleet_of(source, 1, folder), 1),
            f"{args.models} models": (fleet_of(source, args.models, folder), args.models),
        }
        for round_ in range(args.repeat):
            for label, (root, models) in fleets.items():
                figures.setdefault(label, []).append(ready_and_rss(root, models))
            print(f"round {round_ + 1} done; {load_average()}", file=sys.stderr, flush=True)
    print(f"\n`shoal --help`: median {statistics.median(helps):.2f} s of {len(helps)} runs ", end="")
    print(f"(min {min(helps):.2f}, max {max(helps):.2f})\n")
    print(f"`shoal serve`, one process, median of {args.repeat} starts:\n")
    print("| fleet | launch to /readyz 200 (s) | server RSS (MiB) |\n|---|---:|---:|")
    for label, runs in figures.items():
        ready, rss = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"| {label} | {ready:.2f} | {rss:,.0f} |")
    checks = [
        ("`shoal --help` (s)", statistics.median(helps), 0.5),
        (f"ready with {args.models} models (s)", statistics.median(r for r, _ in figures[f"{args.models} models"]), 5),
        ("RSS before any model (MiB)", statistics.median(m for _, m in next(iter(figures.values()))), 150),
    ]
    print("\n| goal (issue 13) | measured | target | verdict |\n|---|---:|---:|---|")
    for label, measured, bound in checks:
        print(f"| {label} | {measured:.2f} | <= {bound:g} | {'met' if measured <= bound else 'MISSED'} |")
    print_command(begun)


if __name__ == "__main__":
    main()
