"""Issue 15, parts 2 and 3: an LLM as teacher and as generator, with the scripted OpenAI-compatible server of the tests
(tests/scripted_llm.py: a real uvicorn server on 127.0.0.1, reached over HTTP by shoal's LLM client).

    PYTHONPATH=src .venv/bin/python benchmarks/llm_teacher.py [--data ../shared/data] [--accuracies 0.8,0.9]
                                                             [--per-label 20,50] [--no-cv]

Teacher: the scripted teacher answers each text's gold label with probability `accuracy`, else another label (both
chosen by a hash of the text: the same text always gets the same answer). `shoal label --teacher llm`
(`shoal.train.teach.label`) labels Banking77's and SMS spam's training texts (labels removed; SMS spam split by text
hash as `shoal ingest --split auto`) into a drop; a tfidf-logreg student is fitted on that drop's labels and scored on
the gold test set, beside the teacher's own gold-test accuracy and the same student fitted on the gold labels.

Synthetic data: 10-shot Banking77 (the first 10 training texts of each label). The scripted generator answers each
request for `n` texts of a label with held-out real training texts of that label, with noise: of every 20 texts,
11 real, 2 of another label, 2 copies of a seed, 1 seed with changed punctuation, 1 test text of the label, 1 test
text with changed punctuation, 1 ROT13'd (not English) and 1 repeated 15 times (too long). `shoal synth` generates
`--per-label` texts per label; the scripted teacher at 90% re-labels what passes the other checks. The student is
fitted on the 10 shots alone, with the kept synthetic rows, and with as many clean held-out real texts as were kept
(an upper bound). Prints the share of generated rows the validation dropped, per reason.

tfidf-logreg only (searched over its 2-setting grid with 3-fold CV as `shoal train` does; `--no-cv`: its first
setting), so it runs on 2 cores in minutes. Prints the machine and load first and the command last.
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from families import ROOT, load
from machine import print_command, print_machine

from shoal.data.ingest import ingest_frame
from shoal.data.readers import LINE
from shoal.evaluate.classification import confusion, metric_value
from shoal.families import get_family
from shoal.train.search import search
from shoal.train.synth import REASONS, synth
from shoal.train.teach import label
from shoal.workspace import Workspace

sys.path.insert(0, str(ROOT / "tests"))
from scripted_llm import Script, scripted_llm  # the tests' server

MODEL = "m"


def unit(*parts: str) -> float:
    """A number in [0, 1) from a hash of `parts`."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def teacher(gold: dict[str, str], labels: list[str], accuracy: float) -> Callable[[str], str]:
    """The scripted teacher: a text's gold label with probability `accuracy`, else another label."""

    def answer(text: str) -> str:
        truth = gold[text]
        if unit("right", text) < accuracy:
            return truth
        others = [label for label in labels if label != truth]
        return others[int(unit("wrong", text) * len(others))]

    return answer


def student(train: pd.DataFrame, test: pd.DataFrame, cv: bool) -> dict[str, float]:
    """tfidf-logreg fitted on `train`, scored on the gold `test`: accuracy and macro-F1."""
    family = get_family("tfidf-logreg")
    texts, targets = train["text"].tolist(), train["label"].tolist()
    labels = sorted(set(targets) | set(test["label"]))
    params = (
        search(family, texts, targets, labels, "accuracy", folds=3, seed=0, n_jobs=1).params
        if cv
        else family.grid(len(texts))[0]
    )
    predictor = family.fit(texts, targets, params, 0)
    proba = predictor.predict_proba(test["text"].tolist())
    pred = np.array([labels.index(predictor.labels[i]) for i in proba.argmax(axis=1)])
    truth = np.array([labels.index(label) for label in test["label"]])
    matrix = confusion(truth, pred, len(labels))
    return {
        "accuracy": float(metric_value(matrix, "accuracy", labels)),
        "macro_f1": float(metric_value(matrix, "macro_f1", labels)),
    }


