"""`shoal label`: a teacher labels unlabeled texts, and its labels become a training drop with their provenance.

The teacher is one of:

- `llm` (the fleet file's one `llm:` endpoint) or `llm:NAME`: the endpoint labels each text with one of the model's
  labels (its declared `labels`, else those of its data) through `shoal.llm.teach`: the registry's response cache
  (a re-run asks nothing twice), the daily spend cap (once reached, the texts not labelled are left out and
  counted), retries and the concurrency limit. An answer outside the label set is counted `invalid`, never a label;
- a registered version of the model (`3`, `v3`), or a family searched and fitted on the model's current training
  data (an already-registered version of that family on the same dataset is reused) — `shoal distill`.

Texts already in the model's data (train or test, after normalization) and repeats are left out, so the frozen
test set never leaks into training; with a model's version as teacher, labels below `min_confidence` are left out.
The drop's provenance (`Drop.provenance`: the teacher, its prompt hash, each row's confidence — the teacher's
probability, None for an LLM's label, which has none) is written with it. A teacher's rows are training rows when
the model has human-labelled test rows; a model with none gets a hash split of them, judged against the teacher
until a human-labelled drop brings test rows (`shoal.data.assembled`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoal.data.assembled import assembled, human_test_rows
from shoal.data.ingest import IngestResult, ingest_frame
from shoal.data.readers import LINE, read_table
from shoal.defaults import resolved
from shoal.families import Predictor, family_names, get_family
from shoal.fleet import FleetError
from shoal.llm.spec import LLMEndpoint
from shoal.tasks import get_task
from shoal.tasks.text_classification import normalize
from shoal.train.errors import TrainError
from shoal.train.search import search
from shoal.workspace import Workspace

_VERSION = re.compile(r"^v?(?P<number>\d+)$")

Progress = Callable[[int, int], None]  # (texts labelled so far, texts to label)


@dataclass
class LabelResult:
    teacher: str
    read: int
    known: int  # already in the model's data
    repeated: int  # repeats of an earlier text of the same file
    unsure: int  # below min_confidence
    ingest: IngestResult | None
    outcomes: Counter[str] = field(default_factory=Counter)  # an LLM teacher's: ok, cached, invalid, error, capped
    dollars: float = 0.0
    problem: str | None = None  # the LLM endpoint's first error (not an invalid answer, not the cap)
    judged_by_teacher: bool = False  # the model has no human-labelled test rows: some of these rows are its test


@dataclass(frozen=True)
class TeacherLabels:
    """A teacher's answer for each text: its label (None: none) and confidence (None: unknown)."""

    name: str
    labels: list[str | None]
    confidence: list[float | None]
    record: dict[str, Any]  # the provenance's teacher-specific part
    outcomes: Counter[str] = field(default_factory=Counter)
    dollars: float = 0.0
    problem: str | None = None


def llm_endpoint(ws: Workspace, teacher: str) -> tuple[str, LLMEndpoint]:
    """The fleet's endpoint `llm` (the only one) or `llm:NAME` names (a teacher's or a generator's)."""
    endpoints = ws.fleet.llm
    name = teacher.partition(":")[2]
    if not name:
        if len(endpoints) != 1:
            listed = ", ".join(sorted(endpoints)) or "none"
            raise FleetError(
                f"'llm' needs exactly one endpoint in the fleet file's llm: section ({listed}); name one as llm:NAME"
            )
        name = next(iter(endpoints))
    if name not in endpoints:
        listed = ", ".join(sorted(endpoints)) or "none"
        raise FleetError(f"no LLM endpoint {name!r} in the fleet file's llm: section (endpoints: {listed})")
    return name, endpoints[name]


def label_set(ws: Workspace, model: str, train: pd.DataFrame) -> list[str]:
    """The labels an LLM may answer for `model`: its declared `labels`, else those of its training data."""
    declared = getattr(ws.model(model), "labels", None)
    labels = list(declared) if declared else sorted(set(train["label"])) if len(train) else []
    if len(labels) < 2:
        raise FleetError(
            f"model {model!r} needs at least two labels for an LLM teacher: declare them (labels: [...]) in the "
            "fleet file, or ingest some labelled data first"
        )
    return labels


def model_rows(ws: Workspace, model: str) -> tuple[pd.DataFrame, pd.DataFrame, str | None, bool]:
    """The model's assembled (train, test) rows, dataset version and whether it has human-labelled test rows
    (empty frames and None before its first drop)."""
    registry = ws.registry
    found = assembled(ws, model)
    if found is None:
        empty = pd.DataFrame({"text": [], "label": []})
        return empty, empty, None, False
    return found.train, found.test, found.dataset_version, human_test_rows(registry.drops(model))


def teacher_predictor(ws: Workspace, model: str, teacher: str, train: pd.DataFrame, dataset: str) -> Predictor:
    """A registered version (`3`, `v3`) or a family fitted on the model's training data."""
    match = _VERSION.match(teacher)
    if match:
        return ws.load_predictor(ws.registry.version(model, int(match["number"])))
    if teacher not in family_names():
        raise TrainError(f"teacher {teacher!r} is neither llm, llm:NAME, a version of {model!r} nor a family")
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


