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


#: timed calls per batch size even when the time budget runs out first (p95 needs enough of them)
MIN_CALLS = 50


def _batches(inputs: Sequence[str], size: int, calls: int) -> list[list[str]]:
    stream = cycle(inputs)
    return [list(islice(stream, size)) for _ in range(calls)]


def latency(predictor: Predictor, inputs: Sequence[str], calls: int, seconds: float | None = None) -> dict[str, float]:
    """p50/p95 per call (ms) for each batch size, inputs/s, CPU-seconds per prediction, and the calls timed: up to
    `calls` per batch size, stopping after `seconds` of timed calls (but never before `MIN_CALLS`). Call it in a
    quiet phase: a fit running on the other core would slow every call."""
    result: dict[str, float] = {}
    predictor.predict_proba(list(inputs[:64]))  # warm up
    timed = calls
    for size in BATCHES:
        timings = np.empty(calls)
        batches = _batches(inputs, size, calls)  # made before the CPU clock starts: not part of a prediction's cost
        cpu_start = time.process_time()
        spent, done = 0.0, 0
        for batch in batches:
            start = time.perf_counter()
            predictor.predict_proba(batch)
            timings[done] = time.perf_counter() - start
            spent += timings[done]
            done += 1
            if seconds is not None and spent >= seconds and done >= MIN_CALLS:
                break
        cpu = time.process_time() - cpu_start
        timings = timings[:done]
        timed = min(timed, done)
        result[f"p50_ms_batch{size}"] = float(np.percentile(timings, 50) * 1000)
        result[f"p95_ms_batch{size}"] = float(np.percentile(timings, 95) * 1000)
        if size == max(BATCHES):
            result["throughput_per_s"] = float(size * done / timings.sum())
            result["cpu_seconds_per_prediction"] = cpu / (size * done)
    result["latency_calls"] = timed
    return result


def cost_per_million(cpu_seconds_per_prediction: float, cost_per_core_hour: float) -> float:
    """$ for one million predictions at batch 64, from measured CPU time and the price of a core-hour."""
    return cpu_seconds_per_prediction * 1e6 / 3600 * cost_per_core_hour


_RSS_CODE = (
    "import json, re, sys\n"
    "from pathlib import Path\n"
    "from shoal.families import get_family\n"
    "family, folder = get_family(sys.argv[1]), Path(sys.argv[2])\n"
    # the inputs come once the artifact is written: the process may be started before it is
    "inputs = json.load(sys.stdin)\n"
    "family.load(folder).predict_proba(inputs)\n"
    # VmHWM restarts at exec; ru_maxrss would include the parent's memory before the fork
    "status = open('/proc/self/status').read()\n"
    "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)\n"
)
RSS_TIMEOUT = 300.0


class PeakRss:
    """Peak RSS of a fresh process that loads the artifact and predicts a batch (MB), measured in the background:
    started at once (it imports its family, then waits for the inputs: it may be started before the artifact is
    written), read by `result`, which sends the inputs (memory, which work running meanwhile does not change)."""

    def __init__(self, family: str, folder: Path, inputs: Sequence[Any]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _RSS_CODE, family, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._inputs = json.dumps(list(inputs[:64]))

    def result(self) -> float | None:
        """The peak in MB, or None when the process failed or timed out."""
        try:
            out, _ = self._process.communicate(self._inputs, timeout=RSS_TIMEOUT)
            if self._process.returncode != 0:
                return None
            return float(out.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return None
        except (ValueError, IndexError):
            return None


def profile(
    predictor: Predictor,
    inputs: Sequence[str],
    *,
    calls: int,
    seconds: float | None,
    cost_per_core_hour: float,
    size_bytes: int,
    peak_rss: float | None,
) -> dict[str, Any]:
    """The cost profile; `peak_rss` was measured apart (`peak_rss_mb`, None when not measured)."""
    result: dict[str, Any] = latency(predictor, inputs, calls, seconds)
    result["latency_calls"] = int(result["latency_calls"])
    result["size_bytes"] = size_bytes
    result["n_parameters"] = predictor.n_parameters()
    result["peak_rss_mb"] = peak_rss
    result["cost_per_million"] = cost_per_million(result["cpu_seconds_per_prediction"], cost_per_core_hour)
    return result
