"""The promotion gate: challenger vs champion on the same test examples -> a decision with its reason.

A challenger is promoted when its gain is at least `min_improvement`, a paired test finds it significantly
better at level `alpha`, and it fits the latency and size budgets. With a `non_inferiority_margin`, a
challenger at least 2x cheaper may also win when its metric is provably no worse than that margin.
A first version must significantly beat its task's floor (`majority`, `mean`). The paired test is the task's:
its Δ is always oriented so that > 0 means the challenger is better (an error metric's Δ is the reduction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from shoal.fleet import GateSpec

CHEAPER_FACTOR = 2.0


@dataclass(frozen=True)
class Contender:
    """A version as the gate sees it: its predictions on the current test set and its costs."""

    name: str  # "v3", or "majority floor"
    predictions: np.ndarray
    p95_ms: float
    size_mb: float
    cost: float


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    delta: float
    ci: list[float]
    p_value: float
    test: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def budget_problems(spec: GateSpec, p95_ms: float, size_mb: float) -> list[str]:
    problems = []
    if spec.max_p95_latency_ms is not None and p95_ms > spec.max_p95_latency_ms:
        problems.append(f"p95 latency {p95_ms:.2f} ms > budget {spec.max_p95_latency_ms:g} ms")
    if spec.max_size_mb is not None and size_mb > spec.max_size_mb:
        problems.append(f"size {size_mb:.1f} MB > budget {spec.max_size_mb:g} MB")
    return problems


def decide(spec: GateSpec, metric: str, challenger: Contender, champion: Contender, stats: dict[str, Any]) -> Decision:
    """`stats`: the task's paired test of the two contenders' predictions on the same test rows."""
    delta, ci, p = stats["delta"], stats["ci"], stats["p_value"]
    against = (
        f"{challenger.name} vs {champion.name} on {metric}: Δ {delta:+.4f} (95% CI {ci[0]:+.4f}..{ci[1]:+.4f}), "
        f"p={p:.3g} ({stats['test']})"
    )

    def decision(promote: bool, why: str) -> Decision:
        return Decision(promote, f"{why}; {against}", metric, delta, ci, p, stats["test"])

    over = budget_problems(spec, challenger.p95_ms, challenger.size_mb)
    if over:
        return decision(False, "kept the champion: challenger over budget (" + "; ".join(over) + ")")
    if np.array_equal(challenger.predictions, champion.predictions):
        return decision(False, "kept the champion: challenger makes the same predictions")
    if delta >= spec.min_improvement and delta > 0 and p < spec.alpha:
        return decision(True, "promoted: significantly better")
    cheaper = challenger.cost * CHEAPER_FACTOR <= champion.cost
    if spec.non_inferiority_margin > 0 and cheaper and ci[0] > -spec.non_inferiority_margin:
        return decision(
            True,
            f"promoted: no worse than -{spec.non_inferiority_margin:g} and "
            f"{champion.cost / max(challenger.cost, 1e-12):.1f}x cheaper",
        )
    if delta <= 0:
        return decision(False, "kept the champion: challenger is not better")
    if delta < spec.min_improvement:
        return decision(False, f"kept the champion: gain below the minimum {spec.min_improvement:g}")
    return decision(False, f"kept the champion: not significant at alpha={spec.alpha:g}")


def refreshed(decision: Decision, version: int, family: str, champion: int) -> Decision:
    """Promote the champion's own recipe refit on newer data: the champion's output is out of date (its forecasts
    start before the latest observation) and no candidate recipe beat its recipe on the current test."""
    why = (
        f"promoted: v{version} refits the production family {family} on the latest data "
        f"(v{champion}'s forecasts start before the latest observation)"
    )
    return replace(decision, promote=True, reason=f"{why}; gate on the recipes: {decision.reason}")
