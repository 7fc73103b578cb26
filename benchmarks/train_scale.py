"""Issue 19 "search that scales": the wall time of `shoal train` with the defaults, and where it goes.

    PYTHONPATH=src .venv/bin/python benchmarks/train_scale.py [--data ../shared/data] [--rows 45000]
        [--sets pooled,offensive,banking77] [--workspace /tmp/scale-ws]

Each set gets a fresh workspace whose one model names only its task (`text-classification`): the default families
(majority, tfidf-logreg, tfidf-svm), metric and class weighting chosen from the data, the default evaluation
settings, `n_jobs` 2. `shoal train` runs in a subprocess (the code `PYTHONPATH` points at, so the same script times
an older checkout) and is timed from the outside; its own summary is printed as it is, and then each version's
score, train / eval seconds and (when the code records them) the phases of its time, from `shoal versions --json`.

The sets:
- `pooled`: a 20-class text set of `--rows` training texts (the issue's "45,000 rows, ~20 classes"), built from every
  labelled text file in the shared data: TweetEval emotion (4 labels), hate (2), offensive (2), sentiment (3; its
  val and test files), SMS spam (2) and Banking77 (its 77 intents folded into 7 topics by keywords of the intent's
  name, `TOPICS`; 7 labels), each label prefixed by its dataset (`emotion:joy`, `banking77:card`). Texts are
  compared lower-cased with runs of white space as one; a text found with two labels is left out, a repeated one
  kept once. The ~65,000 texts are shuffled (seed 0); the first `--rows` are the training drop, the rest the test
  drop (~20,000 texts).
- `offensive`: TweetEval offensive, train + val as training (13,240), its test file as the test set (860; one
  conflicting row skipped).
- `banking77`: Banking77's train (10,003) and test (3,080) files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
from machine import load_average, print_command, print_machine, shoal

ROOT = Path(__file__).resolve().parents[1]
#: the pooled set's sources: (label prefix, folder, files)
POOLED = (
    ("emotion", "tweeteval_emotion", ("train", "val", "test")),
    ("hate", "tweeteval_hate", ("train", "val", "test")),
    ("offensive", "tweeteval_offensive", ("train", "val", "test")),
    ("sentiment", "tweeteval_sentiment", ("val", "test")),
    ("spam", "sms_spam", ("sms_spam",)),
    ("banking77", "banking77", ("train", "test")),
)
#: Banking77's intents folded into topics: the first topic one of whose keywords the intent's name contains
TOPICS = (
    ("top_up", ("top_up", "topping")),
    ("transfer", ("transfer", "receiving_money", "beneficiary")),
    ("cash", ("cash", "atm")),
    ("exchange", ("exchange", "currenc", "fiat")),
    (
        "identity",
        ("verify", "identity", "passcode", "pin", "personal_details", "terminate", "age_limit", "lost_or_stolen_phone"),
    ),
    ("card", ("card", "contactless", "apple_pay", "visa")),
)


def topic(intent: str) -> str:
    return next((name for name, keys in TOPICS if any(key in intent for key in keys)), "payment")


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)[["text", "label"]]


def pooled(data: Path, rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, test rows) of the pooled 20-class set (module docstring)."""
    parts = []
    for prefix, folder, files in POOLED:
        for file in files:
            frame = read(data / folder / f"{file}.csv")
            labels = frame["label"].map(topic) if prefix == "banking77" else frame["label"]
            parts.append(pd.DataFrame({"text": frame["text"], "label": prefix + ":" + labels}))
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["text"].str.strip() != ""]
    key = frame["text"].str.lower().str.split().str.join(" ")
    labels_per_text = frame.groupby(key)["label"].nunique()
    frame = frame[key.map(labels_per_text) == 1].assign(key=key).drop_duplicates("key").drop(columns="key")
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if len(frame) <= rows:
        sys.exit(f"the pooled set has {len(frame)} texts: fewer than --rows {rows} plus a test set")
    return frame.iloc[:rows], frame.iloc[rows:]


