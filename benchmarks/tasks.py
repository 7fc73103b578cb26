"""Issue #6 figures: regression on California housing and forecasting on monthly car sales and daily maximum
temperatures, each trained from empty through the CLI in a fresh workspace.

    .venv/bin/python benchmarks/tasks.py [--data ../shared/data] [--workspace benchmarks/.work/tasks]
        [--only house] [--house-families mean,ridge,gbm]

Prints Markdown for benchmarks/RESULTS.md: each regressor's R², MAE and RMSE (95% bootstrap CIs), interval
coverage on the hash-split test set, and which was promoted; and MASE, sMAPE and interval coverage of every
forecasting family on the rolling-origin backtest (3 windows of 12 months / 30 days), with the gate's decision.
`--only` trains only the named models; `--house-families` sets California housing's families (default: the
regression defaults), e.g. the defaults before issue 19 (`mean,ridge,gbm`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from machine import print_command, print_machine, shoal

from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
FORECAST_FAMILIES = ["seasonal-naive", "auto-ets", "auto-arima", "gbm-lags"]
MODELS: dict[str, dict[str, Any]] = {
    "house": {"task": "regression", "target_column": "median_house_value", "metric": "mae"},
    "cars": {
        "task": "forecasting",
        "time_column": "Month",
        "value_column": "Sales",
        "freq": "MS",
        "horizon": 12,
        "families": FORECAST_FAMILIES,
    },
    "temps": {
        "task": "forecasting",
        "time_column": "Date",
        "value_column": "Temperature",
        "freq": "D",
        "horizon": 30,
        "families": FORECAST_FAMILIES,
    },
}
FILES = {
    "house": "california_housing/housing.csv",
    "cars": "monthly_car_sales/monthly-car-sales.csv",
    "temps": "daily_max_temperatures/daily-max-temperatures.csv",
}


def versions(name: str, w: list[str]) -> list[dict[str, Any]]:
    return json.loads(shoal("versions", name, "--json", *w).stdout)  # type: ignore[no-any-return]


def gate_reason(ws: Path, name: str) -> str:
    workspace = Workspace(ws)
    try:
        events = [e for e in workspace.registry.events(name) if e.kind in ("promoted", "rejected")]
        return events[-1].message if events else "(no decision)"
    finally:
        workspace.close()


def rmse_ci(ws: Path, name: str, version: int) -> list[float]:
    """The 95% bootstrap CI of a regression version's RMSE on its model's test set (the fleet metric's CI is the
    one `shoal versions` gives)."""
    from shoal.data.assembled import assembled
    from shoal.evaluate.regression import score
    from shoal.tasks import get_task

    workspace = Workspace(ws)
    try:
        spec, found = workspace.model(name), assembled(workspace, name)
        assert found is not None
        test = get_task(spec.task).test_set(found.train, found.test, spec)
        predictor = workspace.load_predictor(workspace.registry.version(name, version))
        values = predictor.predict_proba(test.inputs)[:, 0]
        ci: list[float] = score(test.truth, values, "rmse", bootstrap=1000, seed=workspace.fleet.workspace.seed)["ci"]
        return ci
    finally:
        workspace.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "tasks")
    parser.add_argument("--only", action="append", choices=list(MODELS), help="train only this model (repeatable)")
    parser.add_argument("--house-families", help="California housing's families, comma-separated")
    args = parser.parse_args()
    begun = print_machine()
    ws = args.workspace.resolve()
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    names = args.only or list(MODELS)
    models = {name: MODELS[name] for name in names}
    if args.house_families and "house" in models:
        models["house"] = {**models["house"], "families": args.house_families.split(",")}
    fleet = {"workspace": {"n_jobs": 2}, "models": models}
    (ws / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    w = ["-w", str(ws)]
    seconds = {}
    for name in names:
        print(shoal("ingest", name, str(args.data / FILES[name]), *w).stdout.strip().splitlines()[0], file=sys.stderr)
        started = time.perf_counter()
        shoal("train", name, *w)
        seconds[name] = time.perf_counter() - started

    print("\n`shoal train MODEL` wall time per model below\n")
    if "house" in names:
        print_house(ws, w, seconds["house"])
    for name, title in (("cars", "Monthly car sales, h=12"), ("temps", "Daily max temperatures, h=30")):
        if name not in names:
            continue
        print(f"**{title}** (rolling-origin backtest, the last 3 windows)\n")
        print("| family | MASE (95% CI) | sMAPE % | MAE | 90% interval coverage | promoted |")
        print("|---|---|---|---|---|---|")
        for v in versions(name, w):
            ci = v["ci"]
            print(
                f"| {v['family']} | {v['mase']:.3f} ({ci[0]:.3f}..{ci[1]:.3f}) | {v['smape']:.2f} | "
                f"{v['mae']:.2f} | {v.get('interval_coverage', float('nan')):.3f} | "
                f"{'**yes**' if v['production'] else ''} |"
            )
        print(f"\ntrain wall {seconds[name]:.0f} s; gate: {gate_reason(ws, name)}\n")
    print_command(begun)


def print_house(ws: Path, w: list[str], seconds: float) -> None:
    print("**California housing** (target median_house_value, 20% hash split of the feature values)\n")
    print(
        "| family | version | R² | MAE (95% CI) | RMSE (95% CI) | 90% interval coverage | train s (the shared search "
        "+ its final fit) | p95 ms (b=1) | promoted |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for v in versions("house", w):
        ci, rmse = v["ci"], rmse_ci(ws, "house", v["version"])
        coverage = v.get("interval_coverage")
        fit = v.get("train_seconds")
        print(
            f"| {v['family']} | v{v['version']} | {v['r2']:.4f} | {v['mae']:,.0f} ({ci[0]:,.0f}..{ci[1]:,.0f}) | "
            f"{v['rmse']:,.0f} ({rmse[0]:,.0f}..{rmse[1]:,.0f}) | {'' if coverage is None else f'{coverage:.3f}'} | "
            f"{'' if fit is None else f'{fit:.1f}'} | {v['profile']['p95_ms_batch1']:.2f} | "
            f"{'**yes**' if v['production'] else ''} |"
        )
    print(f"\ntrain wall {seconds:.0f} s; gate: {gate_reason(ws, 'house')}\n")


if __name__ == "__main__":
    main()
