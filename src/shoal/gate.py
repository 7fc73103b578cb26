"""The promotion gate, whole: the trainer's candidates -> the challenger -> challenger vs champion on the same
test examples -> a decision with its reason, recorded in the registry. `run` is the one entry point.

Choosing the challenger: a quantized variant is eligible only within `quantization_tolerance` of its
full-precision sibling, and a version over the latency or size budget only when no candidate fits them; the
best metric wins, ties going to the cheaper. The champion is re-scored on the current test set (never its
cached scores: from its outputs on these rows, stored in its artifact when it was evaluated on exactly them, else
by running it again); a first version faces its task's floor (`majority`, `mean`, `seasonal-naive`).

`decide`: a challenger is promoted when its gain is at least `min_improvement`, a paired test finds it
significantly better at level `alpha`, and it fits the latency and size budgets. With a `non_inferiority_margin`,
a challenger at least 2x cheaper may also win when its metric is provably no worse than that margin. The paired
test is the task's: its Δ is always oriented so that > 0 means the challenger is better (an error metric's Δ is
the reduction).

A cold start's LLM champion judged on its own answers (no human-labelled test rows) would score about 100%: there
the challenger is promoted once its agreement with the LLM reaches the model's `llm.min_agreement` (`agreement`);
with human-labelled test rows it faces the LLM as any champion, on those rows.

When the challenger is refused, two things may still be promoted: the champion's own recipe refit on newer data
when the champion's output is stale (a forecast that starts before the latest observation), and, for a first
version of a task whose floor is itself a useful answer (a seasonal-naive forecast), the floor's version, so
such a model always serves. A refused first version carries what would help (`shoal.advice`: more data, other
defaults, a bigger family, a teacher), in its `rejected` event too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal.data.sets import TestSet, TrainSet
from shoal.families import get_family
from shoal.families.base import read_json
from shoal.faults import checkpoint
from shoal.fleet import GateSpec, ModelSpec
from shoal.llm.answerer import LLM_FAMILY
from shoal.llm.spec import DEFAULT_MIN_AGREEMENT
from shoal.registry import PRODUCTION, Registry, Version
from shoal.tasks import get_task
from shoal.tasks.base import TaskKind
from shoal.workspace import Workspace

if TYPE_CHECKING:
    from shoal.pipelines.history import Judged

CHEAPER_FACTOR = 2.0


@dataclass(frozen=True)
class Contender:
    """A version as the gate sees it: its predictions on the current test set and its costs."""

    name: str  # "v3", or "the majority floor"
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
    #: why, as a word: over_budget, same_predictions, significant, non_inferior, not_better, below_minimum,
    #: not_significant; against a cold start's LLM on its own answers: agreement, below_agreement (a refit, a served
    #: floor or a component rule keep the word of the gate on the challenger)
    code: str = ""
    #: what would help, when a first version is refused (`shoal.advice`)
    advice: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    ws: Workspace, name: str, spec: ModelSpec, candidates: list[Version], train: TrainSet, test: TestSet
) -> Decision | None:
    """Gate this training's candidate versions against production and record the outcome (an alias change or
    a `rejected` event). None when the best candidate is already in production."""
    checkpoint("gate")
    registry, settings = ws.registry, ws.fleet.workspace
    task = get_task(spec.task)
    best = _challenger(registry, name, spec, task, candidates)
    current = registry.alias(name, PRODUCTION)
    if current == best.number:
        registry.record_event(name, "rejected", f"v{best.number} is already in production", version=best.number)
        return None
    champion = registry.version(name, current) if current is not None else None
    opponent = (
        _contender(ws, task, champion, test)
        if champion is not None
        else Contender(task.floor_name, task.floor(train, test), 0.0, 0.0, 0.0)
    )
    challenger = _contender(ws, task, best, test)
    if champion is not None and champion.family == LLM_FAMILY and test.judged_by is not None:
        cold = getattr(spec, "llm", None)
        threshold = cold.min_agreement if cold is not None else DEFAULT_MIN_AGREEMENT
        decision = agreement(spec.gate, threshold, challenger, opponent, test.judged_by)
    else:
        stats = task.paired_test(
            test,
            challenger.predictions,
            opponent.predictions,
            spec.metric,
            bootstrap=settings.evaluation.bootstrap,
            seed=settings.seed,
        )
        decision = decide(spec.gate, spec.metric, challenger, opponent, stats)
        if test.judged_by is not None:
            decision = replace(decision, reason=f"{decision.reason}; quality measured against {test.judged_by}")
    # the gate's own figures belong to the challenger: a refit or floor promoted instead has none of its own
    gain: dict[str, Any] | None = {
        k: v for k, v in decision.as_dict().items() if k not in ("promote", "reason", "code", "advice")
    }
    judged: dict[str, Judged] = {}
    if decision.promote and champion is not None:
        decision = _component_rules(ws, name, spec, task, test, best, champion, decision, judged)
    siblings = {v.family: v for v in candidates}
    if not decision.promote and champion is not None:
        fresh = _refresh(task, champion, siblings, test)
        if fresh is not None:
            best, decision, gain = fresh, refreshed(decision, fresh.number, fresh.family, champion.number), None
            decision = _component_rules(ws, name, spec, task, test, best, champion, decision, judged)
    elif not decision.promote and task.serving_floor in siblings:
        best, gain = siblings[task.serving_floor], None
        decision = floor_served(decision, best.number, task.floor_name)
    if not decision.promote and champion is None:
        from shoal.advice import first_version_advice

        advice = first_version_advice(name, decision, spec, task, train, len(test.inputs))
        decision = replace(decision, advice=advice)
    payload: dict[str, Any] = {"decision": decision.as_dict(), "champion": current}
    if decision.promote and champion is not None and champion.family == LLM_FAMILY:
        demoted = f"{opponent.name} is now v{best.number}'s cascade fallback"
        decision = replace(
            decision, reason=f"{decision.reason}; {demoted}: it answers only the inputs v{best.number} is unsure of"
        )
    if decision.promote:
        from shoal.pipelines.history import scores_after

        # judged before the alias moves and written in its transaction: a promotion never stands without its scores
        scores = scores_after(ws, name, best.number, gain=gain, judged=judged)
        registry.set_alias(
            name, best.number, actor="gate", reason=decision.reason, payload=payload, pipeline_scores=scores
        )
    else:
        from shoal.advice import with_advice

        message = with_advice(decision.reason, decision.advice)
        registry.record_event(name, "rejected", message, version=best.number, payload=payload)
    return decision


def _component_rules(
    ws: Workspace,
    name: str,
    spec: ModelSpec,
    task: TaskKind,
    test: TestSet,
    version: Version,
    champion: Version,
    decision: Decision,
    judged: dict[str, Judged],
) -> Decision:
    """The fleet's rules on the system a component works in (its cascade, its pipelines), on `version`: the version
    actually about to be promoted."""
    decision = _cascade_rule(ws, spec, task, test, version, champion, decision)
    return _pipeline_rules(ws, name, spec, version, decision, judged)


def _cascade_rule(
    ws: Workspace, spec: ModelSpec, task: TaskKind, test: TestSet, best: Version, champion: Version, decision: Decision
) -> Decision:
    """With `cascade.gate`, a promotion stands only if the cascade (each version with its own threshold for the
    declared target, the fallback's production version answering the inputs below it) does not lose accuracy
    significantly on the test rows; it is not judged while the fallback has no production version or a version has
    no calibration record."""
    from shoal.cascade.evaluation import cascade_predictions

    cascade = getattr(spec, "cascade", None)
    model = cascade.fallback_model if cascade is not None and cascade.gate else None  # never an LLM (the spec says)
    fallback = ws.registry.alias(model, PRODUCTION) if model is not None else None
    if model is None or fallback is None:
        return decision
    answers = _contender(ws, task, ws.registry.version(model, fallback), test).predictions
    new, old = (cascade_predictions(ws, version, answers, test, cascade) for version in (best, champion))
    if new is None or old is None:
        return decision
    settings = ws.fleet.workspace
    drop = task.paired_test(test, old, new, "accuracy", bootstrap=settings.evaluation.bootstrap, seed=settings.seed)
    return drop_verdict(decision, drop, f"the cascade with {model}", spec.gate.alpha)


def _pipeline_rules(
    ws: Workspace, name: str, spec: ModelSpec, best: Version, decision: Decision, judged: dict[str, Judged]
) -> Decision:
    """With `pipelines.<p>.gate`, a promotion stands only if each such pipeline with this model loses no end-to-end
    accuracy significantly on its test set (`shoal.pipelines.testset`) with the challenger in place of the
    production version, every other model at its production version: McNemar's test on the inputs' end-to-end
    right/wrong, as a model's own accuracy is judged. The production setup is judged first: a pipeline without a
    test set, with a model that has no production version, or that fails as it is, is not judged (the reason says
    so); a challenger that fails only once it is in the pipeline is refused. Each challenger run is kept in
    `judged` (the pipeline's history reuses it)."""
    from shoal.evaluate.classification import paired_test
    from shoal.pipelines.evaluate import correctness, judge, load, production_versions
    from shoal.pipelines.history import Judged
    from shoal.pipelines.testset import no_test_set, pipeline_cases

    settings = ws.fleet.workspace
    for pipeline_name, pipeline in ws.fleet.pipelines.items():
        rule = pipeline.gate
        if not decision.promote or rule is None or not rule.no_significant_drop or name not in pipeline.models:
            continue
        try:
            cases = pipeline_cases(ws, pipeline_name)
            if cases is None:
                raise ValueError(no_test_set(pipeline_name))
            current = load(ws, production_versions(ws, pipeline))
            old = correctness(judge(pipeline, cases, current), cases.expected)[0]
            if not len(old):
                raise ValueError(f"no input of {cases.source} has an expected label: nothing to judge")
        except Exception as error:  # the rule cannot be judged: say so, never fail the training over it
            decision = replace(decision, reason=f"{decision.reason}; pipeline {pipeline_name!r} not judged: {error}")
            continue
        try:
            challenger = {**current, **load(ws, {name: best.number})}
            outcomes = judge(pipeline, cases, challenger)
        except Exception as error:  # the pipeline works as it is: the challenger breaks it
            failure = f"{type(error).__name__}: {error}"
            why = f"kept the champion: v{best.number} fails in pipeline {pipeline_name!r} ({failure})"
            decision = replace(decision, promote=False, reason=f"{why}; alone: {decision.reason}")
            continue
        versions = {model: number for model, (number, _, _) in challenger.items()}
        judged[pipeline_name] = Judged(cases, versions, outcomes)
        new = correctness(outcomes, cases.expected)[0]
        truth = np.ones(len(old), dtype=int)
        drop = paired_test(
            truth,
            old.astype(int),
            new.astype(int),
            ["wrong", "right"],
            "accuracy",
            bootstrap=settings.evaluation.bootstrap,
            seed=settings.seed,
        )
        what = (
            f"pipeline {pipeline_name!r} end to end on {len(old)} inputs of {cases.source} "
            f"(accuracy {old.mean():.4f} with v{current[name][0]}, {new.mean():.4f} with v{best.number})"
        )
        decision = drop_verdict(decision, drop, what, rule.alpha or spec.gate.alpha)
    return decision


def drop_verdict(decision: Decision, drop: dict[str, Any], what: str, alpha: float) -> Decision:
    """`decision` unless the accuracy of `what` (the model's cascade, a pipeline with the model) drops significantly:
    `drop` is the paired test of the champion's against the challenger's (Δ > 0: the challenger's is worse)."""
    delta, p = drop["delta"], drop["p_value"]
    against = f"{what}: accuracy Δ {0.0 - delta:+.4f}, p={p:.3g} for a drop"
    if delta > 0 and p < alpha:
        return replace(decision, promote=False, reason=f"kept the champion: {against}; alone: {decision.reason}")
    return replace(decision, reason=f"{decision.reason}; {against}")


def budget_problems(spec: GateSpec, p95_ms: float, size_mb: float) -> list[str]:
    problems = []
    if spec.max_p95_latency_ms is not None and p95_ms > spec.max_p95_latency_ms:
        problems.append(f"p95 latency {p95_ms:.2f} ms > budget {spec.max_p95_latency_ms:g} ms")
    if spec.max_size_mb is not None and size_mb > spec.max_size_mb:
        problems.append(f"size {size_mb:.1f} MB > budget {spec.max_size_mb:g} MB")
    return problems


def quantization_problem(version: Version, siblings: dict[str, Version], spec: ModelSpec) -> str | None:
    """A quantized variant is eligible only within `quantization_tolerance` of its full-precision sibling."""
    base = get_family(version.family).quantized_from
    if base is None or base not in siblings:
        return None
    better = get_task(spec.task).better
    loss = better(spec.metric, siblings[base].metrics.scores[spec.metric]) - better(
        spec.metric, version.metrics.scores[spec.metric]
    )
    if loss > spec.quantization_tolerance:
        return f"v{version.number} ({version.family}) loses {loss:.4f} {spec.metric} against {base}"
    return None


def _challenger(registry: Registry, name: str, spec: ModelSpec, task: TaskKind, candidates: list[Version]) -> Version:
    """The best eligible candidate (ineligible quantized variants are recorded as such)."""
    siblings = {v.family: v for v in candidates}
    eligible = []
    for v in candidates:
        problem = quantization_problem(v, siblings, spec)
        if problem:
            registry.record_event(name, "ineligible", problem, version=v.number)
        elif not budget_problems(spec.gate, v.metrics.profile.p95_ms_batch1, v.size_bytes / 1e6):
            eligible.append(v)
    pool = eligible or candidates
    return max(
        pool,
        key=lambda v: (round(task.better(spec.metric, v.metrics.scores[spec.metric]), 9), tuple(-c for c in _cost(v))),
    )


#: a version's gate outputs on the test set it was evaluated on (`TaskKind.stored_outputs`), in its artifact
OUTPUTS_FILE = "test_outputs.json"


def _contender(ws: Workspace, task: TaskKind, version: Version, test: TestSet) -> Contender:
    """A version's outputs on the current test set: the ones stored in its artifact when they were computed on
    exactly these rows, else the version loaded and run again (never its cached scores: the gate recomputes
    every number from the outputs)."""
    if version.family == LLM_FAMILY:  # a cold start's LLM: asked on the test rows (its cached answers first)
        from shoal.coldstart import llm_outputs

        outputs, llm = llm_outputs(ws, version, test)
        return Contender(f"v{version.number} (LLM {llm.endpoint})", outputs, 0.0, 0.0, llm.cost_per_million or 0.0)
    folder = ws.registry.artifacts.open(version.artifact_uri, version.checksum)
    stored = folder / OUTPUTS_FILE
    outputs = task.restored_outputs(read_json(stored), test) if stored.is_file() else None
    if outputs is None:
        outputs = task.gate_outputs(get_family(version.family).load(folder), test)
    profile = version.metrics.profile
    return Contender(
        f"v{version.number}", outputs, profile.p95_ms_batch1, version.size_bytes / 1e6, profile.cost_per_million
    )


def _cost(version: Version) -> tuple[float, float]:
    return version.metrics.profile.cost_per_million, version.size_bytes


def _refresh(task: TaskKind, champion: Version, siblings: dict[str, Version], test: TestSet) -> Version | None:
    """The champion's own family refit on the current data, when the champion's output is stale (a forecast
    that starts before the latest observation) and no other candidate beat it."""
    fresh = siblings.get(champion.family)
    if fresh is None or fresh.number == champion.number or not task.is_stale(champion.metrics.scores, test):
        return None
    return fresh


def decide(spec: GateSpec, metric: str, challenger: Contender, champion: Contender, stats: dict[str, Any]) -> Decision:
    """`stats`: the task's paired test of the two contenders' predictions on the same test rows."""
    delta, ci, p = stats["delta"], stats["ci"], stats["p_value"]
    against = (
        f"{challenger.name} vs {champion.name} on {metric}: Δ {delta:+.4f} (95% CI {ci[0]:+.4f}..{ci[1]:+.4f}), "
        f"p={p:.3g} ({stats['test']})"
    )

    def decision(promote: bool, code: str, why: str) -> Decision:
        return Decision(promote, f"{why}; {against}", metric, delta, ci, p, stats["test"], code)

    over = budget_problems(spec, challenger.p95_ms, challenger.size_mb)
    if over:
        return decision(False, "over_budget", "kept the champion: challenger over budget (" + "; ".join(over) + ")")
    if np.array_equal(challenger.predictions, champion.predictions):
        return decision(False, "same_predictions", "kept the champion: challenger makes the same predictions")
    if delta >= spec.min_improvement and delta > 0 and p < spec.alpha:
        return decision(True, "significant", "promoted: significantly better")
    cheaper = challenger.cost * CHEAPER_FACTOR <= champion.cost
    if spec.non_inferiority_margin > 0 and cheaper and ci[0] > -spec.non_inferiority_margin:
        return decision(
            True,
            "non_inferior",
            f"promoted: no worse than -{spec.non_inferiority_margin:g} and "
            f"{champion.cost / max(challenger.cost, 1e-12):.1f}x cheaper",
        )
    if delta <= 0:
        return decision(False, "not_better", "kept the champion: challenger is not better")
    if delta < spec.min_improvement:
        return decision(False, "below_minimum", f"kept the champion: gain below the minimum {spec.min_improvement:g}")
    return decision(False, "not_significant", f"kept the champion: not significant at alpha={spec.alpha:g}")


def agreement(spec: GateSpec, threshold: float, challenger: Contender, llm: Contender, judged_by: str) -> Decision:
    """A small challenger against a cold start's LLM when the test rows are labelled by no human (`judged_by`): the
    LLM would score about 100% on its own answers, so no paired test could ever favour the challenger. It is
    promoted once its agreement with the LLM's answers on these held-out rows reaches `threshold` (the model's
    `llm.min_agreement`) and it fits the budgets; the reason says it was judged against the LLM."""
    from scipy.stats import binomtest

    agree = challenger.predictions == llm.predictions
    n, k = len(agree), int(agree.sum())
    share = k / n if n else 0.0
    tested = binomtest(k, n, threshold, alternative="greater") if n else None
    # the interval of a one-sided test is one-sided (its upper end is 1): the two-sided one is what is reported
    ci = binomtest(k, n).proportion_ci(method="wilson") if n else None
    low, high = (ci.low, ci.high) if ci is not None else (0.0, 1.0)
    against = (
        f"{challenger.name} agrees with {llm.name} on {k} of {n} held-out test rows ({share:.4f}, two-sided 95% CI "
        f"{low:.4f}..{high:.4f}; llm.min_agreement {threshold:g}): judged against the LLM, the test rows being "
        f"{judged_by} (no human-labelled test rows)"
    )

    def decision(promote: bool, code: str, why: str) -> Decision:
        p = float(tested.pvalue) if tested is not None else 1.0
        return Decision(
            promote,
            f"{why}; {against}",
            "agreement",
            share - threshold,
            [low - threshold, high - threshold],
            p,
            "binomial (agreement above min_agreement)",
            code,
        )

    over = budget_problems(spec, challenger.p95_ms, challenger.size_mb)
    if over:
        return decision(False, "over_budget", "kept the LLM: challenger over budget (" + "; ".join(over) + ")")
    if n and share >= threshold:
        return decision(True, "agreement", "promoted: agrees with the LLM at least min_agreement (the observed share)")
    return decision(False, "below_agreement", "kept the LLM: agrees with it less than min_agreement")


def refreshed(decision: Decision, version: int, family: str, champion: int) -> Decision:
    """Promote the champion's own recipe refit on newer data: the champion's output is out of date (its forecasts
    start before the latest observation) and no candidate recipe beat its recipe on the current test."""
    why = (
        f"promoted: v{version} refits the production family {family} on the latest data "
        f"(v{champion}'s forecasts start before the latest observation)"
    )
    return replace(decision, promote=True, reason=f"{why}; gate on the recipes: {decision.reason}")


def floor_served(decision: Decision, version: int, floor_name: str) -> Decision:
    """Promote a first version that is the floor itself: the task's floor is a useful answer (a seasonal-naive
    forecast) and no candidate beat it, so the model serves the floor rather than nothing."""
    why = f"promoted {floor_name} (v{version}): no candidate beats it and it is a useful answer"
    return replace(decision, promote=True, reason=f"{why}; gate on the best candidate: {decision.reason}")
