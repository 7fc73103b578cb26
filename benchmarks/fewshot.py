"""Issue #5 few-shot figure: Banking77 with 10 training examples per intent, 5 seeds, accuracy on the full test set.

    .venv/bin/python benchmarks/fewshot.py [--data ../shared/data] [--families a,b] [--seeds 5] [--shots 10] [--cv]

Each seed samples `--shots` rows per intent from train.csv (`groupby("label").sample(shots, random_state=seed)`);
each family is fitted once with its first grid setting (with `--cv`: searched by 3-fold CV first, as
benchmarks/families.py; 3-fold CV on 10 rows per class is noisy and costs 4 fits). Prints a Markdown table: mean ±
std (sample std over the seeds) and the mean fit seconds per family.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from families import FAMILIES, ROOT, fit_and_score, read
from machine import print_command, print_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--cv", action="store_true", help="search each family's grid by 3-fold CV before the fit")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train, test = read(args.data / "banking77" / "train.csv"), read(args.data / "banking77" / "test.csv")
    started = print_machine()
    print("| family | seeds | accuracy % (mean ± std) | fit s (mean) |")
    print("|---|---|---|---|", flush=True)
    for family_name in args.families.split(","):
        scores, seconds = [], []
        for seed in range(args.seeds):
            sample = train.groupby("label").sample(args.shots, random_state=seed)
            _, score, fit_s = fit_and_score(family_name, sample, test, "accuracy", cv=args.cv)
            scores.append(100 * score)
            seconds.append(fit_s)
        spread = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
        print(f"| {family_name} | {len(scores)} | {np.mean(scores):.2f} ± {spread:.2f} | {np.mean(seconds):.1f} |")
    print_command(started)


if __name__ == "__main__":
    main()
