"""The serving benchmarks' wrk parsing (benchmarks/harness.py): a non-2xx answer or a socket error is a failure and
is not counted in requests/s; repeated runs give medians, with every failure kept."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import median_run, parse_wrk

# wrk 4.1.0's output (`--latency`) against a server answering 500 to some requests
WITH_FAILURES = """Running 3s test @ http://127.0.0.1:41231
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.43ms    3.02ms  48.11ms   81.20%
    Req/Sec     1.49k    93.10     1.70k    68.33%
  Latency Distribution
     50%   20.98ms
     75%   22.51ms
     90%   24.87ms
     99%    1.20s
  9000 requests in 3.00s, 1.42MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 3000
Requests/sec:   3000.00
Transfer/sec:    484.44KB
"""

CLEAN = """Running 1m test @ http://127.0.0.1:41231
  1 threads and 1 connections
  Latency Distribution
     50%  812.00us
     75%    1.01ms
     90%    1.20ms
     99%    2.50ms
  60000 requests in 1.00m, 9.42MB read
Requests/sec:   1000.00
"""


def test_non_2xx_answers_are_excluded_from_requests_per_second_and_counted_with_socket_errors() -> None:
    figures = parse_wrk(WITH_FAILURES)
    assert figures["rps"] == pytest.approx((9000 - 3000) / 3.0)
    assert figures["failed"] == 3000 + 2 + 5
    assert figures["p50"] == pytest.approx(20.98)
    assert figures["p99"] == pytest.approx(1200.0)


def test_a_clean_run_has_no_failures_and_its_units_are_read() -> None:
    figures = parse_wrk(CLEAN)
    assert figures == {"rps": pytest.approx(1000.0), "p50": pytest.approx(0.812), "p99": 2.5, "failed": 0}


def test_medians_of_runs_keep_every_failure() -> None:
    runs = [{"rps": r, "p50": 1.0, "p99": p, "failed": f} for r, p, f in ((100, 9, 0), (300, 5, 2), (200, 7, 1))]
    assert median_run(runs) == {"rps": 200, "p50": 1.0, "p99": 7, "failed": 3}
