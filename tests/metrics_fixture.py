"""Version metrics for tests that register or build versions by hand (no training)."""

from __future__ import annotations

from typing import Any

from shoal.registry.records import Profile, VersionMetrics

PROFILE = Profile(
    p50_ms_batch1=1.0,
    p95_ms_batch1=2.0,
    p50_ms_batch64=5.0,
    p95_ms_batch64=8.0,
    throughput_per_s=10_000.0,
    cpu_seconds_per_prediction=1e-4,
    latency_calls=20,
    size_bytes=1000,
    n_parameters=100,
    peak_rss_mb=None,
    cost_per_million=0.001,
)


def metrics_of(metric: str, scores: dict[str, Any]) -> VersionMetrics:
    """Metrics as registered by hand: the scores, a CI around the fleet metric, no trainer fields."""
    value = scores[metric]
    return VersionMetrics(metric, [value - 0.01, value + 0.01], scores, 100, "t", PROFILE)
