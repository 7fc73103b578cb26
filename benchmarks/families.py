"""Issue #5 figures: every family on five public datasets, quality beside cost, in one Markdown table.

    .venv/bin/python benchmarks/families.py [--data ../shared/data] [--families a,b] [--datasets a,b] [--calls 100]

Banking77 (accuracy), TweetEval emotion/hate/offensive (macro-F1; train+val to train, as benchmarks/lifecycle.py)
and SMS spam (MCC, shoal's 20% text-hash split). Each family is searched and fitted the way `shoal train` does
(3-fold CV on training data only, then a final fit; n_jobs=1 so the machine stays usable), saved, and measured with
`shoal.evaluate.profile`: p50 at batch 1, throughput at batch 64, artifact size, training time, $ per 1M.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import print_command, print_machine

from shoal.data.split import assign_split
from shoal.evaluate.classification import confusion, metric_value
from shoal.evaluate.profile import profile
from shoal.families import Predictor, get_family
from shoal.fleet import WorkspaceSpec
from shoal.tasks.text_classification import normalize
from shoal.train.search import search

ROOT = Path(__file__).resolve().parents[1]
SPAM_TEST_FRACTION = 0.2  # the fleet default (SplitSpec.test_fraction)
FAMILIES = [
    "static-logreg",
    "minilm-logreg-int8",
    "minilm-logreg",
    "minilm-finetune-int8",
    "minilm-finetune",
    "tfidf-logreg",
    "tfidf-svm",
]
# (name, folder, metric, published reference)
DATASETS = [
    ("banking77", "banking77", "accuracy", "BERT-Large 93.66"),
    ("emotion", "tweeteval_emotion", "macro_f1", "RoBERTa-Base 76.1"),
    ("hate", "tweeteval_hate", "macro_f1", "RoBERTa-Base 46.6"),
    ("offensive", "tweeteval_offensive", "macro_f1", "RoBERTa-Base 79.5"),
    ("spam", "sms_spam", "mcc", "linear SVM 0.893"),
]


def read(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False)
    frame["text"], frame["label"] = frame["text"].astype(str), frame["label"].astype(str)
    return frame[frame["text"].str.strip() != ""]


def load(data: Path, folder: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) for one dataset; SMS spam is split by text hash like `shoal ingest --split auto`."""
    source = data / folder
    if folder == "sms_spam":
        frame = read(source / "sms_spam.csv")
        split = assign_split(frame["text"].map(normalize), "auto", SPAM_TEST_FRACTION)
        return frame[split == "train"], frame[split == "test"]
    train = pd.concat([read(source / name) for name in ("train.csv", "val.csv") if (source / name).exists()])
    return train, read(source / "test.csv")


def fit_and_score(
    family_name: str, train: pd.DataFrame, test: pd.DataFrame, metric: str, cv: bool = True
) -> tuple[Predictor, float, float]:
    """(predictor, test metric, training seconds): CV search on `train` (or the family's first setting when not
    `cv`), final fit, one pass over `test`."""
    family = get_family(family_name)
    texts, targets = train["text"].tolist(), train["label"].tolist()
    labels = sorted(set(targets) | set(test["label"]))
    started = time.perf_counter()
    if cv:
        params = search(family, texts, targets, labels, metric, folds=3, seed=0, n_jobs=1).params
    else:
        params = family.grid(len(texts))[0]
    predictor = family.fit(texts, targets, params, 0)
    train_seconds = time.perf_counter() - started
    proba = predictor.predict_proba(test["text"].tolist())
    pred = np.array([labels.index(predictor.labels[i]) for i in proba.argmax(axis=1)])
    truth = np.array([labels.index(label) for label in test["label"]])
    return predictor, float(metric_value(confusion(truth, pred, len(labels)), metric, labels)), train_seconds


def run(family_name: str, train: pd.DataFrame, test: pd.DataFrame, metric: str, calls: int) -> dict[str, float]:
    predictor, value, train_seconds = fit_and_score(family_name, train, test, metric)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        predictor.save(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        cost = profile(
            predictor,
            family_name,
            folder,
            test["text"].tolist(),
            calls=calls,
            measure_rss=True,
            cost_per_core_hour=WorkspaceSpec().cost_per_core_hour,
            size_bytes=size,
        )
    return {"metric": value, "train_seconds": train_seconds, **cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--datasets", default=",".join(d[0] for d in DATASETS))
    parser.add_argument("--calls", type=int, default=100, help="timed calls per batch size")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = print_machine()
    print(
        "| dataset | metric | family | score | published | p50 ms (batch 1) | inputs/s (batch 64) | size MB | "
        "peak RSS MB | train s | $/1M |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name, folder, metric, published in DATASETS:
        if name not in args.datasets.split(","):
            continue
        train, test = load(args.data, folder)
        for family_name in args.families.split(","):
            try:
                result = run(family_name, train, test, metric, args.calls)
            except Exception as error:  # one family's failure is a row, not the end of the table
                print(f"| {name} | {metric} | {family_name} | failed: {type(error).__name__}: {error} |", flush=True)
                continue
            print(
                f"| {name} | {metric} | {family_name} | {result['metric']:.4f} | {published} | "
                f"{result['p50_ms_batch1']:.2f} | {result['throughput_per_s']:,.0f} | "
                f"{result['size_bytes'] / 1e6:.1f} | {result['peak_rss_mb'] or float('nan'):.0f} | "
                f"{result['train_seconds']:.0f} | {result['cost_per_million']:.4f} |",
                flush=True,
            )
    print_command(started)


if __name__ == "__main__":
    main()