def _llm_labels(
    ws: Workspace, model: str, teacher: str, texts: list[str], train: pd.DataFrame, progress: Progress | None
) -> TeacherLabels:
    from shoal.llm.teach import llm_labels

    name, endpoint = llm_endpoint(ws, teacher)
    labels = label_set(ws, model, train)
    taught = llm_labels(
        ws.registry,
        name,
        endpoint,
        texts,
        labels,
        progress=None if progress is None else lambda done: progress(done, len(texts)),
    )
    record = {"teacher": f"llm:{name}", "endpoint_model": endpoint.model, "prompt_hash": taught.prompt_hash}
    return TeacherLabels(
        f"llm:{name}", taught.labels, [None] * len(texts), record, taught.outcomes, taught.dollars, taught.problem
    )


def _model_labels(
    ws: Workspace,
    model: str,
    teacher: str,
    texts: list[str],
    train: pd.DataFrame,
    dataset: str | None,
    progress: Progress | None,
) -> TeacherLabels:
    if dataset is None or train.empty:
        raise TrainError(f"model {model!r} has no training data; a teacher other than an LLM needs labelled data first")
    predictor = teacher_predictor(ws, model, teacher, train, dataset)
    proba = predictor.predict_proba(texts) if texts else np.zeros((0, len(predictor.labels)))
    if progress is not None:
        progress(len(texts), len(texts))
    labels: list[str | None] = [predictor.labels[i] for i in proba.argmax(axis=1)]
    record = {"teacher": teacher, "prompt_hash": None}
    return TeacherLabels(teacher, labels, [float(p) for p in proba.max(axis=1)], record)


def is_llm(teacher: str) -> bool:
    return teacher == "llm" or teacher.startswith("llm:")


def teacher_labels(
    ws: Workspace,
    model: str,
    teacher: str,
    texts: list[str],
    train: pd.DataFrame,
    dataset: str | None,
    progress: Progress | None = None,
) -> TeacherLabels:
    """The labels of `texts` by `teacher` (`llm`, `llm:NAME`, a version or a family; see the module) for a model
    whose assembled training rows are `train` (of dataset version `dataset`)."""
    if is_llm(teacher):
        return _llm_labels(ws, model, teacher, texts, train, progress)
    return _model_labels(ws, model, teacher, texts, train, dataset, progress)


def label(
    ws: Workspace,
    model: str,
    teacher: str,
    unlabeled: Path,
    *,
    text_column: str = "text",
    min_confidence: float = 0.0,
    progress: Progress | None = None,
) -> LabelResult:
    """Label `unlabeled`'s new texts with the teacher and store them as a drop with their provenance."""
    spec = ws.model(model)
    if not get_task(spec.task).takes_teacher:
        raise TrainError(f"model {model!r} is {spec.task}: a teacher labels text classification models only")
    if is_llm(teacher) and min_confidence > 0:
        raise TrainError("--min-confidence needs a teacher with probabilities: an LLM's label has none")
    train, test, dataset, human_test = model_rows(ws, model)
    frame = read_table(unlabeled, source=unlabeled.name)
    if text_column not in frame.columns:
        raise TrainError(f"{unlabeled.name} has no column {text_column!r} (columns: {', '.join(frame.columns)})")
    frame = frame.assign(text=frame[text_column].fillna("").astype(str))
    frame = frame[frame["text"].str.strip() != ""]
    keys = frame["text"].map(normalize)
    known = keys.isin(set(train["text"].map(normalize)) | set(test["text"].map(normalize)))
    repeated = keys.duplicated() & ~known
    fresh = frame[~known & ~repeated]
    got = teacher_labels(ws, model, teacher, fresh["text"].tolist(), train, dataset, progress)
    answered = np.array([lab is not None for lab in got.labels], dtype=bool)
    sure = np.array([c is None or c >= min_confidence for c in got.confidence], dtype=bool)
    keep = answered & sure
    drop = pd.DataFrame(
        {
            LINE: fresh[LINE].to_numpy()[keep],
            spec.text_column: fresh["text"].to_numpy()[keep],
            spec.label_column: [lab for lab, k in zip(got.labels, keep, strict=True) if k],
        }
    )
    provenance = {
        "kind": "teacher",
        **got.record,
        "source": unlabeled.name,
        "confidence": [c for c, k in zip(got.confidence, keep, strict=True) if k],
        "outcomes": dict(got.outcomes),
    }
    ingest = None
    if len(drop):
        ingest = ingest_frame(
            ws,
            model,
            drop,
            source=f"label:{got.name}:{unlabeled.name}",
            split="train" if human_test else "auto",
            provenance=provenance,
        )
    return LabelResult(
        got.name,
        len(frame),
        int(known.sum()),
        int(repeated.sum()),
        int((answered & ~sure).sum()),
        ingest,
        got.outcomes,
        got.dollars,
        got.problem,
        judged_by_teacher=ingest is not None and ingest.drop.n_test > 0,
    )
