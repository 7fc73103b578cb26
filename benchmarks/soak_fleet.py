"""The soak benchmark's fleet: N small TF-IDF text classifiers on real public data, trained once before the soak.

Model i reads dataset i mod 6 (Banking77, TweetEval emotion/hate/offensive/sentiment, SMS spam) shuffled with
seed i. Texts are deduplicated by their normalized form (so no text has two labels and no test text is in
training); the rows are cut in three: the initial training rows, the frozen test rows, and a held-out pool the
soak draws from (predict texts, feedback labels and the data drops sent during the run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.data.ingest import ingest_file
from shoal.tasks.text_classification import normalize
from shoal.train.trainer import train_model
from shoal.workspace import Workspace

FAMILIES = ["majority", "tfidf-logreg", "tfidf-svm"]
TRAIN_ROWS, TEST_ROWS, PER_CLASS = 600, 300, 6
# name: (folder in shared/data, training files, test file or None for a seeded cut, fleet metric)
DATASETS = {
    "banking": ("banking77", ["train.csv"], "test.csv", "accuracy"),
    "emotion": ("tweeteval_emotion", ["train.csv", "val.csv"], "test.csv", "macro_f1"),
    "hate": ("tweeteval_hate", ["train.csv", "val.csv"], "test.csv", "macro_f1"),
    "offensive": ("tweeteval_offensive", ["train.csv", "val.csv"], "test.csv", "macro_f1"),
    "sentiment": ("tweeteval_sentiment", ["val.csv"], "test.csv", "macro_recall"),
    "spam": ("sms_spam", ["sms_spam.csv"], None, "mcc"),
}


@dataclass(frozen=True)
class ModelData:
    name: str
    metric: str
    train: pd.DataFrame  # ingested as split=train before the soak
    test: pd.DataFrame  # ingested as split=test before the soak
    pool: pd.DataFrame  # held out: predict texts, feedback labels, data drops during the soak

    @property
    def labels(self) -> list[str]:
        return sorted(set(self.train["label"]))


def _read(folder: Path, files: list[str]) -> pd.DataFrame:
    frame = pd.concat([pd.read_csv(folder / f, keep_default_na=False, dtype=str) for f in files])
    frame = frame[frame["text"].str.strip() != ""][["text", "label"]]
    return frame.assign(key=frame["text"].map(normalize)).drop_duplicates("key", keep=False)


def model_data(data: Path, count: int) -> list[ModelData]:
    models = []
    names = list(DATASETS)
    for i in range(count):
        dataset = names[i % len(names)]
        folder, train_files, test_file, metric = DATASETS[dataset]
        rows = _read(data / folder, train_files).sample(frac=1.0, random_state=i)
        if test_file is None:
            test, rows = rows.iloc[:TEST_ROWS], rows.iloc[TEST_ROWS:]
        else:
            test = _read(data / folder, [test_file]).sample(frac=1.0, random_state=i).iloc[:TEST_ROWS]
            rows = rows[~rows["key"].isin(set(test["key"]))]
        name = dataset if i < len(names) else f"{dataset}-{i // len(names) + 1}"
        # every class gets up to PER_CLASS training rows first (a family's CV needs a few of each), then the rest
        rows = pd.concat([rows.groupby("label").head(PER_CLASS), rows]).drop_duplicates("key")
        parts = (rows.iloc[:TRAIN_ROWS], test, rows.iloc[TRAIN_ROWS:])
        models.append(ModelData(name, metric, *(p.drop(columns="key").reset_index(drop=True) for p in parts)))
    return models


def write_fleet(root: Path, models: list[ModelData], registry: str | None) -> None:
    """The fleet file: small and fast to train (2 CV folds, short evaluation, one training process), retrained
    on new data after 100 rows or 20 s after the last drop."""
    workspace: dict[str, object] = {
        "n_jobs": 1,  # the worker's training leaves the other core to the server and the clients
        "evaluation": {"latency_calls": 50, "bootstrap": 200, "measure_rss": False},
    }
    if registry:
        workspace["registry"] = registry
    spec = {
        "task": "text-classification",
        "families": FAMILIES,
        "cv_folds": 2,
        "retrain": {"min_new_rows": 100, "debounce_seconds": 20, "max_job_seconds": 900},
    }
    fleet = {"workspace": workspace, "models": {m.name: {**spec, "metric": m.metric} for m in models}}
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))


def train_fleet(ws: Workspace, models: list[ModelData]) -> None:
    """Ingest each model's training and test rows (as CSV files under data/) and train it (every family,
    evaluation, gate), with a progress bar."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn()) as progress:
        bar = progress.add_task("training", total=len(models))
        folder = ws.root / "data"
        folder.mkdir(exist_ok=True)
        for m in models:
            for split, rows in (("train", m.train), ("test", m.test)):
                rows.to_csv(folder / f"{m.name}-{split}.csv", index=False)
                ingest_file(ws, m.name, folder / f"{m.name}-{split}.csv", split=split)
            report = train_model(ws, m.name, lambda model, what: progress.update(bar, description=f"{model}: {what}"))
            if report.production is None:
                serve_best(ws, m.name, progress)
            progress.advance(bar)
        progress.update(bar, description="trained")


def serve_best(ws: Workspace, name: str, progress: Progress) -> None:
    """A model whose best family did not significantly beat the floor on its small test set (TweetEval hate, say)
    is put in production by hand anyway: the soak needs every model served, whatever its quality."""
    versions = [v for v in ws.registry.versions(name) if v.family != "majority"] or ws.registry.versions(name)
    if not versions:
        raise SystemExit(f"{name}: every family failed; see 'shoal history {name} -w {ws.root}'")
    best = max(versions, key=lambda v: v.metrics.value)
    ws.registry.set_alias(name, best.number, actor="benchmark", reason="soak: every model is served")
    progress.console.print(f"{name}: no version beat the floor significantly; v{best.number} ({best.family}) served")


@contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """None for the workspace's SQLite file; for a PostgreSQL URL, a new database on that server, dropped at the
    end (the URL's own database is only used to create and drop it)."""
    if not url:
        yield None
        return
    from shoal.registry.database import temporary_database

    with temporary_database(url, "shoal_soak") as created:
        yield created


def no_registry_override() -> None:
    """The soak's servers must use the fleet file's registry: refuse a SHOAL_REGISTRY_URL from the caller."""
    if os.environ.get("SHOAL_REGISTRY_URL") or os.environ.get("SHOAL_PREDICTION_LOG_URL"):
        raise SystemExit("unset SHOAL_REGISTRY_URL and SHOAL_PREDICTION_LOG_URL; use --database instead")
