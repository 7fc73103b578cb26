"""`gate.decide`, branch by branch, on the classification task's real paired test (McNemar's exact test on
accuracy) of predictions built to win or lose a chosen number of test rows; and the whole gate's first version
against a floor that is not a useful answer (the majority class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import write_rows
from shoal.data.ingest import ingest_file
from shoal.evaluate.classification import paired_test
from shoal.fleet import GateSpec
from shoal.gate import Contender, Decision, decide
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models

LABELS = ["yes", "no"]


def outcomes(wins: int, losses: int, both: int = 300, neither: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, challenger, champion): the challenger alone is right on `wins` rows, the champion alone on
    `losses`, both on `both`, neither on `neither`."""
    truth = np.zeros(wins + losses + both + neither, dtype=np.int64)
    right = np.array([True] * wins + [False] * losses + [True] * both + [False] * neither)
    champion_right = np.array([False] * wins + [True] * losses + [True] * both + [False] * neither)
    return truth, np.where(right, 0, 1), np.where(champion_right, 0, 1)


def gate(
    wins: int,
    losses: int,
    *,
    spec: GateSpec | None = None,
    cost: tuple[float, float] = (1.0, 1.0),
    p95_ms: float = 1.0,
    size_mb: float = 1.0,
    same: bool = False,
    **counts: int,
) -> tuple[Decision, dict[str, Any]]:
    """The decision on a challenger (`cost[0]`) vs a champion (`cost[1]`), with the paired test's numbers."""
    truth, challenger, champion = outcomes(wins, losses, **counts)
    if same:
        challenger = champion.copy()
    stats = paired_test(truth, challenger, champion, LABELS, "accuracy", bootstrap=1000, seed=0)
    decision = decide(
        spec or GateSpec(),
        "accuracy",
        Contender("v2", challenger, p95_ms, size_mb, cost[0]),
        Contender("v1", champion, 1.0, 1.0, cost[1]),
        stats,
    )
    assert decision.p_value == stats["p_value"] and decision.delta == stats["delta"] and decision.test == "mcnemar"
    assert "v2 vs v1 on accuracy: Δ" in decision.reason and f"p={stats['p_value']:.3g}" in decision.reason
    return decision, stats


def test_a_significant_gain_is_promoted() -> None:
    decision, stats = gate(30, 5)
    assert stats["p_value"] < 0.001 and decision.promote
    assert decision.reason.startswith("promoted: significantly better")


def test_a_positive_gain_that_is_not_significant_keeps_the_champion() -> None:
    decision, stats = gate(9, 5)
    assert stats["delta"] > 0 and 0.05 < stats["p_value"] < 0.5
    assert not decision.promote
    assert decision.reason.startswith("kept the champion: not significant at alpha=0.05")
    loose, _ = gate(9, 5, spec=GateSpec(alpha=0.5))  # the same gain at a looser level is significant
    assert loose.promote


def test_a_significant_gain_below_min_improvement_keeps_the_champion() -> None:
    decision, stats = gate(30, 5, spec=GateSpec(min_improvement=0.1))
    assert stats["p_value"] < 0.001 and 0 < stats["delta"] < 0.1
    assert not decision.promote
    assert decision.reason.startswith("kept the champion: gain below the minimum 0.1")
    assert gate(30, 5, spec=GateSpec(min_improvement=0.05))[0].promote  # Δ = 25/435 clears 0.05


def test_a_worse_challenger_is_not_better() -> None:
    decision, stats = gate(5, 9)
    assert stats["delta"] < 0 and not decision.promote
    assert decision.reason.startswith("kept the champion: challenger is not better")


def test_identical_predictions_keep_the_champion() -> None:
    decision, stats = gate(30, 5, same=True)
    assert stats["delta"] == 0 and stats["p_value"] == 1.0 and not decision.promote
    assert decision.reason.startswith("kept the champion: challenger makes the same predictions")


@pytest.mark.parametrize(
    ("budget", "p95_ms", "size_mb", "problem"),
    [
        (GateSpec(max_p95_latency_ms=10), 12.0, 1.0, "p95 latency 12.00 ms > budget 10 ms"),
        (GateSpec(max_size_mb=200), 1.0, 300.0, "size 300.0 MB > budget 200 MB"),
    ],
)
def test_a_significantly_better_challenger_over_a_budget_keeps_the_champion(
    budget: GateSpec, p95_ms: float, size_mb: float, problem: str
) -> None:
    decision, stats = gate(30, 5, spec=budget, p95_ms=p95_ms, size_mb=size_mb)
    assert stats["p_value"] < 0.001 and not decision.promote
    assert decision.reason.startswith(f"kept the champion: challenger over budget ({problem})")
    within, _ = gate(30, 5, spec=budget)  # the same challenger within the budget
    assert within.promote


def test_a_2x_cheaper_challenger_no_worse_than_the_margin_is_promoted() -> None:
    margin = GateSpec(non_inferiority_margin=0.03)
    decision, stats = gate(3, 4, spec=margin, cost=(1.0, 2.0), both=900)
    assert stats["delta"] < 0 and stats["ci"][0] > -0.03 and decision.promote
    assert decision.reason.startswith("promoted: no worse than -0.03 and 2.0x cheaper")


def test_non_inferiority_needs_2x_cheaper_a_ci_above_the_margin_and_a_margin() -> None:
    margin = GateSpec(non_inferiority_margin=0.03)
    not_cheaper, _ = gate(3, 4, spec=margin, cost=(1.0, 1.9), both=900)
    assert not not_cheaper.promote and not_cheaper.reason.startswith("kept the champion: challenger is not better")
    too_low, stats = gate(10, 30, spec=margin, cost=(1.0, 4.0))
    assert stats["ci"][0] < -0.03 and not too_low.promote
    assert too_low.reason.startswith("kept the champion: challenger is not better")
    no_margin, _ = gate(3, 4, cost=(1.0, 4.0), both=900)
    assert not no_margin.promote


def bank_model(families: list[str]) -> dict[str, Any]:
    return {"task": "text-classification", "metric": "accuracy", "families": families}


def test_a_first_version_that_does_not_beat_the_majority_floor_is_not_served(
    make_workspace, banking: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """Through the whole gate: the majority class is a floor to clear, not an answer to serve (contrast with
    forecasting's seasonal-naive floor in test_forecasting.py)."""
    train, test = banking
    intents = sorted(train["label"].unique())[:4]
    ws = make_workspace({"bank": bank_model(["majority"])})
    rows = train[train["label"].isin(intents)].groupby("label").head(10)
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", rows), split="train")
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test[test["label"].isin(intents)]), split="test")
    [report] = train_models(ws)
    assert [c.family for c in report.candidates] == ["majority"]
    assert report.decision is not None and not report.decision.promote
    assert report.decision.reason.startswith("kept the champion: challenger makes the same predictions")
    assert "v1 vs the majority floor" in report.decision.reason
    assert ws.registry.alias("bank", PRODUCTION) is None
    [rejected] = [e for e in ws.registry.events("bank") if e.kind == "rejected"]
    assert rejected.payload["decision"]["promote"] is False and rejected.payload["champion"] is None
