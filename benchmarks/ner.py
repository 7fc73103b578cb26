"""Issue 18 figures: named-entity recognition (token classification) on WNUT-17, trained from empty through the CLI.

    .venv/bin/python benchmarks/ner.py [--data ../shared/data] [--workspace benchmarks/.work/ner]
                                       [--families memorized,crf,static-crf,minilm-tagger,minilm-tagger-int8]
                                       [--dev train|skip] [--cv-folds 2] [--search-rows 1000]

The official train file (and dev, unless `--dev skip`) is ingested as training data, the official test file with
`--split test`; `shoal train` fits every family (the search on training folds only) and the gate picks one. The
search cross-validates a sample of `--search-rows` training sentences in `--cv-folds` folds (the fleet file's
`search_rows` and `cv_folds`: the MiniLM tagger's folds then tune in about a minute each); the final fits use every
training sentence. Without torch installed (the `embeddings` extra), leave the minilm-tagger families out. Printed
as Markdown: each family's entity-level F1 on the official test set (exact span and type) with its 95% bootstrap CI
over sentences, precision, recall, the shared task's surface-form F1, per-type F1 of the promoted family, p50 latency
at batch 1, throughput at batch 64, artifact size and training time (the search plus the final fit), then the
gate's decision and the shared task's best system for reference: UH-RiTUAL, 41.86 entity F1 and 40.24 surface F1
(Aguilar et al., "A Multi-task Approach for Named Entity Recognition in Social Media Data", W-NUT 2017).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import yaml
from machine import print_command, print_machine, shoal

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]
BEST_2017 = {"entity_f1": 0.4186, "surface_f1": 0.4024}  # UH-RiTUAL, the shared task's first place


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "ner")
    parser.add_argument(
        "--families",
        default="memorized,crf,static-crf,minilm-tagger,minilm-tagger-int8",
        help="comma-separated token-classification families",
    )
    parser.add_argument("--dev", choices=["train", "skip"], default="train", help="the dev file as training data")
    parser.add_argument("--cv-folds", type=int, default=2, help="the search's folds (the fleet file's cv_folds)")
    parser.add_argument("--search-rows", type=int, default=1000, help="sentences the search cross-validates on")
    args = parser.parse_args()
    begun = print_machine()
    ws = args.workspace.resolve()
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    model = {
        "task": "token-classification",
        "entity_types": TYPES,
        "families": args.families.split(","),
        "cv_folds": args.cv_folds,
        "search_rows": args.search_rows,
    }
    (ws / "shoal.yaml").write_text(yaml.safe_dump({"workspace": {"n_jobs": 2}, "models": {"wnut17": model}}))
    w = ["-w", str(ws)]
    folder = args.data / "wnut17"
    files = [
        ("train.conll", "train"),
        *([("dev.conll", "train")] if args.dev == "train" else []),
        ("test.conll", "test"),
    ]
    for name, split in files:
        print(shoal("ingest", "wnut17", str(folder / name), "--split", split, *w).stdout.strip().splitlines()[0])
    started = time.perf_counter()
    shoal("train", "wnut17", *w)
    wall = time.perf_counter() - started

    from shoal.registry import PRODUCTION
    from shoal.workspace import Workspace

    workspace = Workspace(ws)
    try:
        registry = workspace.registry
        production = registry.alias("wnut17", PRODUCTION)
        versions = registry.versions("wnut17")
        decisions = [e for e in registry.events("wnut17") if e.kind in ("promoted", "rejected")]
        trained_on = "train + dev" if args.dev == "train" else "train"
        n_test = versions[0].metrics.n_test
        print(f"\n**WNUT-17** ({trained_on} -> official test, {n_test} sentences; entity F1: exact span and type)\n")
        print(
            "| family | entity F1 (95% CI) | precision | recall | surface F1 | p50 ms (b=1) | inputs/s (b=64) | "
            "size MB | train s | promoted |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for v in versions:
            m, p = v.metrics, v.metrics.profile
            s = m.scores
            promoted = "**yes**" if v.number == production else ""
            print(
                f"| {v.family} | {s['entity_f1']:.4f} ({m.ci[0]:.4f}..{m.ci[1]:.4f}) | {s['entity_precision']:.4f} | "
                f"{s['entity_recall']:.4f} | {s['surface_f1']:.4f} | {p.p50_ms_batch1:.2f} | "
                f"{p.throughput_per_s:,.0f} | {v.size_bytes / 1e6:.2f} | {m.train_seconds or 0:.0f} | {promoted} |"
            )
        best = next((v for v in versions if v.number == production), None)
        if best is not None:
            print(
                f"\nper type ({best.family}): "
                + ", ".join(
                    f"{label} {row['f1']:.3f} (n={row['support']})"
                    for label, row in best.metrics.scores["per_type"].items()
                )
            )
            gain = best.metrics.scores["entity_f1"] - BEST_2017["entity_f1"]
            print(
                f"\nthe shared task's best (UH-RiTUAL): entity F1 {BEST_2017['entity_f1']:.4f}, surface F1 "
                f"{BEST_2017['surface_f1']:.4f}; the promoted {best.family}: {gain:+.4f} entity F1 against it"
            )
        print(f"\n`shoal train` wall {wall:.0f} s; gate: {decisions[-1].message if decisions else '(no decision)'}")
    finally:
        workspace.close()
    print_command(begun)


if __name__ == "__main__":
    main()
