"""Issue #2 figures: `shoal train` from empty on five public datasets, promoted scores beside published ones.

    .venv/bin/python benchmarks/lifecycle.py [--data ../shared/data] [--workspace benchmarks/.work/lifecycle]

Builds a workspace with Banking77, TweetEval emotion/hate/offensive (official splits; train+val ingested as
training data, test as `--split test`) and SMS spam (auto hash split), times `shoal train` for the whole
fleet in a subprocess, and prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml
from machine import print_command, print_machine, shoal

from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["majority", "tfidf-logreg", "tfidf-svm"]
# (model, folder, metric, published baselines) — shared/data/README.md
MODELS = {
    "banking77": ("banking77", "accuracy", "BERT-Large 93.66, USE+ConveRT 93.36 (floor 91)"),
    "emotion": ("tweeteval_emotion", "macro_f1", "SVM 64.7, FastText 65.2, RoBERTa-Base 76.1"),
    "hate": ("tweeteval_hate", "macro_f1", "SVM 36.7, FastText 50.6, RoBERTa-Base 46.6"),
    "offensive": ("tweeteval_offensive", "macro_f1", "SVM 52.3, FastText 73.4, RoBERTa-Base 79.5"),
    "spam": ("sms_spam", "mcc", "linear SVM MCC 0.893 (floor 0.89)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "lifecycle")
    args = parser.parse_args()
    begun = print_machine()
    ws = args.workspace.resolve()
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    fleet = {
        "workspace": {"n_jobs": 2},
        "models": {
            name: {"task": "text-classification", "metric": metric, "families": FAMILIES}
            for name, (_, metric, _) in MODELS.items()
        },
    }
    (ws / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    w = ["-w", str(ws)]
    for name, (folder, _, _) in MODELS.items():
        source = args.data / folder
        if name == "spam":
            shoal("ingest", name, str(source / "sms_spam.csv"), *w)
            continue
        for split_file, split in (("train.csv", "train"), ("val.csv", "train"), ("test.csv", "test")):
            if (source / split_file).exists():
                out = shoal("ingest", name, str(source / split_file), "--split", split, "--skip-invalid", *w)
                print(out.stdout.strip().splitlines()[0], file=sys.stderr)
    started = time.perf_counter()
    shoal("train", *w)
    wall = time.perf_counter() - started
    print(
        f"\n`shoal train` from empty, 5 models x {len(FAMILIES)} families: {wall:.0f} s wall ({os.cpu_count()} cores)\n"
    )
    print("| model | metric | promoted family | promoted score (95% CI) | published |")
    print("|---|---|---|---|---|")
    for name, (_, metric, published) in MODELS.items():
        report = json.loads(shoal("eval", name, "--json", *w).stdout)
        extra = f"; spam recall {report['per_class']['spam']['recall']:.3f}" if name == "spam" else ""
        ci = report["ci"]
        print(
            f"| {name} | {metric} | {report['family']} v{report['version']} | "
            f"{report[metric]:.4f} ({ci[0]:.4f}..{ci[1]:.4f}){extra} | {published} |"
        )
    print(
        "\nWhere the time went, per version (train: the shared CV search's wall time + the final fit and label audit;"
    )
    print("eval: test-set scores, peak RSS and the latency timed in the quiet phase):\n")
    print("| model | family | train s | eval s | latency calls | p95 ms (b=1) |")
    print("|---|---|---:|---:|---:|---:|")
    registry = Workspace(ws).registry
    for name in MODELS:
        for v in registry.versions(name):
            m = v.metrics
            print(
                f"| {name} | {v.family} | {m.train_seconds or 0:.1f} | {m.eval_seconds or 0:.1f} | "
                f"{m.profile.latency_calls} | {m.profile.p95_ms_batch1:.2f} |"
            )
    print_command(begun)


if __name__ == "__main__":
    main()
