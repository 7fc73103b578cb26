"""Issue 19: small, sub-sampled TweetEval training sets with shoal's defaults — is a model promoted, and how good is it?

    PYTHONPATH=src .venv/bin/python benchmarks/small_data.py [--data ../shared/data] [--sets hate,offensive]
                                                             [--rows 300,500,1000,all] [--seeds 1] [--before]

For each set, size and seed: a fresh workspace whose model sets no metric and no families (the defaults), the
official train.csv sub-sampled to `--rows` texts with its label shares (`groupby("label").sample(frac=...,
random_state=seed)`, empty texts left out) ingested with `--split train`, the official test.csv with `--split test
--skip-invalid` (offensive's test set gives one text two labels: the second row is left out); then `train_models`
(what `shoal train` runs) on a real SQLite registry; `all` in `--rows` trains on the whole official train.csv (once: it
has no seed to vary). Printed per run: the defaults chosen, whether a version was
promoted (and which family), the production version's macro-F1 on the test set beside the majority floor's (the
train's majority label for every test text) and the best candidate's, and the gate's reason. With `--before`, each
run is repeated with the former defaults set by hand (metric accuracy, no class weighting); with `--unweighted`, with
macro-F1 and no class weighting (what the class weighting adds); `--only-others` leaves out the new defaults' run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from machine import print_command, print_machine
from sklearn.metrics import f1_score

from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
BEFORE = {"metric": "accuracy", "class_weight": "none"}
UNWEIGHTED = {"metric": "macro_f1", "class_weight": "none"}
FAST = {"evaluation": {"latency_calls": 50, "latency_seconds": 0.2, "measure_rss": False}}


def sample(train: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    train = train[train["text"].str.strip() != ""]
    return train.groupby("label").sample(frac=rows / len(train), random_state=seed).sample(frac=1.0, random_state=seed)


def run(folder: Path, name: str, train: pd.DataFrame, test: Path, model: dict) -> dict:
    (folder / "shoal.yaml").write_text(
        yaml.safe_dump({"workspace": FAST, "models": {name: {"task": "text-classification", **model}}}),
        encoding="utf-8",
    )
    train.to_csv(folder / "train.csv", index=False)
    ws = Workspace(folder)
    try:
        # hate's whole train.csv labels two texts both ways, offensive's test file one: the later rows are left out
        ingest_file(ws, name, folder / "train.csv", split="train", skip_invalid=True)
        ingest_file(ws, name, test, split="test", skip_invalid=True)
        [report] = train_models(ws, [name])
        if report.error:
            raise SystemExit(f"{name}: {report.error}")
        versions = ws.registry.versions(name)
        production = ws.registry.alias(name, PRODUCTION)
        served = next((v for v in versions if v.number == production), None)
        kept = ws.registry.defaults(name)
        decision = report.decision
        return {
            "metric": versions[0].metrics.metric,
            "class_weight": (kept.settings.get("class_weight") if kept and "class_weight" not in model else "none"),
            "promoted": served.family if served else "no",
            "families": ",".join(dict.fromkeys(v.family for v in versions)),
            "production_f1": served.metrics.scores["macro_f1"] if served else None,
            "best_f1": max(v.metrics.scores["macro_f1"] for v in versions),
            "gate": decision.reason.split(";")[0] if decision else "no decision",
            "delta": f"{decision.delta:+.4f}, p={decision.p_value:.3g}" if decision else "",
        }
    finally:
        ws.close()


def summary(results: dict[tuple[str, str], list[float | None]]) -> None:
    """Per set and size: runs with a production model, and the mean production macro-F1 of those runs."""
    print("\n| set | training rows | runs with a production model | macro-F1 production (mean) |\n|---|---:|---:|---:|")
    for (name, rows), scores in results.items():
        kept = [score for score in scores if score is not None]
        mean = f"{sum(kept) / len(kept):.4f}" if kept else "–"
        print(f"| {name} | {rows} | {len(kept)} of {len(scores)} | {mean} |")


def floor_f1(train: pd.DataFrame, test: pd.DataFrame) -> float:
    majority = train["label"].value_counts().idxmax()
    return float(f1_score(test["label"], [majority] * len(test), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default="hate,offensive")
    parser.add_argument("--rows", default="300,500,1000", help="sizes; `all` for the whole train.csv")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--before", action="store_true", help="also run with the former defaults set by hand")
    parser.add_argument("--unweighted", action="store_true", help="also run with macro-F1 and no class weighting")
    parser.add_argument("--only-others", action="store_true", help="leave out the run with the new defaults")
    args = parser.parse_args()
    started = print_machine()
    results: dict[tuple[str, str], list[float | None]] = {}
    print(
        "\n| set | rows | seed | defaults | metric | families | promoted | macro-F1 production | macro-F1 best "
        "candidate | macro-F1 majority floor | gate (Δ on the metric, p) |\n"
        "|---|---:|---:|---|---|---|---|---:|---:|---:|---|",
        flush=True,
    )
    for name in args.sets.split(","):
        full = pd.read_csv(args.data / f"tweeteval_{name}" / "train.csv", keep_default_na=False)
        test_path = args.data / f"tweeteval_{name}" / "test.csv"
        test = pd.read_csv(test_path, keep_default_na=False)
        for rows in args.rows.split(","):
            for seed in range(1 if rows == "all" else args.seeds):
                train = full[full["text"].str.strip() != ""] if rows == "all" else sample(full, int(rows), seed)
                floor = floor_f1(train, test)
                setups = {
                    **({} if args.only_others else {"new": {}}),
                    **({"before": BEFORE} if args.before else {}),
                    **({"unweighted": UNWEIGHTED} if args.unweighted else {}),
                }
                for label, model in setups.items():
                    with tempfile.TemporaryDirectory() as folder:
                        got = run(Path(folder), name, train, test_path, model)
                    production = "–" if got["production_f1"] is None else f"{got['production_f1']:.4f}"
                    if label == "new":
                        results.setdefault((name, rows), []).append(got["production_f1"])
                    print(
                        f"| {name} | {len(train)} | {seed} | {label} | {got['metric']}, class_weight "
                        f"{got['class_weight']} | {got['families']} | {got['promoted']} | {production} | "
                        f"{got['best_f1']:.4f} | "
                        f"{floor:.4f} | {got['gate']} ({got['delta']}) |",
                        flush=True,
                    )
    summary(results)
    print_command(started)


if __name__ == "__main__":
    main()
