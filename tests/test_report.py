"""The selection report: JSON with the Pareto front and the gate's reasons, and HTML pages that headless
Chromium renders with their plots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import spam_model, write_rows
from shoal.cli import app
from shoal.data.ingest import ingest_file
from shoal.report import pareto_front, write_reports
from shoal.train.trainer import train_models

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
POINT_COLOURS = {(0x15, 0x65, 0xC0), (0xF9, 0xA8, 0x25), (0xC6, 0x28, 0x28)}


def test_pareto_front_keeps_only_undominated_points() -> None:
    # (cost, quality): the second is dominated by the first (cheaper and better)
    assert pareto_front([(1.0, 0.9), (2.0, 0.8), (3.0, 0.95), (0.5, 0.1)]) == [0, 2, 3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sms):
    from shoal.workspace import Workspace

    root = tmp_path_factory.mktemp("report")
    (root / "shoal.yaml").write_text(
        "workspace:\n  evaluation: {latency_calls: 20, bootstrap: 200, measure_rss: false}\n"
        f"models:\n  spam: {json.dumps(spam_model(families=['majority', 'tfidf-logreg', 'tfidf-svm']))}\n"
    )
    ws = Workspace(root)
    ingest_file(ws, "spam", write_rows(root / "sms.csv", sms.head(1500)))
    train_models(ws)
    yield ws
    ws.close()


def test_json_report_names_the_choice_and_why(trained) -> None:
    result = CliRunner().invoke(app, ["report", "spam", "--json", "-w", str(trained.root)])
    [report] = json.loads(result.output)
    assert report["production"] == trained.registry.alias("spam")
    assert report["why"].startswith("promoted: significantly better")
    assert {c["family"] for c in report["candidates"]} == {"majority", "tfidf-logreg", "tfidf-svm"}
    assert any(c["pareto_latency"] for c in report["candidates"])
    majority = next(c for c in report["candidates"] if c["family"] == "majority")
    assert majority["pareto_latency"]  # the cheapest is always on the front
    assert all(c["ci"][0] <= c["metric"] <= c["ci"][1] for c in report["candidates"])


def test_html_report_renders_its_plots_in_headless_chromium(trained, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pages = write_reports(trained, ["spam"], tmp_path / "out")
    page = tmp_path / "out" / "spam.html"
    assert page in pages and (tmp_path / "out" / "index.html").exists()
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    painted = sum(count for count, colour in colours if colour in POINT_COLOURS)
    assert painted > 3 * 60, "the candidate points of the plots were not drawn"
    dom = page.read_text()
    assert dom.count('class="point"') == 6 and 'id="plot-latency"' in dom and 'id="plot-size"' in dom
