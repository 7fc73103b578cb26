"""What a selection report says about a model, as plain data (the HTML page and `--json` both use this)."""

from __future__ import annotations

import json
from typing import Any

from shoal.cascade.evaluation import cascade_report
from shoal.coldstart import measured_llm_tier
from shoal.data.assembled import model_drops, teacher_judged
from shoal.data.audit import LABEL_ISSUES_FILE
from shoal.defaults import resolved
from shoal.registry import PRODUCTION
from shoal.tasks import get_task
from shoal.workspace import Workspace

DECISION_KINDS = ("promoted", "rejected", "rolled_back", "failed")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (x lower is better, y higher is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def candidates(ws: Workspace, name: str, production: int | None) -> list[dict[str, Any]]:
    """Every version of `name` with its scores, costs and whether it is on the latency and the size Pareto front
    (the selection report and the dashboard's model page)."""
    spec = resolved(ws, name).spec  # the fleet file with the defaults recorded from the data
    task = get_task(spec.task)
    found = []
    for v in ws.registry.versions(name):
        m, profile = v.metrics, v.metrics.profile
        found.append(
            {
                "version": v.number,
                "family": v.family,
                "params": v.params,
                "dataset_version": v.dataset_version,
                "metric": m.scores.get(spec.metric),
                "ci": m.ci,
                "accuracy": m.scores.get("accuracy"),
                "macro_f1": m.scores.get("macro_f1"),
                "mcc": m.scores.get("mcc"),
                "ece": m.scores.get("ece"),
                "columns": [m.scores.get(key) for key, _ in task.report_columns],
                "p50_ms_batch1": profile.p50_ms_batch1,
                "p95_ms_batch1": profile.p95_ms_batch1,
                "throughput_per_s": profile.throughput_per_s,
                "size_mb": v.size_bytes / 1e6,
                "peak_rss_mb": profile.peak_rss_mb,
                "cost_per_million": profile.cost_per_million,
                "train_seconds": m.train_seconds,
                "label_error_rate": v.label_error_rate,
                "production": v.number == production,
                "created_at": v.created_at.isoformat(),
            }
        )
    scored = [c for c in found if c["metric"] is not None and c["p95_ms_batch1"] is not None]
    # an error metric (MAE) is better when lower: the front needs "higher is better"
    latency_front = pareto_front([(c["p95_ms_batch1"], task.better(spec.metric, c["metric"])) for c in scored])
    size_front = pareto_front([(c["size_mb"], task.better(spec.metric, c["metric"])) for c in scored])
    for i, c in enumerate(scored):
        c["pareto_latency"] = i in latency_front
        c["pareto_size"] = i in size_front
    return found


def label_issues(ws: Workspace, name: str, number: int) -> list[dict[str, Any]]:
    """The likeliest label errors the audit found in the training data of version `number` (at most 50; none
    when it has no audit)."""
    version = ws.registry.version(name, number)
    folder = ws.registry.artifacts.open(version.artifact_uri, version.checksum)
    if not (folder / LABEL_ISSUES_FILE).exists():
        return []
    return json.loads((folder / LABEL_ISSUES_FILE).read_text(encoding="utf-8"))[:50]  # type: ignore[no-any-return]


def model_report(ws: Workspace, name: str) -> dict[str, Any]:
    registry = ws.registry
    spec = ws.model(name)
    task = get_task(spec.task)
    production = registry.alias(name, PRODUCTION)
    decisions = [
        {"kind": e.kind, "version": e.version, "message": e.message, "at": e.at.isoformat() if e.at else None}
        for e in registry.events(name)
        if e.kind in DECISION_KINDS
    ]
    why = next(
        (
            d["message"]
            for d in reversed(decisions)
            if d["kind"] in ("promoted", "rolled_back") and d["version"] == production
        ),
        None,
    )
    return {
        "model": name,
        "task": spec.task,
        "metric": spec.metric,
        "columns": [title for _, title in task.report_columns],
        "production": production,
        "why": why,
        "candidates": candidates(ws, name, production),
        "decisions": decisions[-20:],
        "label_issues": label_issues(ws, name, production) if production is not None else [],
        "cost_per_core_hour": ws.fleet.workspace.cost_per_core_hour,
        "cascade": cascade_report(ws, name),
        "llm": measured_llm_tier(ws, name),
        "test_labels": teacher_judged(
            model_drops(
                ws, name, registry.version(name, production).dataset_version if production is not None else None
            )
        ),
    }
