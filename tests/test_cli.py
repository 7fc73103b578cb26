"""The CLI end to end on real SMS spam data: ingest, train, eval (table and JSON), history, label issues,
promote and rollback; errors exit non-zero with a message that says what to do; start-up and the commands that do
not train load no training stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from conftest import spam_model, write_rows
from shoal.cli import app

runner = CliRunner()

#: what only training needs: never imported by `shoal --help` or by a command that does not train
TRAINING_STACK = (
    "cleanlab",
    "sklearn",
    "joblib",
    "skops",
    "torch",
    "transformers",
    "onnxruntime",
    "statsforecast",
    "ray",
    "shoal.train.trainer",
    "shoal.train.search",
)
#: what only the commands that open the registry need: not imported to print help
REGISTRY_STACK = ("sqlalchemy", "pandas")
#: runs `shoal ARGS...` like the console script, then writes the names of the modules it imported on stderr's last line
RUN_AND_LIST_MODULES = """
import json, sys
from shoal.cli import main
sys.argv = ["shoal", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as stop:
    code = stop.code
sys.stderr.write("\\n" + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=300)


def shoal_listing_modules(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`shoal ARGS...` in a fresh process, and the modules that process imported."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, *args], capture_output=True, text=True, timeout=300
    )
    return done, set(json.loads(done.stderr.strip().splitlines()[-1]))


def loaded(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    """Which of `packages` (or their submodules) are among `modules`."""
    return {p for p in packages if any(m == p or m.startswith(p + ".") for m in modules)}


def test_start_up_and_help_load_neither_the_training_nor_the_registry_stack() -> None:
    code = "import json, sys\nimport shoal.cli\nprint(json.dumps(sorted(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert loaded(set(json.loads(imported.stdout)), TRAINING_STACK + REGISTRY_STACK) == set()
    for args in (["--help"], ["versions", "--help"], ["train", "--help"], ["data", "issues", "--help"]):
        done, modules = shoal_listing_modules(*args)
        assert done.returncode == 0 and "Usage" in done.stdout, (args, done.stderr)
        assert loaded(modules, TRAINING_STACK + REGISTRY_STACK) == set(), args


def test_full_cycle_through_the_cli(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model(families=["majority", "tfidf-logreg", "tfidf-svm"])})
    w = str(ws.root)
    data = write_rows(tmp_path / "sms.csv", sms.head(2500))
    assert shoal("ingest", "spam", str(data), "-w", w).returncode == 0

    trained = shoal("train", "-w", w)
    assert trained.returncode == 0, trained.stderr
    assert "gate" in trained.stdout and "production: v" in trained.stdout
    again = shoal("train", "--json", "-w", w)  # stdout is the JSON alone (the training pool's output goes to stderr)
    assert again.returncode == 0, again.stderr
    [spam] = json.loads(again.stdout)
    assert spam["model"] == "spam" and spam["error"] is None and spam["production"] is not None
    assert {c["family"]: (c["reused"], c["node"]) for c in spam["candidates"]} == {
        "majority": (True, None),
        "tfidf-logreg": (True, None),
        "tfidf-svm": (True, None),
    }

    report = json.loads(runner.invoke(app, ["eval", "spam", "--json", "-w", w]).output)
    assert report["metric"] == "f1:spam" and report["f1:spam"] > 0.85
    assert {"accuracy", "macro_f1", "mcc", "macro_recall", "ece"} <= set(report)
    assert report["ci"][0] <= report["f1:spam"] <= report["ci"][1]
    assert report["profile"]["p95_ms_batch1"] > 0 and report["profile"]["throughput_per_s"] > 0
    assert report["profile"]["latency_calls"] == 20 and report["size_bytes"] > 0
    assert report["test_hash"] and report["per_class"]["spam"]["support"] > 0

    table = runner.invoke(app, ["eval", "spam", "-w", w])
    assert table.exit_code == 0 and "f1:spam (fleet metric)" in table.output

    issues = json.loads(runner.invoke(app, ["data", "issues", "spam", "--json", "-w", w]).output)
    assert 0 <= issues["label_error_rate"] < 0.2
    assert all({"text", "given", "suggested"} <= set(i) for i in issues["issues"])

    production = report["version"]
    versions = json.loads(runner.invoke(app, ["versions", "spam", "--json", "-w", w]).output)
    other = next(v["version"] for v in versions if v["version"] != production and v["family"] != "majority")
    assert runner.invoke(app, ["promote", "spam", str(other), "-w", w]).exit_code == 0
    assert json.loads(runner.invoke(app, ["eval", "spam", "--json", "-w", w]).output)["version"] == other
    assert runner.invoke(app, ["rollback", "spam", "-w", w]).exit_code == 0
    assert json.loads(runner.invoke(app, ["eval", "spam", "--json", "-w", w]).output)["version"] == production

    history = json.loads(runner.invoke(app, ["history", "spam", "--json", "-w", w]).output)
    kinds = [e["kind"] for e in history]
    assert kinds.count("promoted") == 2 and "rolled_back" in kinds and "ingested" in kinds
    manual = [e for e in history if e["kind"] == "promoted" and e["payload"]["actor"] == "manual"]
    assert manual and manual[0]["version"] == other

    for args in (
        ["check"],
        ["versions", "spam"],
        ["eval", "spam"],
        ["eval", "spam", "--json"],
        ["history", "spam"],
        ["data", "list", "spam"],
        ["promote", "spam", str(other)],
        ["rollback", "spam"],
        ["retrain", "spam"],
        ["jobs"],
    ):
        done, modules = shoal_listing_modules(*args, "-w", w)
        assert done.returncode == 0, (args, done.stderr)
        assert loaded(modules, TRAINING_STACK) == set(), args
    assert json.loads(runner.invoke(app, ["eval", "spam", "--json", "-w", w]).output)["version"] == production


def test_errors_exit_non_zero_and_say_what_to_do(make_workspace, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    nothing = shoal("train", "-w", str(ws.root))
    assert nothing.returncode == 1 and "no data" in nothing.stdout + nothing.stderr
    as_json = shoal("train", "--json", "-w", str(ws.root))
    assert as_json.returncode == 1 and "no data" in json.loads(as_json.stdout)[0]["error"]
    unknown = shoal("train", "-w", str(ws.root), "--executor", "spark")
    assert unknown.returncode == 1 and "executor 'spark' is not one of local, ray" in unknown.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("message,label\nhi,ham\n")
    rejected = shoal("ingest", "spam", str(bad), "-w", str(ws.root))
    assert rejected.returncode == 1 and "missing column(s) text" in rejected.stderr
    missing = shoal("eval", "spam", "-w", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "shoal init" in missing.stderr


def test_a_workspace_folder_without_a_fleet_file_says_to_run_init(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data = write_rows(tmp_path / "rows.csv", pd.DataFrame({"text": ["hi"], "label": ["ham"]}))
    for folder in (tmp_path / "not" / "there", empty):
        for args in (
            ["add", "spam", "--text-column", "text", "--label-column", "label"],
            ["check"],
            ["ingest", "spam", str(data)],
            ["train"],
            ["versions", "spam"],
            ["worker", "--once"],
            ["serve"],
        ):
            done = shoal(*args, "-w", str(folder))
            expected = f"error: no fleet file in {folder}; create one with 'shoal init -w {folder}'\n"
            assert (done.returncode, done.stderr) == (1, expected), (args, done.stderr)
    assert not (tmp_path / "not").exists() and list(empty.iterdir()) == []
