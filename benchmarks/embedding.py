"""Embedding figures: the frozen encoders judged on pairs of Banking77 test queries, trained from empty through the CLI.

    .venv/bin/python benchmarks/embedding.py [--data ../shared/data] [--pairs 2000] [--latency-calls 100]
                                             [--workspace benchmarks/.work/embedding]

Pairs are drawn (seed 0) from the official Banking77 test split, all 77 intents: half of them two queries of the
same intent (score 1), half two queries of different intents (score 0). Every pair of the drop is test data (the
encoders are frozen). `shoal train` scores each family by Spearman's ρ between the pair's cosine similarity and
its score, with a bootstrap CI, and gates it against the word-overlap floor. This measures how well each encoder
separates same-intent from different-intent queries, not general semantic similarity (no STS data is available).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from families import read
from machine import print_command, print_machine
from tasks import ROOT, gate_reason, shoal, versions

FAMILIES = ["static-embed", "minilm-embed", "minilm-embed-int8"]


def intent_pairs(test: pd.DataFrame, count: int, seed: int = 0) -> pd.DataFrame:
    """`count` distinct pairs of different rows, alternately of the same intent (score 1) and of different ones (0)."""
    rng = np.random.default_rng(seed)
    labels = test["label"].to_numpy()
    by_label = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    rows, seen = [], set()
    while len(rows) < count:
        same = len(rows) % 2 == 0
        i = int(rng.integers(len(test)))
        j = int(rng.choice(by_label[labels[i]])) if same else int(rng.integers(len(test)))
        if i == j or (labels[i] == labels[j]) != same or (min(i, j), max(i, j)) in seen:
            continue
        seen.add((min(i, j), max(i, j)))
        rows.append({"text": test["text"].iat[i], "text_pair": test["text"].iat[j], "score": int(same)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--latency-calls", type=int, default=100, help="timed calls per batch size")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "embedding")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    begun = print_machine()
    ws = args.workspace.resolve()
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    fleet = {
        "workspace": {"evaluation": {"latency_calls": args.latency_calls}},
        "models": {"embed": {"task": "embedding", "families": FAMILIES}},
    }
    (ws / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    pairs = intent_pairs(read(args.data / "banking77" / "test.csv"), args.pairs)
    pairs.to_csv(ws / "pairs.csv", index=False)
    w = ["-w", str(ws)]
    shoal("ingest", "embed", str(ws / "pairs.csv"), *w)
    shoal("train", "embed", *w)
    print(f"\n{len(pairs):,} pairs of Banking77 test queries ({int(pairs['score'].sum()):,} of the same intent)\n")
    print("| family | version | Spearman ρ (95% CI) | dims | size MB | p95 ms (b=1) | texts/s (b=64) | promoted |")
    print("|---|---|---|---|---|---|---|---|")
    for v in versions("embed", w):
        ci, profile = v["ci"], v["profile"]
        print(
            f"| {v['family']} | v{v['version']} | {v['spearman']:.3f} ({ci[0]:.3f}..{ci[1]:.3f}) | "
            f"{v.get('dim', '-')} | {v['size_bytes'] / 1e6:.1f} | {profile['p95_ms_batch1']:.2f} | "
            f"{profile['throughput_per_s']:,.0f} | {'**yes**' if v['production'] else ''} |"
        )
    print(f"\ngate: {gate_reason(ws, 'embed')}")
    print_command(begun)


if __name__ == "__main__":
    main()