def workspace(
    folder: Path, url: str, labels: list[str], test: pd.DataFrame, train: pd.DataFrame | None = None
) -> Workspace:
    """A workspace whose model has the gold test set (and `train`, if given) and the scripted endpoint."""
    folder.mkdir(parents=True)
    fleet = {
        "workspace": {"n_jobs": 1},
        "models": {MODEL: {"task": "text-classification", "families": ["tfidf-logreg"], "labels": labels}},
        "llm": {"scripted": {"base_url": url, "model": "scripted", "max_concurrency": 8, "backoff_s": 0.01}},
    }
    (folder / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    ws = Workspace(folder)
    for frame, split in ((test, "test"), (train, "train")):
        if frame is not None:
            ingest_frame(
                ws, MODEL, frame.assign(**{LINE: range(2, len(frame) + 2)}), source=f"{split}.csv", split=split
            )
    return ws


def once(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per text (the first label): the scripted teacher keys its gold labels by text."""
    return frame.drop_duplicates("text").reset_index(drop=True)


def teacher_runs(script: Script, data: Path, scratch: Path, accuracies: list[float], cv: bool) -> None:
    print("\n## Teacher labels (scripted teacher over HTTP, `shoal label --teacher llm`)\n")
    print(
        "| dataset | teacher accuracy (set) | teacher gold-test acc | student on teacher labels: acc / macro-F1 | "
        "student on gold: acc / macro-F1 | texts labelled | label s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for name, folder in (("Banking77", "banking77"), ("SMS spam", "sms_spam")):
        train, test = (once(frame) for frame in load(data, folder))
        labels = sorted(set(train["label"]) | set(test["label"]))
        gold = dict(zip(train["text"], train["label"], strict=True)) | dict(
            zip(test["text"], test["label"], strict=True)
        )
        on_gold = student(train, test, cv)
        for accuracy in accuracies:
            script.label = teacher(gold, labels, accuracy)
            ws = workspace(scratch / f"{folder}-{accuracy}", script.url, labels, test)
            path = scratch / f"{folder}-{accuracy}.csv"
            train[["text"]].to_csv(path, index=False)
            started = time.perf_counter()
            result = label(ws, MODEL, "llm", path)
            seconds = time.perf_counter() - started
            assert result.ingest is not None and result.ingest.drop.n_test == 0, result
            rows = ws.registry.load_drops([result.ingest.drop])
            taught = student(rows[["text", "label"]], test, cv)
            teacher_acc = float(
                np.mean([script.label(text) == truth for text, truth in zip(test["text"], test["label"], strict=True)])
            )
            print(
                f"| {name} | {accuracy:.0%} | {teacher_acc:.4f} | "
                f"{taught['accuracy']:.4f} / {taught['macro_f1']:.4f} | "
                f"{on_gold['accuracy']:.4f} / {on_gold['macro_f1']:.4f} | {len(rows):,} | {seconds:.0f} |",
                flush=True,
            )
            ws.close()


def generator(
    script: Script, held_out: pd.DataFrame, test: pd.DataFrame, labels: list[str], gold: Callable[[str], str]
) -> None:
    """The scripted generator (see the module), and the scripted teacher for everything else."""
    pools = {lab: held_out.loc[held_out["label"] == lab, "text"].tolist() for lab in labels}
    tests = {lab: test.loc[test["label"] == lab, "text"].tolist() for lab in labels}
    kinds = ["real"] * 11 + ["other"] * 2 + ["seed"] * 2 + ["near-seed", "test", "near-test", "rot13", "long"]

    def write(label: str, number: int, n: int, seeds: list[str]) -> list[str]:
        rng = np.random.default_rng(int(unit(label, str(number)) * 2**32))
        pool, texts = pools[label], []
        for j in range(n):
            real = pool[(number * n + j) % len(pool)]
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "other":
                other = labels[int(rng.integers(len(labels)))]
                texts.append(pools[other][int(rng.integers(len(pools[other])))] if other != label else real)
            elif kind in ("seed", "near-seed"):
                seed = seeds[int(rng.integers(len(seeds)))]
                texts.append(seed if kind == "seed" else f"{seed.rstrip('?.! ')}!!")
            elif kind in ("test", "near-test"):
                text = tests[label][int(rng.integers(len(tests[label])))]
                texts.append(text if kind == "test" else f"{text.rstrip('?.! ')}!!")
            elif kind == "rot13":
                texts.append(codecs.encode(real, "rot13"))
            elif kind == "long":
                texts.append(" ".join([real] * 15))
            else:
                texts.append(real)
        return texts

    def content(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "new training examples" not in system:
            return json.dumps({"label": gold(user)})
        asked = re.search(r"^Label: (.+)$", user, re.M)
        ask = re.search(r"Write (\d+) new texts of this label \(request (\d+)\)", user)
        assert asked and ask, user
        seeds = [json.loads(line[2:]) for line in user.splitlines() if line.startswith("- ")]
        return json.dumps({"examples": write(asked[1], int(ask[2]), int(ask[1]), seeds)})

    script.content = content


def synth_runs(script: Script, data: Path, scratch: Path, per_labels: list[int], cv: bool) -> None:
    train, test = (once(frame) for frame in load(data, "banking77"))
    labels = sorted(set(train["label"]))
    shots = train.groupby("label").head(10)
    held_out = train.drop(shots.index)
    gold = dict(zip(train["text"], train["label"], strict=True)) | dict(zip(test["text"], test["label"], strict=True))
    answer = teacher(gold, labels, 0.9)
    generator(script, held_out, test, labels, lambda text: answer(text) if text in gold else labels[0])
    alone = student(shots, test, cv)
    print("\n## Synthetic data on 10-shot Banking77 (scripted generator and 90% teacher over HTTP, `shoal synth`)\n")
    print(
        "| per label asked | generated | kept | dropped | accuracy: 10-shot / + synth / + as many real | "
        "macro-F1: 10-shot / + synth | synth s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    reasons: dict[int, Counter[str]] = {}
    generated: dict[int, int] = {}
    for per_label in per_labels:
        ws = workspace(scratch / f"synth-{per_label}", script.url, labels, test, shots)
        started = time.perf_counter()
        result = synth(ws, MODEL, per_label=per_label)
        seconds = time.perf_counter() - started
        assert result.ingest is not None, result
        rows = ws.registry.load_drops([result.ingest.drop])[["text", "label"]]
        with_synth = student(pd.concat([shots, rows]), test, cv)
        kept_per_label = rows["label"].value_counts()
        real = pd.concat(
            [held_out[held_out["label"] == lab].tail(int(kept_per_label.get(lab, 0))) for lab in labels]
        )  # the last held-out texts: the generator returns the first ones
        with_real = student(pd.concat([shots, real]), test, cv)
        dropped = result.generated - result.kept
        print(
            f"| {per_label} | {result.generated:,} | {result.kept:,} | {dropped / result.generated:.1%} | "
            f"{alone['accuracy']:.4f} / {with_synth['accuracy']:.4f} / {with_real['accuracy']:.4f} | "
            f"{alone['macro_f1']:.4f} / {with_synth['macro_f1']:.4f} | {seconds:.0f} |",
            flush=True,
        )
        reasons[per_label], generated[per_label] = result.dropped, result.generated
        ws.close()
    print("\nDropped, per reason (share of the generated rows):\n")
    print(f"| reason | {' | '.join(f'{n} per label' for n in per_labels)} |")
    print(f"|---|{'---:|' * len(per_labels)}")
    for reason in REASONS:
        cells = [f"{reasons[n][reason]:,} ({reasons[n][reason] / generated[n]:.1%})" for n in per_labels]
        print(f"| {reason} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--accuracies", default="0.8,0.9")
    parser.add_argument("--per-label", default="20,50")
    parser.add_argument("--no-cv", action="store_true", help="tfidf-logreg's first setting instead of its CV search")
    parser.add_argument("--only", choices=["teacher", "synth"], default=None)
    args = parser.parse_args()
    started = print_machine()
    with tempfile.TemporaryDirectory() as folder, scripted_llm() as script:
        scratch = Path(folder)
        if args.only != "synth":
            teacher_runs(script, args.data, scratch, [float(a) for a in args.accuracies.split(",")], not args.no_cv)
        if args.only != "teacher":
            synth_runs(script, args.data, scratch, [int(n) for n in args.per_label.split(",")], not args.no_cv)
    print_command(started)


if __name__ == "__main__":
    main()
