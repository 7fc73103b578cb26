"""The fleet file: validation errors name the file, key path and what is allowed; init and add keep comments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from shoal.cli import app
from shoal.fleet import LARGE_TRAINING_ROWS, FleetError, load_fleet
from shoal.fleet_edit import EXAMPLE
from shoal.tasks import get_codec, get_task, model_specs, task_names
from shoal.tasks.codec import Codec

runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shoal.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_is_valid_and_has_defaults(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, EXAMPLE))
    spam = fleet.model("spam")
    assert spam.metric == "f1:spam" and spam.positive_label == "spam"
    assert spam.gate.alpha == 0.05 and spam.serve.max_batch_size == 64
    assert fleet.workspace.registry.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "models:\n  m:\n    task: text-classification\n    metric: auc\n",
            "models.m.metric: metric 'auc' is not one of",
        ),
        (
            "models:\n  m:\n    task: vision\n",
            "models.m.task: Input should be 'text-classification', 'regression', 'forecasting', 'embedding' or "
            "'token-classification'",
        ),
        ("models:\n  m:\n    metric: mae\n", "models.m.task: Field required"),
        (
            "models:\n  m:\n    task: regression\n    target_column: y\n    text_column: t\n",
            "models.m.text_column: unknown key",
        ),
        (
            "models:\n  m:\n    task: embedding\n    metric: mae\n",
            "models.m.metric: metric 'mae' is not one of spearman",
        ),
        (
            "models:\n  m:\n    task: forecasting\n    freq: MS\n    horizon: 0\n",
            "models.m.horizon: Input should be greater than or equal to 1",
        ),
        (
            "models:\n  m:\n    task: text-classification\n    families: [tfidf-logreg, bert-huge]\n",
            "models.m.families: unknown family 'bert-huge'; allowed: majority",
        ),
        ("models:\n  m:\n    task: text-classification\n    gate:\n      alpha: 2\n", "models.m.gate.alpha"),
        ("models:\n  m:\n    task: text-classification\n    colour: red\n", "models.m.colour: unknown key"),
        ("models:\n  Bad Name:\n    task: text-classification\n", "names are lowercase letters"),
        (
            "models:\n  m:\n    task: text-classification\n    retrain:\n      schedule: every tuesday\n",
            "models.m.retrain.schedule: must be a cron expression",
        ),
        ("models: [1, 2\n", "not valid YAML"),
        (
            "models:\n  m:\n    task: text-classification\n    labels: [a, b]\n    metric: f1:c\n",
            "names a label that is not in labels",
        ),
    ],
)
def test_errors_name_the_file_and_key_path(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(FleetError) as caught:
        load_fleet(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_missing_fleet_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="shoal init"):
        load_fleet(tmp_path / "shoal.yaml")


def test_init_then_add_keeps_comments_and_validates(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", "-w", str(tmp_path)]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "add",
            "intents",
            "--text-column",
            "utterance",
            "--label-column",
            "intent",
            "--metric",
            "macro_f1",
            "--families",
            "majority,tfidf-svm",
            "-w",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "shoal.yaml").read_text()
    assert "# any SQLAlchemy URL" in text and "# share of examples" in text
    fleet = load_fleet(tmp_path / "shoal.yaml")
    assert fleet.model("intents").text_column == "utterance"
    assert fleet.model("intents").families == ["majority", "tfidf-svm"]
    bad = runner.invoke(app, ["add", "other", "--metric", "auc", "-w", str(tmp_path)])
    assert bad.exit_code != 0
    assert "other" not in load_fleet(tmp_path / "shoal.yaml").models
    again = runner.invoke(app, ["add", "intents", "-w", str(tmp_path)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)


def test_every_command_has_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in (
        "init",
        "add",
        "check",
        "ingest",
        "train",
        "eval",
        "versions",
        "promote",
        "rollback",
        "history",
        "data",
    ):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_each_task_validates_with_its_own_spec_and_defaults(tmp_path: Path) -> None:
    fleet = load_fleet(
        write(
            tmp_path,
            "models:\n  t:\n    task: text-classification\n  r:\n    task: regression\n    target_column: y\n"
            "  f:\n    task: forecasting\n    freq: MS\n    horizon: 12\n  e:\n    task: embedding\n",
        )
    )
    specs = model_specs()
    assert {name: type(spec) for name, spec in fleet.models.items()} == {
        "t": specs["text-classification"],
        "r": specs["regression"],
        "f": specs["forecasting"],
        "e": specs["embedding"],
    }
    assert {name: (spec.metric, spec.families) for name, spec in fleet.models.items()} == {
        "t": ("accuracy", ["majority", "tfidf-logreg", "tfidf-svm"]),
        "r": ("mae", ["mean", "ridge", "extra-trees", "gbm-tuned"]),
        "f": ("mase", ["seasonal-naive", "auto-ets", "auto-arima", "gbm-lags"]),
        "e": ("spearman", ["static-embed", "minilm-embed"]),
    }
    forecast = fleet.model("f")
    assert isinstance(forecast, specs["forecasting"]) and forecast.season == 12


@pytest.mark.parametrize("task", task_names())
def test_a_task_home_holds_its_spec_kind_and_codec(task: str) -> None:
    spec = model_specs()[task]
    assert spec.model_fields["task"].annotation == Literal[task]  # the tag the fleet file's union dispatches on
    assert spec.metrics and all(spec.allows_metric(metric) for metric in spec.metrics)
    kind = get_task(task)
    assert kind.name == task and all(title for _, title in kind.report_columns)
    codec = get_codec(task)
    assert isinstance(codec, Codec) and issubclass(codec.request, BaseModel) and codec.endpoint in ("predict", "embed")


LIGHT = """
import sys
import shoal.fleet
heavy = sorted({"pandas", "sklearn", "torch", "fastapi", "starlette"} & set(sys.modules))
assert not heavy, heavy
"""


def test_the_fleet_file_loads_without_the_training_or_serving_stack() -> None:
    subprocess.run([sys.executable, "-c", LIGHT], check=True, timeout=120)


@pytest.mark.parametrize(
    "package", ["text_classification", "regression", "forecasting", "embedding", "token_classification"]
)
def test_a_task_imports_first_without_a_cycle_and_its_codec_knows_no_http(package: str) -> None:
    """A task's spec imported before anything else (it subclasses fleet's ModelSpec while fleet builds its
    union from the specs); its codec needs no HTTP library."""
    script = f"""
