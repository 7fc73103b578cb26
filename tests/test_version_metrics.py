"""Typed version metrics: a row stored before metrics were typed (by the trainer, on monthly car sales) loads
typed and is written back as the same JSON, directly and through the registry on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from metrics_fixture import metrics_of
from shoal.registry import Registry
from shoal.registry.records import CrossValidation, VersionMetrics

STORED: dict[str, Any] = json.loads(
    '{"mase": 0.9083415556637902, "smape": 8.890578109296127, "mae": 1460.138888888889, "metric": "mase", '
    '"ci": [0.6706914781003488, 1.1887769404422932], "interval_coverage": 0.8888888888888888, '
    '"interval_mean_width": 6796.728656975475, "n_test": 36, "data_end": "1967-12-01T00:00:00", '
    '"backtest": {"windows": 3, "horizon": 12, "series": 1, "first_origin": "1965-01-01T00:00:00"}, '
    '"test_hash": "82cde9f5b51765b56243554554e6740e6d3e92a776f3850ca231723f3aa05910", '
    '"profile": {"p50_ms_batch1": 0.0025565000214555766, "p95_ms_batch1": 0.004184350007108152, '
    '"p50_ms_batch64": 0.11315450001347926, "p95_ms_batch64": 0.13862070006780416, '
    '"throughput_per_s": 569279.7942684804, "cpu_seconds_per_prediction": 1.8006382812497945e-06, '
    '"latency_calls": 20, "size_bytes": 1441, "n_parameters": 36, "peak_rss_mb": null, '
    '"cost_per_million": 2.000709201388661e-05}, "train_seconds": 0.0021181050000222967, '
    '"eval_seconds": 0.024530531000095834, "cv": {"folds": 3, "score": null, "grid": []}, "n_train": 1}'
)


def test_a_stored_row_loads_typed_and_is_written_back_unchanged() -> None:
    metrics = VersionMetrics.from_json(STORED)
    assert metrics.metric == "mase" and metrics.value == STORED["mase"] and metrics.ci == STORED["ci"]
    assert metrics.profile.p95_ms_batch1 == STORED["profile"]["p95_ms_batch1"]
    assert metrics.profile.cost_per_million == STORED["profile"]["cost_per_million"]
    assert metrics.profile.peak_rss_mb is None
    assert metrics.cv == CrossValidation(3, None, []) and metrics.n_train == 1 and metrics.n_test == 36
    assert metrics.scores["data_end"] == "1967-12-01T00:00:00" and metrics.scores["backtest"]["windows"] == 3
    assert not {"metric", "ci", "profile", "cv", "n_test", "test_hash"} & set(metrics.scores)
    assert metrics.to_json() == STORED


def stored_json(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT metrics FROM versions ORDER BY number")).scalars().all()
    finally:
        engine.dispose()
    return [json.loads(row) if isinstance(row, str) else row for row in rows]


def test_the_registry_stores_the_same_json_and_hands_back_typed_metrics(registry_url: str, tmp_path: Path) -> None:
    registry = Registry(registry_url, tmp_path / "artifacts")
    try:
        registry.ensure_model("cars", "forecasting")
        by_hand = metrics_of("accuracy", {"accuracy": 0.5})
        for number, metrics in enumerate([VersionMetrics.from_json(STORED), by_hand], start=1):
            staged = registry.artifacts.stage()
            (staged / "weights.bin").write_bytes(b"w%d" % number)
            version, created = registry.register_version(
                "cars",
                family="seasonal-naive",
                params={"n": number},
                dataset_version="d",
                code_version="test",
                metrics=metrics,
                staged=staged,
                test_hash=metrics.test_hash,
                label_error_rate=None,
            )
            assert created and registry.version("cars", version.number).metrics == metrics
        trained, hand = stored_json(registry_url)
        assert trained == STORED
        assert "train_seconds" not in hand and "cv" not in hand and hand["accuracy"] == 0.5
        assert VersionMetrics.from_json(hand) == by_hand
    finally:
        registry.close()
