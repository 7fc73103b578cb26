"""Render a selection report as one self-contained HTML page: inline SVG plots, no scripts, no downloads."""

from __future__ import annotations

import math
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 460, 300, 48
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:1100px}
h1{margin-bottom:.2rem} .why{background:#eef6ee;border-left:4px solid #2e7d32;padding:.6rem 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem} th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;
text-align:right} th:first-child,td:first-child{text-align:left} tr.prod{background:#fff7d6}
.plots{display:flex;gap:1.5rem;flex-wrap:wrap} svg{background:#fafafa;border:1px solid #ddd}
.front{stroke:#c62828;stroke-width:1.5;fill:none;stroke-dasharray:4 3} td.text{text-align:left;max-width:420px}
"""


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def scatter(
    candidates: list[dict[str, Any]], x_key: str, x_label: str, front_key: str, metric: str, plot_id: str
) -> str:
    """An SVG scatter of metric (y) against a cost (x, log scale), the Pareto front dashed in red."""
    points = [c for c in candidates if c.get(x_key) and c.get("metric") is not None]
    if not points:
        return f'<svg id="{plot_id}" width="{WIDTH}" height="{HEIGHT}"><text x="20" y="30">no data</text></svg>'
    xs = [math.log10(max(c[x_key], 1e-6)) for c in points]
    ys = [c["metric"] for c in points]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.45  # room for the labels right of the points
    y0, y1 = min(ys) - 0.02, max(ys) + 0.02

    def px(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD)

    def py(y: float) -> float:
        return HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg id="{plot_id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(metric)} vs {escape(x_label)}">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#555"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#555"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle" font-size="12">{escape(x_label)} '
        f"(log scale)</text>",
        f'<text x="14" y="{HEIGHT / 2}" font-size="12" transform="rotate(-90 14 {HEIGHT / 2})" '
        f'text-anchor="middle">{escape(metric)}</text>',
        f'<text x="{PAD - 4}" y="{py(y1) + 4:.1f}" font-size="10" text-anchor="end">{y1:.3f}</text>',
        f'<text x="{PAD - 4}" y="{py(y0):.1f}" font-size="10" text-anchor="end">{y0:.3f}</text>',
    ]
    front = sorted((xs[i], ys[i]) for i, c in enumerate(points) if c.get(front_key))
    if len(front) > 1:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in front)
        parts.append(f'<polyline class="front" points="{path}"/>')
    for x, y, c in zip(xs, ys, points, strict=True):
        colour = "#f9a825" if c["production"] else ("#c62828" if c.get(front_key) else "#1565c0")
        parts.append(
            f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="6" fill="{colour}">'
            f"<title>v{c['version']} {escape(c['family'])}: {c['metric']:.4f}</title></circle>"
        )
        parts.append(
            f'<text x="{px(x) + 8:.1f}" y="{py(y) - 8:.1f}" font-size="11">v{c["version"]} {escape(c["family"])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def cascade_section(cascade: dict[str, Any] | None) -> str:
    """The cascade of the production versions: accuracy per fraction deferred and $ per million, each tier's too."""
    if cascade is None:
        return ""
    title = f"<h2>Cascade: {escape(cascade['model'])} → {escape(cascade['fallback'])}</h2>"
    if "problem" in cascade:
        return f"{title}<p>{escape(cascade['problem'])}</p>"
    rows = "".join(
        f"<tr><td>{p['deferred']:.0%}</td><td>{fmt(p['accuracy'])}</td><td>{fmt(p['cost_per_million'])}</td></tr>"
        for p in cascade["curve"]
    )
    chosen, costs = cascade["chosen"], cascade["cost_per_million"]
    return f"""{title}
<p>On the small model's test set ({cascade["n_test"]} rows), v{cascade["small_version"]} answers and its least confident
inputs go to {escape(cascade["fallback"])} v{cascade["fallback_version"]}.</p>
<table id="cascade"><tr><th>deferred</th><th>accuracy</th><th>$ / 1M</th></tr>{rows}
<tr class="prod"><td>{chosen["deferred"]:.1%} (chosen threshold)</td><td>{fmt(chosen["accuracy"])}</td>
<td>{fmt(chosen["cost_per_million"])}</td></tr>
<tr><td>small alone</td><td>{fmt(cascade["small_accuracy"])}</td><td>{fmt(costs["small"])}</td></tr>
<tr><td>fallback alone</td><td>{fmt(cascade["fallback_accuracy"])}</td><td>{fmt(costs["fallback"])}</td></tr>
</table>"""


def llm_section(llm: dict[str, Any] | None) -> str:
    """The model's LLM tier: its $ per million calls from measured tokens and declared prices, beside the small
    tier's and the model's as a whole."""
    if llm is None:
        return ""
    role = (
        "answers every input (cold start: no small version promoted yet)"
        if llm["role"] == "answerer"
        else "answers the inputs the small version is unsure of (its cascade fallback)"
    )
    measured = (
        f"{fmt(llm['tokens_in_per_call'], 1)} / {fmt(llm['tokens_out_per_call'], 1)} tokens per call in / out, "
        f"measured on {llm['calls']} answers"
        if llm["calls"]
        else "no answer measured yet"
    )
    rows = f"<tr><td>LLM, per call</td><td>{fmt(llm['cost_per_million'], 4)}</td></tr>"
    if llm["role"] == "fallback":
        share = llm["deferred"]
        how = "measured on the test set" if llm["deferred_measured"] else "declared max_deferral"
        rows += f"<tr><td>small tier</td><td>{fmt(llm['small_cost_per_million'], 4)}</td></tr>"
        rows += f"<tr><td>deferred to the LLM</td><td>{fmt(share)} ({how})</td></tr>"
    rows += f'<tr class="prod"><td>the model</td><td>{fmt(llm["cost_per_million_predictions"], 4)}</td></tr>'
    return f"""<h2>LLM tier: {escape(llm["endpoint"])} ({escape(llm["model"])})</h2>
<p>It {role}. Declared ${llm["price_in"]:g} / ${llm["price_out"]:g} per million tokens in / out; {measured}.</p>
<table id="llm-tier"><tr><th>tier</th><th>$ / 1M</th></tr>{rows}</table>"""


def model_page(report: dict[str, Any]) -> str:
    metric = report["metric"]
    rows = []
    for c in report["candidates"]:
        ci = c["ci"] or [None, None]
        rows.append(
            f'<tr class="{"prod" if c["production"] else ""}"><td>v{c["version"]} {escape(c["family"])}</td>'
            f"<td>{fmt(c['metric'])}</td><td>{fmt(ci[0])}..{fmt(ci[1])}</td>"
            + "".join(f"<td>{fmt(value)}</td>" for value in c["columns"])
            + f"<td>{fmt(c['p50_ms_batch1'], 2)}</td>"
            f"<td>{fmt(c['p95_ms_batch1'], 2)}</td><td>{fmt(c['throughput_per_s'], 0)}</td>"
            f"<td>{fmt(c['size_mb'], 2)}</td><td>{fmt(c['cost_per_million'], 4)}</td>"
            f"<td>{fmt(c['train_seconds'], 1)}</td><td>{'yes' if c.get('pareto_latency') else ''}</td></tr>"
        )
    decisions = "".join(
        f"<tr><td>{escape(d['at'] or '')}</td><td>{escape(d['kind'])}</td>"
        f"<td>{'v' + str(d['version']) if d['version'] else ''}</td>"
        f"<td class='text'>{escape(d['message'])}</td></tr>"
        for d in report["decisions"]
    )
    issues = "".join(
        f"<tr><td>{i['row']}</td><td class='text'>{escape(i['text'][:160])}</td>"
        f"<td>{escape(i['given'])}</td><td>{escape(i['suggested'])}</td>"
        f"<td>{i['given_probability']:.2f}</td></tr>"
        for i in report["label_issues"]
    )
    production = f"v{report['production']}" if report["production"] else "none"
    teacher_note = (
        f'\n<p id="test-labels"><b>{escape(report["test_labels"])}</b></p>' if report.get("test_labels") else ""
    )
    columns = "".join(f"<th>{escape(title)}</th>" for title in report["columns"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>shoal report: {escape(report["model"])}</title><style>{STYLE}</style></head><body>
<h1>{escape(report["model"])}</h1>
<p>{escape(report["task"])} · fleet metric <b>{escape(metric)}</b> · production <b>{production}</b></p>
<p class="why">{escape(report["why"] or "no version is in production yet")}</p>{teacher_note}
<h2>Quality against cost</h2>
<p>Every candidate; the dashed red line is the Pareto front (no other candidate is both cheaper and better);
the production version is yellow.</p>
<div class="plots">
{scatter(report["candidates"], "p95_ms_batch1", "p95 latency, batch 1 (ms)", "pareto_latency", metric, "plot-latency")}
{scatter(report["candidates"], "size_mb", "artifact size (MB)", "pareto_size", metric, "plot-size")}
</div>
<h2>Every candidate</h2>
<table><tr><th>version</th><th>{escape(metric)} (fleet)</th><th>95% CI</th>{columns}<th>p50 ms</th>
<th>p95 ms</th><th>inputs/s (b=64)</th><th>MB</th><th>$ / 1M</th><th>train s</th>
<th>Pareto</th></tr>{"".join(rows)}</table>
<p>$ per million predictions at {report["cost_per_core_hour"]} $ per core-hour, from measured CPU time at batch 64.</p>
{cascade_section(report.get("cascade"))}
{llm_section(report.get("llm"))}
<h2>Decisions</h2><table><tr><th>time</th><th>event</th><th>version</th><th>why</th></tr>{decisions}</table>
<h2>Likely label errors in the training data</h2>
<table><tr><th>row</th><th>text</th><th>given</th><th>suggested</th><th>p(given)</th></tr>{issues}</table>
</body></html>"""


def fleet_page(reports: list[dict[str, Any]]) -> str:
    rows = []
    for r in reports:
        prod = next((c for c in r["candidates"] if c["production"]), None)
        rows.append(
            f'<tr><td><a href="{escape(r["model"])}.html">{escape(r["model"])}</a></td><td>{escape(r["task"])}</td>'
            f"<td>{escape(r['metric'])}</td><td>{'v' + str(r['production']) if r['production'] else '—'}</td>"
            f"<td>{escape(prod['family']) if prod else '—'}</td><td>{fmt(prod['metric'] if prod else None)}</td>"
            f"<td>{fmt(prod['p95_ms_batch1'] if prod else None, 2)}</td>"
            f"<td>{fmt(prod['size_mb'] if prod else None, 2)}</td>"
            f"<td>{fmt(prod['cost_per_million'] if prod else None, 4)}</td><td>{len(r['candidates'])}</td></tr>"
        )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>shoal fleet report</title>
<style>{STYLE}</style></head><body><h1>Fleet</h1>
<table><tr><th>model</th><th>task</th><th>metric</th><th>production</th><th>family</th><th>score</th>
<th>p95 ms</th><th>MB</th><th>$ / 1M</th><th>candidates</th></tr>{"".join(rows)}</table></body></html>"""
