"""`distill`: a teacher labels unlabeled texts, and the labels become a training drop for the model's students.

The teacher is a registered version of the model (`"3"` or `"v3"`) or a family name, searched and fitted on the
model's current training data (an already-registered version of that family on the same dataset is reused). Texts
already in the model's data (train or test, after normalization) are left out, so the frozen test set never leaks
into training; labels below `min_confidence` are left out too. The next `shoal train` fits every candidate family
on the enlarged training data and the gate decides, on the unchanged test set, as for any other drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoal.data.ingest import IngestResult, ingest_frame
from shoal.data.readers import LINE, read_table
from shoal.defaults import resolved
from shoal.families import Predictor, family_names, get_family
from shoal.tasks import get_task
from shoal.tasks.text_classification import normalize
from shoal.train.errors import TrainError
from shoal.train.search import search
from shoal.workspace import Workspace

_VERSION = re.compile(r"^v?(?P<number>\d+)$")


@dataclass
class DistillResult:
    teacher: str
    read: int
    known: int  # already in the model's data
    repeated: int  # repeats of an earlier text of the same file
    unsure: int  # below min_confidence
    ingest: IngestResult | None


def _training_data(ws: Workspace, model: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    registry = ws.registry
    drops = registry.drops(model) if model in registry.model_names() else []
    if not drops:
        raise TrainError(f"model {model!r} has no data; a teacher needs labelled data first")
    train, test, _ = get_task(ws.model(model).task).assemble(registry.load_drops(drops))
    return train, test, registry.dataset_version(model, drops)


def teacher_predictor(ws: Workspace, model: str, teacher: str, train: pd.DataFrame, dataset: str) -> Predictor:
    """A registered version (`3`, `v3`) or a family fitted on the model's training data."""
    match = _VERSION.match(teacher)
    if match:
        return ws.load_predictor(ws.registry.version(model, int(match["number"])))
    if teacher not in family_names():
        raise TrainError(f"teacher {teacher!r} is neither a version of {model!r} nor a family")
    existing = [v for v in ws.registry.versions(model) if v.family == teacher and v.dataset_version == dataset]
    if existing:
        return ws.load_predictor(existing[-1])
    spec, settings = resolved(ws, model).spec, ws.fleet.workspace
    family = get_family(teacher)
    texts, labels = train["text"].tolist(), train["label"].tolist()
    found = search(
        family,
        texts,
        labels,
        sorted(set(labels)),
        spec.metric,
        folds=spec.folds(len(texts)),
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        class_weight=getattr(spec, "class_weight", "none"),
        max_rows=spec.max_search_rows,
    )
    return family.fit(texts, labels, found.params, settings.seed)


def distill(
    ws: Workspace, model: str, teacher: str, unlabeled: Path, *, text_column: str = "text", min_confidence: float = 0.0
) -> DistillResult:
    """Label `unlabeled` with the teacher and store the confident, new texts as a training drop."""
    train, test, dataset = _training_data(ws, model)
    frame = read_table(unlabeled, source=unlabeled.name)
    if text_column not in frame.columns:
        raise TrainError(f"{unlabeled.name} has no column {text_column!r} (columns: {', '.join(frame.columns)})")
    frame = frame.assign(text=frame[text_column].fillna("").astype(str))
    frame = frame[frame["text"].str.strip() != ""]
    keys = frame["text"].map(normalize)
    known = keys.isin(set(train["text"].map(normalize)) | set(test["text"].map(normalize)))
    repeated = keys.duplicated() & ~known
    fresh = frame[~known & ~repeated]
    predictor = teacher_predictor(ws, model, teacher, train, dataset)
    proba = predictor.predict_proba(fresh["text"].tolist()) if len(fresh) else np.zeros((0, len(predictor.labels)))
    sure = proba.max(axis=1) >= min_confidence
    spec = ws.model(model)
    drop = pd.DataFrame(
        {
            LINE: fresh[LINE].to_numpy()[sure],
            spec.text_column: fresh["text"].to_numpy()[sure],
            spec.label_column: [predictor.labels[i] for i in proba.argmax(axis=1)[sure]],
        }
    )
    source = f"distill:{teacher}:{unlabeled.name}"
    result = ingest_frame(ws, model, drop, source=source, split="train") if len(drop) else None
    return DistillResult(teacher, len(frame), int(known.sum()), int(repeated.sum()), int((~sure).sum()), result)
