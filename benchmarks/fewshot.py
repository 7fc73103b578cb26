"""Issue #5 few-shot figure: Banking77 with 10 training examples per intent, 5 seeds, accuracy on the full test set.

    .venv/bin/python benchmarks/fewshot.py [--data ../shared/data] [--families a,b] [--seeds 5] [--shots 10]

Each seed samples `--shots` rows per intent from train.csv; each family is searched and fitted as in
benchmarks/families.py (3-fold CV, then a final fit). Prints a Markdown table: mean ± std and min..max per family.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from families import FAMILIES, ROOT, fit_and_score, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train, test = read(args.data / "banking77" / "train.csv"), read(args.data / "banking77" / "test.csv")
    started = time.perf_counter()
    print(f"| family | accuracy, {args.shots} per intent (mean ± std over {args.seeds} seeds) | min..max |")
    print("|---|---|---|", flush=True)
    for family_name in args.families.split(","):
        scores = []
        for seed in range(args.seeds):
            sample = train.groupby("label").sample(args.shots, random_state=seed)
            scores.append(fit_and_score(family_name, sample, test, "accuracy")[1])
        print(
            f"| {family_name} | {np.mean(scores):.4f} ± {np.std(scores):.4f} | {min(scores):.4f}..{max(scores):.4f} |",
            flush=True,
        )
    print(
        f"\nCommand: `.venv/bin/python benchmarks/fewshot.py` ({datetime.now(UTC):%Y-%m-%d}, "
        f"nproc {os.cpu_count()}; {time.perf_counter() - started:.0f} s wall)"
    )


if __name__ == "__main__":
    main()
