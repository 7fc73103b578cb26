"""Selection reports: per model and for the fleet, as self-contained HTML pages or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from shoal.report.data import model_report, pareto_front
from shoal.report.html import fleet_page, model_page
from shoal.workspace import Workspace


def write_reports(ws: Workspace, models: list[str], out: Path) -> list[Path]:
    """Write `<model>.html`, `<model>.json`, `index.html` and `fleet.json` into `out`; return the pages."""
    out.mkdir(parents=True, exist_ok=True)
    reports = [model_report(ws, name) for name in models]
    pages = []
    for report in reports:
        page = out / f"{report['model']}.html"
        page.write_text(model_page(report), encoding="utf-8")
        (out / f"{report['model']}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        pages.append(page)
    (out / "index.html").write_text(fleet_page(reports), encoding="utf-8")
    (out / "fleet.json").write_text(json.dumps(reports, indent=2), encoding="utf-8")
    return [out / "index.html", *pages]


__all__ = ["model_report", "pareto_front", "write_reports"]
