"""Issue 17 "the fleet on Ray": a 20-model fleet trained from empty locally and on a two-node local Ray cluster.

    SHOAL_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
    PYTHONPATH=src .venv/bin/python benchmarks/ray_fleet.py [--data ../shared/data] [--rows 1000]

The fleet (`fleet()`): 18 text classifiers on disjoint slices of `--rows` texts of Banking77 (4), TweetEval emotion,
hate, offensive (3 each) and sentiment (2), and SMS spam (3), each with `majority` and `tfidf-logreg`; a regression
on `--rows` rows of California housing (`mean`, `ridge`); a forecaster of the monthly car sales (`seasonal-naive`,
`gbm-lags`, horizon 12). Each model gets one file, split by `shoal ingest`'s auto split. 40 fits in all.

Both sides start from empty: a new PostgreSQL database each (on the server of `SHOAL_TEST_POSTGRES_URL`, dropped at
the end) and an artifact folder given as a `file://` URL (the shared store's path; both Ray nodes see it). The
evaluation settings are the tests' quick ones (20 latency calls, 200 bootstrap resamples, no RSS measurement).

- local: `train_models` with the local executor in this process, its training pool of `n_jobs` 2 processes: one
  model after the other, a model's families side by side.
- ray: two `ray start` nodes on 127.0.0.1 started here (`shoal.train.local_cluster`, as the tests do), one CPU and
  1.5 GiB each plus the quiet `shoal_latency` resource; `train_models` with the Ray executor in this process (the
  driver): every model's fits submitted together, one task per (model, family), one CPU each.

Equal resources: two CPUs' worth of fitting on each side (2 pool processes / 2 one-CPU nodes), on one 2-core machine
— so Ray cannot be faster here: it pays its overhead (scheduling, a fresh worker process per task with its imports,
the data and the artifact sent over) and gains no CPU. Printed: each side's wall time, whether the versions and
scores are identical (`comparable_versions`), the Ray overhead per task (`ray_overhead` in the versions' phases:
from the moment its node had a CPU free for it to its result in the driver, less its own seconds), and how many fits
ran on each node.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from machine import load_average, print_command, print_machine

from shoal.data.ingest import ingest_file
from shoal.registry.database import temporary_database
from shoal.train.executor import comparable_versions, open_executor
from shoal.train.local_cluster import local_cluster
from shoal.train.trainer import ModelReport, train_models
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ENV = "SHOAL_TEST_POSTGRES_URL"
TEXT = {"task": "text-classification", "families": ["majority", "tfidf-logreg"]}
#: text sets: (model prefix, file under the data folder, how many models get a slice of it)
TEXTS = (
    ("banking77", "banking77/train.csv", 4),
    ("emotion", "tweeteval_emotion/train.csv", 3),
    ("hate", "tweeteval_hate/train.csv", 3),
    ("offensive", "tweeteval_offensive/train.csv", 3),
    ("sentiment", "tweeteval_sentiment/test.csv", 2),
    ("spam", "sms_spam/sms_spam.csv", 3),
)
#: the steps of a model's training that fit candidates (`ModelReport.phases`): the part more CPUs shorten
FIT_STEPS = ("search", "final_fits")
WORKSPACE = {"n_jobs": 2, "evaluation": {"latency_calls": 20, "bootstrap": 200, "measure_rss": False}}


def fleet(data: Path, rows: int, folder: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """The 20 models: each one's spec and its data file (written into `folder`)."""
    models: dict[str, tuple[dict[str, Any], Path]] = {}
    for prefix, file, count in TEXTS:
        frame = pd.read_csv(data / file, dtype=str, keep_default_na=False)[["text", "label"]]
        frame = frame[frame["text"].str.strip() != ""].sample(frac=1.0, random_state=0)
        for i in range(count):
            part = frame.iloc[i * rows : (i + 1) * rows]
            if len(part) < rows:
                sys.exit(f"{file} has {len(frame)} texts: fewer than {count} x --rows {rows}")
            models[f"{prefix}-{i + 1}"] = (TEXT, _write(part, folder / f"{prefix}-{i + 1}.csv"))
    housing = pd.read_csv(data / "california_housing" / "housing.csv").dropna().sample(n=rows, random_state=0)
    regression = {"task": "regression", "target_column": "median_house_value", "families": ["mean", "ridge"]}
    models["housing"] = (regression, _write(housing, folder / "housing.csv"))
    forecast = {
        "task": "forecasting",
        "time_column": "Month",
        "value_column": "Sales",
        "freq": "MS",
        "horizon": 12,
        "families": ["seasonal-naive", "gbm-lags"],
    }
    models["car-sales"] = (forecast, data / "monthly_car_sales" / "monthly-car-sales.csv")
    return models


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def workspace(root: Path, registry: str, models: dict[str, tuple[dict[str, Any], Path]]) -> Workspace:
    """A fresh workspace on `registry` and the artifact folder under `root`, every model's file ingested."""
    root.mkdir()
    settings = {**WORKSPACE, "registry": registry, "artifacts": (root / "shared-artifacts").as_uri()}
    fleet_file = {"workspace": settings, "models": {name: spec for name, (spec, _) in models.items()}}
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet_file, sort_keys=False), encoding="utf-8")
    ws = Workspace(root)
    for name, (_, path) in models.items():
        ingest_file(ws, name, path)
    return ws