def shoal_out(*args: str, echo: bool = False) -> str:
    """`shoal ARGS`' output (printed too with `echo`)."""
    out = shoal(*args).stdout
    if echo:
        print(out, flush=True)
    return out


def prepare(name: str, data: Path, ws: Path, rows: int) -> list[tuple[Path, str]]:
    """The drops of set `name` as (file, split), written into `ws` when they are built here."""
    if name == "pooled":
        train, test = pooled(data, rows)
        train.to_csv(ws / "train.csv", index=False)
        test.to_csv(ws / "test.csv", index=False)
        counts = train["label"].value_counts()
        print(
            f"pooled: {len(train)} training texts, {len(test)} test texts, {len(counts)} labels "
            f"(largest {counts.iloc[0]}, smallest {counts.iloc[-1]})",
            flush=True,
        )
        return [(ws / "train.csv", "train"), (ws / "test.csv", "test")]
    if name == "offensive":
        folder = data / "tweeteval_offensive"
        return [(folder / "train.csv", "train"), (folder / "val.csv", "train"), (folder / "test.csv", "test")]
    if name == "banking77":
        return [(data / "banking77" / "train.csv", "train"), (data / "banking77" / "test.csv", "test")]
    sys.exit(f"unknown set {name!r}: pooled, offensive or banking77")


def run(name: str, data: Path, root: Path, rows: int) -> dict:
    ws = root / name
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    (ws / "shoal.yaml").write_text(f"models:\n  {name}:\n    task: text-classification\n", encoding="utf-8")
    w = ["-w", str(ws)]
    for path, split in prepare(name, data, ws, rows):
        shoal_out("ingest", name, str(path), "--split", split, "--skip-invalid", *w)
    print(f"## {name}: shoal train ({load_average()})", flush=True)
    started = time.perf_counter()
    shoal_out("train", name, *w, echo=True)
    wall = time.perf_counter() - started
    versions = json.loads(shoal_out("versions", name, "--json", *w))
    return {"name": name, "wall": wall, "versions": versions, "load": load_average()}


def print_table(done: list[dict]) -> None:
    print("| set | training rows | test rows | `shoal train` wall s | production | metric (95% CI) |")
    print("|---|---:|---:|---:|---|---|")
    for one in done:
        versions = one["versions"]
        served = next((v for v in versions if v["production"]), None)
        first = versions[0]
        shown = "none"
        if served is not None:
            ci = served["ci"]
            value = served[served["metric"]]
            shown = f"{served['metric']} {value:.4f} ({ci[0]:.4f}..{ci[1]:.4f})"
        production = f"{served['family']} v{served['version']}" if served else "none"
        print(
            f"| {one['name']} | {first['n_train']} | {first['n_test']} | {one['wall']:.0f} | {production} | {shown} |"
        )
    print("\nPer version (train s: the shared search + its final fit and label audit; eval s: the rest):\n")
    phases = sorted({key for one in done for v in one["versions"] for key in (v.get("phases") or {})})
    print("| set | family | metric | train s | eval s |" + "".join(f" {p} s |" for p in phases))
    print("|---|---|---:|---:|---:|" + "---:|" * len(phases))
    for one in done:
        for v in one["versions"]:
            spent = v.get("phases") or {}
            print(
                f"| {one['name']} | {v['family']} | {v[v['metric']]:.4f} | {v['train_seconds'] or 0:.1f} | "
                f"{v['eval_seconds'] or 0:.1f} |" + "".join(f" {spent.get(p, float('nan')):.1f} |" for p in phases)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "train_scale")
    parser.add_argument("--sets", default="pooled,offensive,banking77")
    parser.add_argument("--rows", type=int, default=45_000, help="training texts of the pooled set")
    args = parser.parse_args()
    begun = print_machine()
    done = [run(name, args.data, args.workspace.resolve(), args.rows) for name in args.sets.split(",")]
    print_table(done)
    print_command(begun)


if __name__ == "__main__":
    main()
