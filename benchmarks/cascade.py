"""A confidence cascade on Banking77 (issue 14): the small model answers, its unsure inputs go to the fallback.

    .venv/bin/python benchmarks/cascade.py --workspace WS [--small banking77] [--fallback banking77-big]
                                           [--duration 10] [--repeat 3]

WS holds both models in production, the small one declaring `cascade: {fallback: ..., max_deferral: 0.3}` (or a
target accuracy). Printed: the load average; the cascade's accuracy on the small model's test set when 0, 10, 20, 30,
50 and 100 % of the inputs (the least confident) are deferred, and at the threshold the version chose on its
out-of-fold predictions, with each tier's $ per million (`shoal eval`'s figures); then one `shoal serve` of a copy
of WS, measured with wrk on the cascade's route and on the fallback's own route in turn (same server, same
resources): requests/s at c=64 and p50 at c=1, medians of `--repeat` rounds, one Banking77 test text per request.
Ends with issue 14's goals: at most 30 % deferred for at least 99 % of the fallback's accuracy, and the cascade
served at least 2x the fallback's throughput at c=64.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from harness import arguments, banking77_texts, free_port, lua_script, median_run, route, server, wrk, wrk_binary
from machine import print_command, print_machine

from shoal.cascade.evaluation import cascade_report
from shoal.workspace import Workspace


def accuracy_table(report: dict) -> None:
    if "problem" in report:
        raise SystemExit(f"cannot judge the cascade: {report['problem']}")
    costs = report["cost_per_million"]
    print(
        f"\ncascade {report['model']} v{report['small_version']} -> {report['fallback']} v{report['fallback_version']}"
        f" on {report['n_test']} test rows (small alone {report['small_accuracy']:.4f}, fallback alone "
        f"{report['fallback_accuracy']:.4f}; $ per 1M: small {costs['small']:.4f}, fallback {costs['fallback']:.4f})"
    )
    print("\n| deferred | accuracy | % of the fallback's | $ per 1M |\n|---:|---:|---:|---:|")
    chosen = report["chosen"]
    rows = [(f"{p['deferred']:.0%}", p) for p in report["curve"]] + [(f"{chosen['deferred']:.1%} (chosen)", chosen)]
    for label, point in rows:
        share = point["accuracy"] / report["fallback_accuracy"] * 100
        print(f"| {label} | {point['accuracy']:.4f} | {share:.1f} | {point['cost_per_million']:.4f} |")


def served(workspace: Path, small: str, fallback: str, seconds: int, repeat: int) -> dict[str, dict[int, dict]]:
    """requests/s and latency of each route, c=64 and c=1, medians of `repeat` rounds on one server."""
    routes = {"cascade": route(small), "fallback alone": route(fallback)}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {64: [], 1: []} for name in routes}
    texts = banking77_texts()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "ws"  # the server writes its prediction log into its workspace
        shutil.copytree(workspace.resolve(), copy)
        port = free_port()
        command = [sys.executable, "-m", "shoal", "serve", "-w", str(copy), "--port", str(port)]
        with server(command, port, path=routes["cascade"], timeout=300) as (url, _):
            for _ in range(repeat):
                for name, path in routes.items():
                    script = lua_script(texts, Path(folder), [path])
                    for connections in (64, 1):
                        runs[name][connections].append(wrk(url, script, connections, seconds))
    return {name: {c: median_run(r) for c, r in levels.items()} for name, levels in runs.items()}


def main() -> None:
    parser = arguments(__doc__, duration=10)
    parser.add_argument("--small", default="banking77")
    parser.add_argument("--fallback", default="banking77-big")
    args = parser.parse_args()
    begun = print_machine()
    wrk_binary()  # before any server or training starts
    ws = Workspace(args.workspace)
    report = cascade_report(ws, args.small)
    ws.close()
    if report is None:
        raise SystemExit(f"model {args.small!r} declares no cascade in {args.workspace}/shoal.yaml")
    accuracy_table(report)
    figures = served(args.workspace, args.small, args.fallback, args.duration, args.repeat)
    print("\n| route | req/s c=64 | p99 ms c=64 | p50 ms c=1 | failed |\n|---|---:|---:|---:|---:|")
    for name, levels in figures.items():
        failed = levels[64]["failed"] + levels[1]["failed"]
        print(f"| {name} | {levels[64]['rps']:.0f} | {levels[64]['p99']:.1f} | {levels[1]['p50']:.2f} | {failed:.0f} |")
    reached = [p for p in report["curve"] if p["accuracy"] >= 0.99 * report["fallback_accuracy"]]
    least = min((p["deferred"] for p in reached), default=None)
    speedup = figures["cascade"][64]["rps"] / figures["fallback alone"][64]["rps"]
    print("\n| goal (issue 14) | measured | target | verdict |\n|---|---:|---:|---|")
    deferral = "none reaches it" if least is None else f"{least:.0%}"
    met = least is not None and least <= 0.3
    print(
        f"| least deferral of the curve with >= 99 % of the fallback's accuracy | {deferral} | <= 30 % | "
        f"{'met' if met else 'MISSED'} |"
    )
    verdict = "met" if speedup >= 2 else "MISSED"
    print(f"| c=64 throughput, cascade / fallback alone (x) | {speedup:.2f} | >= 2 | {verdict} |")
    print_command(begun)


if __name__ == "__main__":
    main()