def timed(train: Callable[[], list[ModelReport]]) -> tuple[list[ModelReport], float]:
    started = time.perf_counter()
    reports = train()
    seconds = time.perf_counter() - started
    failed = [f"{r.model}: {r.error}" for r in reports if r.error] + [
        f"{r.model} {c.family}: {c.error}" for r in reports for c in r.candidates if c.error
    ]
    if failed:
        sys.exit("training failed:\n" + "\n".join(failed))
    return reports, seconds


def node_names() -> dict[str, str]:
    """Each Ray node's id -> `head` or `node N`."""
    import ray

    names = {}
    for node in sorted(ray.nodes(), key=lambda n: "node:__internal_head__" not in n["Resources"]):
        names[node["NodeID"]] = "head" if "node:__internal_head__" in node["Resources"] else f"node {len(names) + 1}"
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rows", type=int, default=1000, help="rows of each text model and of the regression")
    args = parser.parse_args()
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        sys.exit(f"set {POSTGRES_ENV} to a PostgreSQL server's URL (the registries are temporary databases on it)")
    begun = print_machine()
    with tempfile.TemporaryDirectory(prefix="ray-fleet-") as temp, temporary_database(server, "shoal_bench") as one:
        folder = Path(temp)
        models = fleet(args.data, args.rows, folder)
        fits = sum(len(spec["families"]) for spec, _ in models.values())
        print(f"fleet: {len(models)} models, {fits} fits; {load_average()}", flush=True)
        local = workspace(folder / "local", one, models)
        local_reports, local_seconds = timed(lambda: train_models(local))
        print(f"local: {local_seconds:.1f} s wall ({load_average()})", flush=True)
        with temporary_database(server, "shoal_bench") as other, local_cluster(nodes=2) as cluster:
            remote = workspace(folder / "ray", other, models)
            executor = open_executor("ray", cluster.address)
            reports, ray_seconds = timed(lambda: train_models(remote, executor=executor))
            print(f"ray: {ray_seconds:.1f} s wall ({load_average()})", flush=True)
            names = node_names()
            report(local, remote, reports, local_seconds, ray_seconds, names)
            split("local", local_reports, local_seconds, FIT_STEPS)
            split("ray", reports, ray_seconds, ("ray_fits",))
            remote.close()
        local.close()
    print_command(begun)


def report(
    local: Workspace,
    remote: Workspace,
    reports: list[ModelReport],
    local_seconds: float,
    ray_seconds: float,
    names: dict[str, str],
) -> None:
    models = list(local.fleet.models)
    same = comparable_versions(local.registry, models) == comparable_versions(remote.registry, models)
    overhead = sorted(v.metrics.phases["ray_overhead"] for model in models for v in remote.registry.versions(model))
    nodes = Counter(names.get(c.node or "", "not on Ray") for r in reports for c in r.candidates)
    print("\n| | wall s | fits |")
    print("|---|---:|---:|")
    print(f"| local executor (1 driver + 2 pool processes) | {local_seconds:.1f} | {len(overhead)} |")
    print(f"| Ray executor (1 driver, 2 nodes x 1 CPU) | {ray_seconds:.1f} | {len(overhead)} |")
    print(f"\nversions and scores identical (number, family, dataset, params, test score, CI, CV score): {same}")
    print(
        f"Ray overhead per task (s): min {overhead[0]:.2f}, median {statistics.median(overhead):.2f}, "
        f"max {overhead[-1]:.2f} ({len(overhead)} tasks)"
    )
    print("fits per node: " + ", ".join(f"{name} {count}" for name, count in sorted(nodes.items())))
    productions = sum(remote.registry.alias(m, "production") is not None for m in models)
    print(f"models with a production version: {productions} of {len(models)} (ray)")


def split(side: str, reports: list[ModelReport], wall: float, fitting: tuple[str, ...]) -> None:
    """The wall time into fitting (more CPUs shorten it) and the rest (data loading, latency timing, registration,
    gates: model after model in one process). On Ray the models' fits overlap, so fitting is the longest `ray_fits`
    (the first model's submission to its last result, which waits for the whole batch)."""
    spans = [sum(r.phases.get(step, 0.0) for step in fitting) for r in reports]
    fits = max(spans) if side == "ray" else sum(spans)
    print(f"{side}: fitting {fits:.1f} s of the {wall:.1f} s wall, the rest {wall - fits:.1f} s", flush=True)


if __name__ == "__main__":
    main()