import sys
import shoal.tasks.{package}.spec
import shoal.tasks.{package}.kind
import shoal.tasks.{package}.codec
http = sorted({{"fastapi", "starlette"}} & set(sys.modules))
assert not http, http
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_add_sets_any_key_of_the_task_spec(tmp_path: Path) -> None:
    args = ["add", "sales", "--task", "forecasting", "--set", "freq=MS", "--set", "horizon=12"]
    more = ["--set", "season_length=7", "--set", "families=[seasonal-naive, gbm-lags]", "--set", "gate.alpha=0.1"]
    more += ["--set", "gate.min_improvement=0.02"]  # a second key of the same section
    assert runner.invoke(app, ["init", "-w", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, [*args, *more, "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    spec = load_fleet(tmp_path / "shoal.yaml").model("sales")
    assert (spec.freq, spec.horizon, spec.season, spec.families, spec.gate.alpha) == (  # type: ignore[attr-defined]
        "MS",
        12,
        7,
        ["seasonal-naive", "gbm-lags"],
        0.1,
    )
    assert spec.gate.min_improvement == 0.02 and spec.gate.non_inferiority_margin == 0.0
    unknown = runner.invoke(app, ["add", "other", "--set", "colour=red", "-w", str(tmp_path)])
    assert unknown.exit_code != 0 and "models.other.colour: unknown key" in str(unknown.exception)
    wrong_task = runner.invoke(app, ["add", "other", "--task", "regression", "--set", "horizon=3", "-w", str(tmp_path)])
    assert wrong_task.exit_code != 0 and "a regression model needs target_column" in str(wrong_task.exception)
    malformed = runner.invoke(app, ["add", "other", "--set", "horizon", "-w", str(tmp_path)])
    assert malformed.exit_code != 0 and "write KEY=VALUE" in str(malformed.exception)
    vision = runner.invoke(app, ["add", "other", "--task", "vision", "-w", str(tmp_path)])
    assert vision.exit_code == 2 and "forecasting" in vision.output  # a usage error listing the tasks
    assert "other" not in load_fleet(tmp_path / "shoal.yaml").models


def test_the_search_uses_two_folds_on_large_data_unless_the_fleet_file_sets_cv_folds(tmp_path: Path) -> None:
    base = "models:\n  m:\n    task: text-classification\n    metric: accuracy\n    families: [majority]\n"
    default = load_fleet(write(tmp_path, base)).model("m")
    assert default.cv_folds is None
    assert default.folds(LARGE_TRAINING_ROWS - 1) == 3 and default.folds(LARGE_TRAINING_ROWS) == 2
    chosen = load_fleet(write(tmp_path, base + "    cv_folds: 3\n")).model("m")
    assert chosen.folds(100 * LARGE_TRAINING_ROWS) == 3 and chosen.folds(10) == 3
    with pytest.raises(FleetError, match=r"models\.m\.cv_folds"):
        load_fleet(write(tmp_path, base + "    cv_folds: 1\n"))
