"""Cost of a predictor: latency at batch 1 and 64, throughput, CPU time, peak RSS, size, $ per 1M."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import numpy as np

from shoal.families import Predictor

BATCHES = (1, 64)


def _batches(inputs: Sequence[str], size: int, calls: int) -> list[list[str]]:
    stream = cycle(inputs)
    return [list(islice(stream, size)) for _ in range(calls)]


def latency(predictor: Predictor, inputs: Sequence[str], calls: int) -> dict[str, float]:
    """p50/p95 per call (ms) for each batch size, inputs/s, and CPU-seconds per prediction."""
    result: dict[str, float] = {}
    predictor.predict_proba(list(inputs[:64]))  # warm up
    for size in BATCHES:
        timings = np.empty(calls)
        cpu_start = time.process_time()
        for i, batch in enumerate(_batches(inputs, size, calls)):
            start = time.perf_counter()
            predictor.predict_proba(batch)
            timings[i] = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        result[f"p50_ms_batch{size}"] = float(np.percentile(timings, 50) * 1000)
        result[f"p95_ms_batch{size}"] = float(np.percentile(timings, 95) * 1000)
        if size == max(BATCHES):
            result["throughput_per_s"] = float(size * calls / timings.sum())
            result["cpu_seconds_per_prediction"] = cpu / (size * calls)
    return result


def cost_per_million(cpu_seconds_per_prediction: float, cost_per_core_hour: float) -> float:
    """$ for one million predictions at batch 64, from measured CPU time and the price of a core-hour."""
    return cpu_seconds_per_prediction * 1e6 / 3600 * cost_per_core_hour


def peak_rss_mb(family: str, folder: Path, inputs: Sequence[str]) -> float | None:
    """Peak RSS of a fresh process that loads the artifact and predicts a batch (MB)."""
    code = (
        "import json, re, sys\n"
        "from pathlib import Path\n"
        "from shoal.families import get_family\n"
        "family, folder = sys.argv[1], Path(sys.argv[2])\n"
        "inputs = json.load(sys.stdin)\n"
        "get_family(family).load(folder).predict_proba(inputs)\n"
        # VmHWM restarts at exec; ru_maxrss would include the parent's memory before the fork
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, family, str(folder)],
            input=json.dumps(list(inputs[:64])),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def profile(
    predictor: Predictor,
    family: str,
    folder: Path,
    inputs: Sequence[str],
    *,
    calls: int,
    measure_rss: bool,
    cost_per_core_hour: float,
    size_bytes: int,
) -> dict[str, Any]:
    result: dict[str, Any] = latency(predictor, inputs, calls)
    result["latency_calls"] = calls
    result["size_bytes"] = size_bytes
    result["n_parameters"] = predictor.n_parameters()
    result["peak_rss_mb"] = peak_rss_mb(family, folder, inputs) if measure_rss else None
    result["cost_per_million"] = cost_per_million(result["cpu_seconds_per_prediction"], cost_per_core_hour)
    return result
