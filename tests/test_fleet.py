"""The fleet file: validation errors name the file, key path and what is allowed; init and add keep comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal.cli import app
from shoal.fleet import FleetError, load_fleet
from shoal.fleet_edit import EXAMPLE

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
        ("models:\n  m:\n    task: text-classification\n    metric: auc\n", "models.m: metric 'auc' is not one of"),
        ("models:\n  m:\n    task: vision\n", "models.m.task: Input should be 'text-classification'"),
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
