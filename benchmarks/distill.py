"""Issue #5 distillation figure: students trained on a MiniLM teacher's labels, scored on the gold test set.

    .venv/bin/python benchmarks/distill.py [--data ../shared/data] [--teacher minilm-logreg]
                                           [--students tfidf-logreg,static-logreg]

Banking77: the teacher family is searched and fitted on the official train split (gold labels) the way
`shoal train` does; the unlabeled set is the same training texts with their labels removed; the teacher labels
them (its argmax: shoal's families train on hard labels); each student family is searched and fitted on the
teacher's labels only, and the same family (same search, same training texts) is fitted on the gold labels for
comparison; every model is scored on the gold official test split. Prints accuracy, each model's share of the
teacher's accuracy, and each one's p50 latency at batch 1.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from families import ROOT, fit_and_score, load
from machine import print_command, print_machine

from shoal.evaluate.profile import latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--teacher", default="minilm-logreg")
    parser.add_argument("--students", default="tfidf-logreg,static-logreg")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = print_machine()
    train, test = load(args.data, "banking77")
    teacher, teacher_acc, teacher_s = fit_and_score(args.teacher, train, test, "accuracy")
    texts = test["text"].tolist()
    began = time.perf_counter()
    unlabeled = train.assign(label=teacher.predict(train["text"].tolist()))
    label_s = time.perf_counter() - began
    agreement = float((unlabeled["label"].to_numpy() == train["label"].to_numpy()).mean())
    rows = [(f"teacher {args.teacher} (gold labels)", teacher_acc, teacher_s, latency(teacher, texts, 200))]
    for student in args.students.split(","):
        for name, data in ((f"student {student} (teacher's labels)", unlabeled), (f"{student} (gold labels)", train)):
            predictor, acc, fit_s = fit_and_score(student, data, test, "accuracy")
            rows.append((name, acc, fit_s, latency(predictor, texts, 200)))
    print(
        f"\nteacher labelled {len(train):,} training texts in {label_s:.0f} s; "
        f"agreement with the gold labels {agreement:.1%}\n"
    )
    print("| model | gold test accuracy | % of teacher | train s | p50 ms (batch 1) |")
    print("|---|---:|---:|---:|---:|")
    for name, acc, fit_s, lat in rows:
        print(f"| {name} | {acc:.4f} | {acc / teacher_acc:.1%} | {fit_s:.0f} | {lat['p50_ms_batch1']:.2f} |")
    print_command(started)


if __name__ == "__main__":
    main()
