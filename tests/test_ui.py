"""The dashboard at /ui of a real `shoal serve`, driven by Playwright in Debian's headless Chromium: the pages load
without console errors, the Pareto plots render, a promotion made with the CLI appears on an open page without a
reload, promote and roll back need the token, and user texts stay text. Also the JSON routes it relies on."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from serve_fixtures import Trained, copy_workspace, running
from shoal.cli import app as cli
from shoal.monitor import DRIFT_EVENT
from shoal.serve.metrics import LATENCY_BUCKETS, Metrics
from shoal.serve.redact import without_paths
from shoal.workspace import Workspace

TOKEN = "ui-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
WAIT_MS = 8000  # a promotion shows at the next poll (2 s) once the server's registry poll (0.2 s) has seen it
#: where to save the overview and model page screenshots for a closing note (unset: nowhere)
SHOTS_ENV = "SHOAL_UI_SCREENSHOTS"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def served(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Workspace]]:
    """A server with the token set, some traffic and a drift alert; (url, its workspace)."""
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    ws = copy_workspace(trained, tmp_path)
    ws.registry.record_event(
        "spam",
        DRIFT_EVENT,
        "drift in the newest 200 predictions: mmd fired",
        version=trained.production,
        payload={"tests": [{"test": "mmd", "statistic": 0.2, "p_value": 0.001, "fired": True}]},
    )
    with running(ws) as url:
        for _ in range(5):
            httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": ["win a free prize now", "see you at 5"]})
        yield url, ws


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, url: str) -> None:
        self.errors: list[str] = []
        self.tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda error: self.errors.append(str(error)))
        self.tab.on("dialog", lambda dialog: dialog.accept())
        self.tab.goto(url)

    def use_token(self, token: str) -> None:
        self.tab.fill("#token", token)
        self.tab.click("#token-form button[type=submit]")


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    shot = page.tab.screenshot(path=str(tmp_path / name), full_page=True)
    assert len(shot) > 10_000
    folder = os.environ.get(SHOTS_ENV)
    if folder:
        shutil.copy(tmp_path / name, Path(folder) / name)


def test_pages_load_and_plots_render(served: tuple[str, Workspace], trained: Trained, browser: Any, tmp_path) -> None:
    from playwright.sync_api import expect

    url, _ = served
    page = Page(browser, f"{url}/ui")
    row = page.tab.locator("#fleet tr[data-model=spam]")
    expect(row.locator(".production")).to_have_text(f"v{trained.production}")
    expect(row).to_contain_text("drift")  # its latest alert
    expect(row).to_contain_text("promoted")  # its last gate decision
    expect(row.locator("td").nth(6)).to_have_text("5")  # requests, from the server's own metrics
    expect(page.tab.locator("#status")).to_contain_text("updated")  # the poll ran
    shoot(page, "ui-overview.png", tmp_path)

    page.tab.click("#fleet a:text('spam')")
    expect(page.tab.locator("#model-name")).to_have_text("spam")
    for plot in ("#plot-latency", "#plot-size"):
        page.tab.locator(plot).wait_for(state="visible", timeout=WAIT_MS)
        box = page.tab.locator(plot).bounding_box(timeout=WAIT_MS)  # the 2 s poll may swap <main> in between: waits
        assert box is not None and box["width"] > 100 and box["height"] > 100
        points = page.tab.locator(f"{plot} circle.point")
        expect(points).to_have_count(2)  # both versions
        assert all((b := points.nth(i).bounding_box()) and b["width"] > 0 for i in range(2))
    decisions = page.tab.locator("#decisions")
    expect(decisions).to_contain_text("promoted")
    expect(decisions).to_contain_text(re.compile(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"))  # Δ [CI]
    expect(page.tab.locator("#alerts")).to_contain_text("mmd p=0.001")
    expect(page.tab.locator("#versions tbody tr")).to_have_count(2)
    shoot(page, "ui-model.png", tmp_path)

    page.tab.click("header a:text('Events')")
    expect(page.tab.locator("#events")).to_contain_text("drift in the newest 200 predictions")
    assert page.errors == []


def test_a_promotion_by_the_cli_appears_without_a_reload(
    served: tuple[str, Workspace], trained: Trained, browser: Any
) -> None:
    from playwright.sync_api import expect

    url, ws = served
    overview, model = Page(browser, f"{url}/ui"), Page(browser, f"{url}/ui/models/spam")
    for page in (overview, model):
        page.tab.evaluate("window.__loaded = true")  # gone if the page reloads
    production = overview.tab.locator("#fleet tr[data-model=spam] .production")
    expect(production).to_have_text(f"v{trained.production}")

    result = CliRunner().invoke(cli, ["promote", "spam", str(trained.other), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    expect(production).to_have_text(f"v{trained.other}", timeout=WAIT_MS)
    expect(model.tab.locator("b.production")).to_have_text(f"v{trained.other}", timeout=WAIT_MS)
    expect(model.tab.locator("#decisions tbody tr").first).to_contain_text("manual promotion", timeout=WAIT_MS)
    for page in (overview, model):
        assert page.tab.evaluate("window.__loaded") is True
        assert page.errors == []


def test_promote_and_roll_back_only_with_the_token(
    served: tuple[str, Workspace], trained: Trained, browser: Any
) -> None:
    from playwright.sync_api import expect

    url, ws = served
    page = Page(browser, f"{url}/ui/models/spam")
    expect(page.tab.locator("#status")).to_contain_text("updated")
    expect(page.tab.locator("button.act")).to_have_count(0)

    page.use_token("not-the-token")
    expect(page.tab.locator("#admin")).to_contain_text("refused")
    expect(page.tab.locator("button.act")).to_have_count(0)

    page.use_token(TOKEN)
    expect(page.tab.locator("#admin")).to_contain_text("accepted")
    promote = page.tab.locator(f"button[data-action=promote][data-version='{trained.other}']")
    expect(promote).to_have_count(1)
    expect(page.tab.locator("button[data-action=rollback]")).to_have_count(1)
    promote.click()
    expect(page.tab.locator("b.production")).to_have_text(f"v{trained.other}", timeout=WAIT_MS)
    assert ws.registry.alias("spam") == trained.other
    page.tab.locator("button[data-action=rollback]").click()
    expect(page.tab.locator("b.production")).to_have_text(f"v{trained.production}", timeout=WAIT_MS)
    assert ws.registry.alias("spam") == trained.production

    page.tab.click("#forget")
    expect(page.tab.locator("button.act")).to_have_count(0)
    assert page.errors == []


def test_user_texts_stay_text(served: tuple[str, Workspace], trained: Trained, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ws = served
    ws.registry.record_event("spam", "rejected", HOSTILE, version=trained.other)
    result = CliRunner().invoke(cli, ["promote", "spam", str(trained.other), "--reason", HOSTILE, "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    ws.registry.record_event("spam", DRIFT_EVENT, HOSTILE, version=trained.other, payload={"tests": []})
    # the history's messages lose their paths (and `/script>` looks like one); the alerts are as recorded
    shown = without_paths(HOSTILE, ws.root)
    for path, where, text in (
        ("/ui/events", "#events", shown),
        ("/ui/models/spam", "#decisions", shown),
        ("/ui/models/spam", "#alerts", HOSTILE),
        ("/ui", "#fleet", shown),
    ):
        page = Page(browser, url + path)
        expect(page.tab.locator(where)).to_contain_text(text, timeout=WAIT_MS)
        assert page.tab.evaluate("window.__pwned") is None
        assert page.tab.locator("main img, main script").count() == 0
        assert page.errors == []


def test_the_routes_the_dashboard_uses(served: tuple[str, Workspace], trained: Trained) -> None:
    url, ws = served
    good = {"Authorization": f"Bearer {TOKEN}"}
    promote = f"{url}/v1/models/spam/promote"
    assert httpx.post(promote, json={"version": trained.other}).status_code == 401
    assert httpx.post(f"{url}/v1/models/spam/rollback").status_code == 401
    cross = httpx.post(f"{url}/v1/models/spam/rollback", headers={**good, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403  # a page of another site posting a form: refused even with auth off
    without = httpx.get(f"{url}/ui/models/spam", params={"fragment": "1"}).text
    assert "enter the token to see them" in without  # label issues quote training texts
    missing = httpx.post(promote, json={"version": 99}, headers=good)
    assert missing.status_code == 409 and "has no version 99" in missing.json()["error"]["message"]
    assert httpx.post(f"{url}/v1/models/nope/rollback", headers=good).status_code == 404
    moved = httpx.post(promote, json={"version": trained.other, "reason": "by hand"}, headers=good)
    assert moved.json() == {"model": "spam", "version": trained.other, "previous": trained.production}
    back = httpx.post(f"{url}/v1/models/spam/rollback", headers=good)
    assert back.json() == {"model": "spam", "version": trained.production, "previous": trained.other}
    assert [c.actor for c in ws.registry.alias_history("spam")][-2:] == ["manual", "rollback"]
    none_left = httpx.post(f"{url}/v1/models/spam/rollback", headers=good)  # only the gate's promotion is left
    assert none_left.status_code == 409 and "no earlier production version" in none_left.json()["error"]["message"]

    detail = httpx.get(f"{url}/v1/models/spam").json()
    gated = [g for g in detail["gate_history"] if g["decision"] is not None]
    assert gated and gated[0]["decision"]["test"] == "paired-bootstrap" and len(gated[0]["decision"]["ci"]) == 2
    [model] = httpx.get(f"{url}/v1/models").json()["models"]
    low, high = model["metrics"]["ci"]
    assert low <= model["metrics"]["value"] <= high
    page = httpx.get(f"{url}/ui")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{url}/ui/static/app.js").status_code == 200
    assert re.search(r"<main id=\"main\">", page.text)


def test_a_pipeline_has_its_page(trained: Trained, tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    pipelines = {"screen": {"description": HOSTILE, "steps": [{"model": "spam", "stop": {"label": ["spam"]}}]}}
    with running(copy_workspace(trained, tmp_path, pipelines=pipelines)) as url:
        page = Page(browser, f"{url}/ui")
        page.tab.click("#pipelines a:text('screen')")
        expect(page.tab.locator("#pipeline-name")).to_have_text("screen")
        expect(page.tab.locator("main")).to_contain_text(HOSTILE)  # the fleet file's description, as text
        expect(page.tab.locator("#steps tbody tr")).to_have_count(1)
        expect(page.tab.locator("#steps")).to_contain_text('stop: {"label": ["spam"]}')
        models = page.tab.locator("#pipeline-models tbody tr")
        expect(models).to_have_text(re.compile(rf"spam\s*ready\s*v{trained.production}"))
        expect(page.tab.locator("#status")).to_contain_text("updated")
        assert page.tab.evaluate("window.__pwned") is None
        assert page.errors == []


def test_traffic_per_model_from_the_server_metrics() -> None:
    metrics = Metrics()
    seconds = np.random.default_rng(0).lognormal(np.log(0.004), 0.6, 2000)
    for i, value in enumerate(seconds):
        metrics.request("spam", str(1 + i % 2), 200 if i % 10 else 503, float(value))  # two versions, 10% failed
    metrics.request("_unknown", "", 404, 0.001)
    [(name, traffic)] = metrics.traffic().items()
    assert name == "spam" and traffic.requests == 2000 and traffic.failed == 200
    bounds = (0.0, *LATENCY_BUCKETS)
    for estimate, q in ((traffic.p50_s, 0.5), (traffic.p95_s, 0.95)):
        true = float(np.quantile(seconds, q))
        bucket = next(i for i, bound in enumerate(bounds) if bound >= true)
        assert estimate is not None and bounds[bucket - 1] <= estimate <= bounds[bucket], (q, estimate, true)
    assert Metrics().traffic() == {}
