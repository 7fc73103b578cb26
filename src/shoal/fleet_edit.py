"""Write the fleet file: `shoal init`'s commented example and `shoal add`, which keeps comments."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from shoal.fleet import FleetError, parse_fleet, read_yaml

EXAMPLE = """\
# shoal fleet file: every model shoal trains, evaluates, promotes and serves.
# Reference: README.md ("The fleet file"). Validate with `shoal check`.

workspace:
  registry: sqlite:///.shoal/registry.db   # any SQLAlchemy URL, e.g. postgresql+psycopg://host/db
  artifacts: .shoal/artifacts              # folder for data drops and model artifacts
  n_jobs: 2                                # processes used for training
  cost_per_core_hour: 0.04                 # $ per CPU core-hour, for the cost model
  evaluation:
    latency_calls: 1000                    # timed calls for p50/p95 at batch 1 and 64, at most ...
    latency_seconds: 1.0                   # ... or fewer: timing stops after this long per batch size
    bootstrap: 1000                        # resamples for confidence intervals and paired tests

models:
  spam:
    task: text-classification              # or regression, forecasting, embedding, token-classification
    text_column: text
    label_column: label
    labels: [ham, spam]                    # optional: other labels are rejected at ingest
    relabel: supersede                     # a later drop relabels a stored text: supersede (latest wins) | reject
    metric: f1:spam                        # accuracy | macro_f1 | macro_recall | mcc | f1:<label>; left out:
                                           # chosen from the data at the first training and kept (macro_f1
                                           # when classes are imbalanced, else accuracy)
    # class_weight: balanced               # balanced | none; left out: chosen with the metric
    families: [majority, tfidf-logreg, tfidf-svm]
    split:
      test_fraction: 0.2                   # share of examples (by text hash) held out for testing
    gate:
      min_improvement: 0.0                 # smallest gain that counts
      alpha: 0.05                          # significance level of the paired test
      non_inferiority_margin: 0.0          # > 0 lets a 2x cheaper model win if no worse than this
      max_p95_latency_ms: 50               # budget at batch 1 (optional)
      max_size_mb: 200                     # artifact budget (optional)
    retrain:
      on_new_data: true                    # retrain when data arrives (inbox, API, feedback)
      min_new_rows: 100                    # ... once this many rows are new
      debounce_seconds: 30                 # ... or this long after the last drop
      schedule: null                       # cron ('0 3 * * *') or interval ('6h')
    serve:
      max_batch_size: 64
      max_queue: 2048
      deadline_ms: 2000
"""


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 110
    return yaml


def write_example(path: Path, *, force: bool = False) -> None:
    if path.exists() and not force:
        raise FleetError(f"{path} already exists; pass --force to overwrite it")
    path.write_text(EXAMPLE, encoding="utf-8")


def with_settings(fields: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """`fields` with each `KEY=VALUE` set (a dotted key reaches into a section: `gate.alpha=0.1`); the value is
    read as YAML (`12`, `true`, `[a, b]`, `null`). The task's spec validates the result."""
    out = dict(fields)
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key.strip():
            raise FleetError(f"--set {setting!r}: write KEY=VALUE, e.g. --set horizon=12 or --set gate.alpha=0.1")
        try:
            value = YAML(typ="safe").load(text)
        except YAMLError as error:
            raise FleetError(f"--set {setting!r}: the value is not valid YAML: {error}") from None
        *sections, last = key.strip().split(".")
        target = out
        for section in sections:
            inner = target.get(section)
            inner = dict(inner) if isinstance(inner, dict) else {}
            target[section] = inner
            target = inner
        target[last] = value
    return out


def add_model(path: Path, name: str, fields: dict[str, Any], *, replace: bool = False) -> None:
    """Add (or with `replace`, overwrite) one model, validating the result before writing it."""
    document = read_yaml(path)
    if document is None:
        document = CommentedMap()
    models = document.setdefault("models", CommentedMap())
    if models is None:
        models = document["models"] = CommentedMap()
    if name in models and not replace:
        raise FleetError(f"{path}: model {name!r} already exists; pass --replace to overwrite it")
    entry = CommentedMap()
    for key, value in fields.items():
        if value is not None:
            entry[key] = value
    models[name] = entry
    parse_fleet(document, path)
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    path.write_text(buffer.getvalue(), encoding="utf-8")
