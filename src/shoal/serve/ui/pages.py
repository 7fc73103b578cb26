"""The dashboard's pages as HTML: every value from the registry, the fleet file or a client is escaped here.

Each function renders the part of a page that the browser replaces when it polls (`<main>`); `page` wraps it
in the document. The Pareto plots are the selection report's (`shoal.report.html.scatter`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any

from shoal.report.html import fmt, scatter
from shoal.serve.metrics import Traffic
from shoal.serve.schemas import GateEvent, ModelDetail, ModelSummary

#: the fleet-wide event log's length
EVENT_LOG = 200


def e(value: object) -> str:
    """Any value as HTML text (quotes too, so it is safe in an attribute)."""
    return escape("" if value is None else str(value), quote=True)


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else ""


def version(number: int | None) -> str:
    return f"v{number}" if number is not None else "—"


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f}"


def with_ci(value: float | None, ci: list[float | None] | list[float] | None, sign: str = "") -> str:
    if value is None:
        return "—"
    low, high = (ci or [None, None]) + [None] * (2 - len(ci or []))
    band = f" [{low:{sign}.4f}, {high:{sign}.4f}]" if low is not None and high is not None else ""
    return f"{value:{sign}.4f}{band}"


def table(headers: Iterable[str], rows: list[str], empty: str, table_id: str) -> str:
    if not rows:
        return f'<p class="empty" id="{e(table_id)}">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table id="{e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def cells(*values: str) -> str:
    """A table row of cells already escaped."""
    return "<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>"


def model_link(base: str, name: str) -> str:
    return f'<a href="{e(base)}/models/{e(name)}">{e(name)}</a>'


def button(action: str, model: str, label: str, number: int | None = None) -> str:
    target = f' data-version="{number}"' if number is not None else ""
    return f'<button class="act" data-action="{e(action)}" data-model="{e(model)}"{target}>{e(label)}</button>'


def token_note(admin: bool | None) -> str:
    """What the entered token allows (None: no token was entered)."""
    if admin is None:
        return ""
    if admin:
        return '<p class="note" id="admin">Token accepted: promote and roll back are enabled.</p>'
    return '<p class="note refused" id="admin">The server refused this token: read-only.</p>'


def decision_text(event: GateEvent | None) -> str:
    if event is None:
        return "—"
    return f"{e(when(event.at))} {e(event.kind)} {e(version(event.version))}: {e(event.message)}"


def drift_text(alert: dict[str, Any] | None, monitored: bool) -> str:
    if alert is None:
        return "no alert" if monitored else "not monitored"
    return f'<span class="alert">drift</span> {e(when(alert["at"]))} {e(version(alert["version"]))}'


def overview(
    base: str,
    models: list[ModelSummary],
    traffic: dict[str, Traffic],
    extras: dict[str, tuple[GateEvent | None, dict[str, Any] | None, bool]],
    pipelines: list[str],
    admin: bool | None,
) -> str:
    """The fleet: each model's production version, key metric with its CI, traffic, latency, cost, drift and last
    decision."""
    rows = []
    for m in models:
        seen = traffic.get(m.name, Traffic(0, 0, None, None))
        key = m.metrics
        decision, alert, monitored = extras[m.name]
        serving = "" if m.serving_version == m.production_version else f" (serving {e(version(m.serving_version))})"
        rows.append(
            f'<tr data-model="{e(m.name)}">'
            f"<td>{model_link(base, m.name)}</td><td>{e(m.task)}</td><td>{e(m.status)}</td>"
            f'<td class="production">{e(version(m.production_version))}{serving}</td>'
            f"<td>{e(key.metric) if key else '—'}</td>"
            f"<td>{with_ci(key.value, key.ci) if key else '—'}</td>"
            f"<td>{seen.requests}</td><td>{seen.failed}</td><td>{ms(seen.p50_s)}</td><td>{ms(seen.p95_s)}</td>"
            f"<td>{fmt(key.cost_per_million if key else None)}</td>"
            f"<td>{drift_text(alert, monitored)}</td><td class='text'>{decision_text(decision)}</td></tr>"
        )
    headers = ["model", "task", "status", "production", "metric", "value [95% CI]", "requests", "failed"]
    headers += ["p50 ms", "p95 ms", "$ / 1M", "drift", "last decision"]
    listed = "".join(f'<li><a href="{e(base)}/pipelines/{e(p)}">{e(p)}</a></li>' for p in pipelines)
    return (
        f"{token_note(admin)}<h1>Fleet</h1>"
        + table(headers, rows, "No model is served.", "fleet")
        + "<p class='small'>Requests and latency: this server process since it started (p50 and p95 estimated "
        "from the histogram of GET /metrics). Value and cost: the serving version on its frozen test set.</p>"
        + (f"<h2>Pipelines</h2><ul id='pipelines'>{listed}</ul>" if pipelines else "")
    )


def model(
    base: str,
    detail: ModelDetail,
    traffic: Traffic,
    candidates: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    issues: list[dict[str, Any]] | None,
    admin: bool | None,
) -> str:
    """A model: its versions, the Pareto plots, every gate decision with its figures, its drift checks over time,
    alerts, label issues."""
    name, metric = detail.name, detail.metrics.metric if detail.metrics else ""
    by_number = {c["version"]: c for c in candidates}
    versions = []
    for v in reversed(detail.versions):
        c = by_number.get(v.number, {})
        marks = [m for m, on in (("production", v.production), ("serving", v.serving)) if on]
        marks += ["Pareto"] if c.get("pareto_latency") else []
        act = button("promote", name, f"promote v{v.number}", v.number) if admin and not v.production else ""
        live = f"{v.live_accuracy:.4f} ({v.feedback_count})" if v.live_accuracy is not None else "—"
        versions.append(
            f'<tr data-version="{v.number}"><td>{e(version(v.number))}</td><td>{e(v.family)}</td>'
            f"<td>{e(when(v.created_at))}</td><td>{with_ci(v.value, c.get('ci'))}</td>"
            f"<td>{fmt(c.get('p95_ms_batch1'), 2)}</td><td>{fmt(c.get('size_mb'), 2)}</td>"
            f"<td>{fmt(c.get('cost_per_million'))}</td><td>{live}</td><td>{e(', '.join(marks))}</td><td>{act}</td></tr>"
        )
    decisions = [
        cells(
            e(when(d.at)),
            e(d.kind),
            e(version(d.version)),
            with_ci(d.decision.delta, d.decision.ci, "+") if d.decision else "—",
            fmt(d.decision.p_value, 3) if d.decision else "—",
            e(d.decision.test) if d.decision else "",
            f"<span class='text'>{e(d.message)}</span>",
        )
        for d in reversed(detail.gate_history)
    ]
    alert_rows = [
        cells(
            e(when(a["at"])),
            e(version(a["version"])),
            e(", ".join(f"{t.get('test')} p={t.get('p_value')}" for t in a["tests"] if t.get("fired"))),
            f"<span class='text'>{e(a['message'])}</span>",
        )
        for a in reversed(alerts)
    ]
    issue_rows = [
        cells(
            e(i.get("row")),
            f"<span class='text'>{e(str(i.get('text', ''))[:160])}</span>",
            e(i.get("given")),
            e(i.get("suggested")),
            fmt(i.get("given_probability"), 2),
        )
        for i in issues or []
    ]
    rollback = button("rollback", name, "roll back") if admin else ""
    problem = f'<p class="problem">{e(detail.problem)}</p>' if detail.problem else ""
    headers = ["version", "family", "created", f"{metric} [95% CI]", "p95 ms", "MB", "$ / 1M", "live (n)", "", ""]
    return (
        f'{token_note(admin)}<h1 id="model-name">{e(name)}</h1>'
        f"<p>{e(detail.task)} · metric <b>{e(metric)}</b> · status {e(detail.status)} · production "
        f'<b class="production">{e(version(detail.production_version))}</b> · serving '
        f"{e(version(detail.serving_version))} {rollback}</p>{problem}"
        f"<p>Traffic (this process): {traffic.requests} requests, {traffic.failed} failed, p50 {ms(traffic.p50_s)} ms,"
        f" p95 {ms(traffic.p95_s)} ms.</p>"
        "<h2>Quality against cost</h2><p class='small'>Each version; dashed red: the Pareto front; yellow: production."
        "</p><div class='plots'>"
        + scatter(candidates, "p95_ms_batch1", "p95 latency, batch 1 (ms)", "pareto_latency", metric, "plot-latency")
        + scatter(candidates, "size_mb", "artifact size (MB)", "pareto_size", metric, "plot-size")
        + "</div><h2>Versions</h2>"
        + table(headers, versions, "No version yet.", "versions")
        + "<h2>Gate decisions</h2>"
        + table(["time", "event", "version", "Δ [95% CI]", "p", "test", "reason"], decisions, "None yet.", "decisions")
        + "<h2>Drift checks over time</h2><p class='small'>Each check of the worker (monitor: in shoal.yaml): the "
        "accuracy estimated from calibrated confidence (blue), the accuracy on feedback labels (green); for a "
        "forecaster, the mean scaled error of its forecasts on the values realised since (orange); a red mark: "
        "an alert.</p>"
        + over_time(checks)
        + "<h2>Alerts</h2>"
        + table(["time", "version", "fired", "message"], alert_rows, "No alert.", "alerts")
        + "<h2>Likely label errors in the production version's training data</h2>"
        + table(
            ["row", "text", "given", "suggested", "p(given)"],
            issue_rows,
            "None recorded." if issues is not None else "They quote training texts: enter the token to see them.",
            "label-issues",
        )
    )


#: the drift checks' statistics drawn over time (by the start of their test's name) and their colours
PLOTTED = (("estimated accuracy", "#1565c0"), ("live accuracy", "#2e7d32"), ("forecast error", "#ef6c00"))


def _statistic(check: dict[str, Any], prefix: str) -> float | None:
    found = [t.get("statistic") for t in check["tests"] if str(t.get("test", "")).startswith(prefix)]
    return float(found[0]) if found and isinstance(found[0], int | float) else None


def over_time(checks: list[dict[str, Any]]) -> str:
    """An SVG line plot of the estimated and live accuracy (or a forecaster's realised error) of each drift check,
    oldest left; alerts marked red."""
    width, height, pad = 640, 220, 44
    if not checks:
        return f'<svg id="plot-checks" width="{width}" height="60"><text x="10" y="30">No check yet.</text></svg>'
    series = {prefix: [_statistic(c, prefix) for c in checks] for prefix, _ in PLOTTED}
    values = [v for points in series.values() for v in points if v is not None] or [0.0, 1.0]
    low, high = min(values) - 0.02, max(values) + 0.02
    step = (width - 2 * pad) / max(1, len(checks) - 1)

    def y(value: float) -> float:
        return height - pad - (value - low) / (high - low) * (height - 2 * pad)

    parts = [
        f'<svg id="plot-checks" class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="drift checks over time">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#555"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#555"/>',
        f'<text x="{pad - 4}" y="{y(high) + 4:.1f}" font-size="10" text-anchor="end">{high:.3f}</text>',
        f'<text x="{pad - 4}" y="{y(low):.1f}" font-size="10" text-anchor="end">{low:.3f}</text>',
        f'<text x="{width / 2}" y="{height - 10}" text-anchor="middle" font-size="12">'
        f"{e(when(checks[0]['at']))} … {e(when(checks[-1]['at']))} ({len(checks)} checks)</text>",
    ]
    for (prefix, points), (_, colour) in zip(series.items(), PLOTTED, strict=True):
        path = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(points) if v is not None)
        if path:
            parts.append(
                f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{path}">'
                f"<title>{e(prefix)}</title></polyline>"
            )
    for i, check in enumerate(checks):
        if any(t.get("fired") for t in check["tests"]):
            parts.append(
                f'<circle class="alert" cx="{pad + i * step:.1f}" cy="{pad / 2:.1f}" r="5" fill="#c62828">'
                f"<title>{e(when(check['at']))}: {e(check['message'])}</title></circle>"
            )
    return "".join(parts) + "</svg>"


def pipeline(base: str, info: dict[str, Any], production: dict[str, int | None], admin: bool | None) -> str:
    """A pipeline: its steps as the fleet file has them, and each model's status and production version."""
    steps = [
        cells(
            e(i + 1),
            model_link(base, step.get("model", "")),
            e(", ".join(f"{k}: {json.dumps(v)}" for k, v in step.items() if k != "model")),
        )
        for i, step in enumerate(info["steps"])
    ]
    models = [
        cells(model_link(base, m), e(status), e(version(production.get(m)))) for m, status in info["models"].items()
    ]
    return (
        f'{token_note(admin)}<h1 id="pipeline-name">{e(info["name"])}</h1>'
        f"<p>{e(info['description'] or '')}</p><h2>Steps</h2>"
        + table(["#", "model", "settings"], steps, "No step.", "steps")
        + "<h2>Models</h2>"
        + table(["model", "status", "production"], models, "No model.", "pipeline-models")
    )


def events(base: str, found: list[dict[str, Any]], admin: bool | None) -> str:
    """The fleet's latest events, newest first."""
    rows = [
        cells(
            e(when(ev["at"])),
            model_link(base, ev["model"]) if ev["model"] else "",
            e(ev["kind"]),
            e(version(ev["version"])) if ev["version"] is not None else "",
            f"<span class='text'>{e(ev['message'])}</span>",
        )
        for ev in reversed(found)
    ]
    return (
        f"{token_note(admin)}<h1>Events</h1><p class='small'>The latest {EVENT_LOG} events of the fleet, newest "
        "first.</p>" + table(["time", "model", "event", "version", "what"], rows, "No event yet.", "events")
    )


def page(base: str, title: str, main: str) -> str:
    """The whole document around a page's `<main>`; its script polls the same address for a fresh `<main>`."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>shoal · {e(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{e(base)}/static/style.css"><script src="{e(base)}/static/app.js" defer></script>
</head><body data-api="{e(base.removesuffix("/ui"))}">
<header><a class="brand" href="{e(base)}">shoal</a><a href="{e(base)}">Fleet</a><a href="{e(base)}/events">Events</a>
<form id="token-form"><input id="token" type="password" placeholder="token (to promote, roll back)"
autocomplete="off"><button type="submit">Use token</button><button type="button" id="forget">Forget</button></form>
<span id="status" role="status"></span></header>
<main id="main">{main}</main></body></html>"""
