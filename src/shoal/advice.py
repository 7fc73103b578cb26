"""What would help when the gate refuses a model's first version, so a model without a production version says why
and what to do instead of a silent "production: none".

The gate decides (`shoal.gate.decide`); this module only reads its decision, the fleet spec and the data profile,
and writes advice: more labelled data (with an estimate of how many test rows would make the observed gain
significant, when the gain is positive and the estimate is not a wild extrapolation), the defaults the data
suggests when the fleet file set others (a metric suited to imbalanced classes), a bigger family, a teacher. The
gate stores it in the `rejected` event; the CLI, `GET /v1/models/{name}` and a predict's 404 show it from there.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.data.sets import TrainSet
    from shoal.fleet import ModelSpec
    from shoal.gate import Decision
    from shoal.registry import Registry
    from shoal.tasks.base import TaskKind

#: beyond this many times the current test rows, an estimate of the rows needed is not worth giving
MAX_GROWTH = 20
#: z of the 95% bootstrap CI the paired tests report
CI_Z = 1.959964


def rows_for_significance(delta: float, ci: list[float], n_test: int, alpha: float) -> int | None:
    """Test rows at which the observed gain `delta` would be significant at `alpha` (one-sided, as the gate's
    paired tests), if it holds: its standard error, read from the 95% CI, shrinks as 1/sqrt(rows). None when the
    gain is not positive or the estimate is beyond `MAX_GROWTH` times the current rows."""
    se = (ci[1] - ci[0]) / (2 * CI_Z)
    if delta <= 0 or se <= 0 or n_test <= 0:
        return None
    needed = n_test * (NormalDist().inv_cdf(1 - alpha) * se / delta) ** 2
    if needed > MAX_GROWTH * n_test:
        return None
    return max(n_test + 10, math.ceil(needed / 10) * 10)


def _more_data(decision: Decision, spec: ModelSpec, n_test: int) -> str:
    if decision.code == "not_significant":
        needed = rows_for_significance(decision.delta, decision.ci, n_test, spec.gate.alpha)
        if needed is not None:
            total = math.ceil(needed / spec.split.test_fraction / 100) * 100
            return (
                f"more labelled data: if the gain of {decision.delta:+.4f} holds, about {needed:,} test rows (now "
                f"{n_test:,}) would make it significant at alpha={spec.gate.alpha:g}; with --split auto at "
                f"test_fraction {spec.split.test_fraction:g}, about {total:,} labelled rows in all"
            )
    return "more labelled data"


def first_version_advice(
    name: str, decision: Decision, spec: ModelSpec, task: TaskKind, train: TrainSet, n_test: int
) -> tuple[str, ...]:
    """What would help a refused first version, most specific first."""
    advice = []
    if decision.code == "over_budget":
        advice.append(
            "a budget the best candidate fits (gate.max_p95_latency_ms, gate.max_size_mb) or cheaper families"
        )
    advice.append(_more_data(decision, spec, n_test))
    suggested = task.data_defaults(train)
    if suggested is not None:
        other = {key: value for key, value in suggested.settings.items() if getattr(spec, key) != value}
        if other:
            keys = ", ".join(f"{key}: {value}" for key, value in other.items())
            advice.append(f"what the data suggests, in shoal.yaml: {keys} ({suggested.why})")
    families, how = task.stronger_families
    missing = [family for family in families if family not in spec.families]
    if missing:
        advice.append(f"a bigger family: add {' or '.join(missing)} to families (they need {how})")
    if task.takes_teacher:
        advice.append(
            f"a teacher labelling unlabelled texts: 'shoal label {name} --teacher <llm, a version or a family> "
            "--unlabeled texts.csv', then 'shoal train'"
        )
    return tuple(advice)


def with_advice(reason: str, advice: tuple[str, ...]) -> str:
    """A refusal's reason, with what would help when there is advice."""
    if not advice:
        return reason
    return f"{reason}; what would help: " + "; ".join(f"({i}) {item}" for i, item in enumerate(advice, 1))


def no_production(registry: Registry, name: str) -> str | None:
    """Why `name` has no production version and what would help (the gate's last refusal), or None when it was
    never gated."""
    refused = registry.last_event(name, "rejected")
    if refused is None:
        return None
    return f"model {name!r} has no production version: the gate refused v{refused.version}: {refused.message}"
