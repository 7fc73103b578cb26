"""Text classification's data and judging: one label per text; the majority floor; cleanlab's label audit."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from shoal.cascade.calibration import CALIBRATION_FILE, calibrate
from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE
from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate.classification import confusion, metric_value, paired_test, score
from shoal.fleet import ModelSpec
from shoal.tasks.base import DataDefaults, TaskKind, Validated
from shoal.tasks.columns import ColumnType
from shoal.tasks.text_classification import normalize
from shoal.tasks.text_classification.spec import TextClassificationSpec

IMBALANCE_RATIO = 20
TINY_CLASS = 5
#: the rows of each label a search's sample keeps at least (`search_sample`)
SAMPLE_PER_LABEL = 50


class TextClassification(TaskKind):
    name = "text-classification"
    columns = ("text", "label")
    column_types = (("text_column", ColumnType.TEXT), ("label_column", ColumnType.LABEL))
    floor_name = "the majority floor"
    report_columns = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("ece", "ECE"))
    stronger_families = (("minilm-logreg", "setfit"), "pip install 'shoal[embeddings]'")
    takes_teacher = True
    after_fit_phase = "label_audit"

    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        assert isinstance(spec, TextClassificationSpec)
        typed = self.read(frame, spec, source)
        texts, labels = typed.values[spec.text_column], typed.values[spec.label_column]
        allowed = set(spec.labels) if spec.labels is not None else None
        known = latest_labels(stored)
        problems, refused = list(typed.problems), typed.refused
        seen: dict[str, tuple[int, str]] = {}
        relabelled: set[str] = set()
        for line, text, label in zip(typed.lines, texts, labels, strict=True):
            if line in refused:
                continue
            if text is None or not text.strip():
                problems.append(Problem(line, f"empty text in column {spec.text_column!r}"))
                continue
            if label is None or not label.strip():
                problems.append(Problem(line, f"empty label in column {spec.label_column!r}"))
                continue
            if allowed is not None and label not in allowed:
                problems.append(
                    Problem(line, f"label {label!r} is not in the declared labels ({', '.join(sorted(allowed))})")
                )
                continue
            key = normalize(text)
            first = seen.setdefault(key, (line, label))
            if first[1] != label:
                problems.append(
                    Problem(line, f"the same text is labelled {label!r} here and {first[1]!r} at line {first[0]}")
                )
                continue
            before = known.get(key)
            if before is not None and before != label:
                if spec.relabel == "reject":
                    problems.append(
                        Problem(
                            line,
                            f"the text is already stored with label {before!r}, here {label!r} (relabel: reject; "
                            "set relabel: supersede in shoal.yaml to let a later drop correct a label)",
                        )
                    )
                else:
                    relabelled.add(key)
        problems.sort(key=lambda p: p.line or 0)
        bad = {p.line for p in problems}
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        keep = [line not in bad for line in typed.lines]
        clean = pd.DataFrame(
            {
                "text": [t for t, k in zip(texts, keep, strict=True) if k],
                "label": [lab for lab, k in zip(labels, keep, strict=True) if k],
            }
        )
        if clean.empty:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        warnings = _class_warnings(clean["label"])
        relabelled &= set(clean["text"].map(normalize))
        if relabelled:
            warnings.append(
                f"{len(relabelled)} stored text(s) relabelled: the new label supersedes the old in train and test "
                f"(relabel: supersede; 'shoal data issues' lists them)"
            )
        return Validated(clean, warnings, [str(p) for p in problems])

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return frame["text"].map(normalize)

    def data_defaults(self, train: TrainSet) -> DataDefaults | None:
        from shoal.tasks.text_classification.defaults import choose

        return choose(train)

    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        notes: list[str] = []
        frame = frame.assign(key=frame["text"].map(normalize))
        # a later drop's label supersedes an earlier one for the same text, in train and test alike (feedback and
        # re-annotation correct labels; with relabel: reject no stored text is ever given another label)
        latest = frame.groupby("key", sort=False)["label"].last()
        relabelled = frame.groupby("key", sort=False)["label"].nunique() > 1
        if relabelled.any():
            notes.append(f"{int(relabelled.sum())} text(s) relabelled by a later drop (the latest label is used)")
        frame = frame.assign(label=frame["key"].map(latest))
        # each text once in each set: a text the test holds twice would be scored twice
        test = frame[frame["split"] == "test"]
        test_once = test.drop_duplicates("key", keep="last")
        if len(test_once) < len(test):
            notes.append(f"{len(test) - len(test_once)} repeated test texts merged")
        test = test_once
        train = frame[frame["split"] == "train"]
        deduped = train.drop_duplicates("key", keep="last")
        if len(deduped) < len(train):
            notes.append(f"{len(train) - len(deduped)} repeated training texts merged (latest label kept)")
        leaking = deduped["key"].isin(set(test["key"]))
        if leaking.any():
            notes.append(f"{int(leaking.sum())} training texts also in the test set left out of training")
        train = deduped[~leaking]
        columns = ["text", "label"]
        return train[columns].reset_index(drop=True), test[columns].reset_index(drop=True), notes

    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        if train["label"].nunique() < 2:
            raise ValueError("needs at least two labels in its training data")
        return TrainSet(train["text"].tolist(), train["label"].tolist())

    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        texts, labels = test["text"].tolist(), test["label"].tolist()
        label_set = sorted(set(train["label"]) | set(labels))
        digest = hashlib.sha256()
        for text, label in sorted(zip(texts, labels, strict=True)):
            digest.update(text.encode() + b"\0" + label.encode() + b"\n")
        truth = np.array([label_set.index(label) for label in labels])
        return TestSet(texts, truth, digest.hexdigest(), label_set)

    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        y = np.asarray(targets, dtype=object)
        counts = np.unique(y, return_counts=True)[1]
        folds = max(2, min(folds, len(y)))
        splitter = (
            StratifiedKFold(folds, shuffle=True, random_state=seed)
            if counts.min() >= folds
            else KFold(folds, shuffle=True, random_state=seed)
        )
        return list(splitter.split(np.zeros(len(y)), y))

    def search_sample(self, targets: Sequence[Any], rows: int, seed: int) -> np.ndarray | None:
        """About `rows` rows drawn label by label in proportion to each label's share, with at least
        `SAMPLE_PER_LABEL` of each label (all of a rarer one), so every label is in the search's folds."""
        y = np.asarray(targets, dtype=object)
        share = rows / len(y)
        rng = np.random.default_rng(seed)
        chosen = []
        for label in sorted(set(y.tolist())):
            where = np.flatnonzero(y == label)
            take = min(len(where), max(SAMPLE_PER_LABEL, round(share * len(where))))
            chosen.append(rng.choice(where, size=take, replace=False))
        return np.sort(np.concatenate(chosen))

    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        return align(predictor.predict_proba(inputs), predictor.labels, labels)

    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        truth = np.array([labels.index(label) for label in targets])
        return float(metric_value(confusion(truth, oof.argmax(axis=1), len(labels)), metric, labels))

    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        return predict_indices(predictor, test)[0]

    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        pred, proba = predict_indices(predictor, test)
        return score(test.truth, pred, proba, test.labels, metric, bootstrap=bootstrap, seed=seed), pred

    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        from shoal.families import get_family

        predictor = get_family("majority").fit([""] * len(train.targets), train.targets, {}, 0)
        return predict_indices(predictor, test)[0]

    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        return paired_test(test.truth, challenger, champion, test.labels, metric, bootstrap=bootstrap, seed=seed)

    def stored_outputs(self, outputs: np.ndarray, test: TestSet) -> dict[str, Any] | None:
        if (outputs < 0).any():  # a label outside the global list has no name here: not stored
            return None
        # label names, not indices: the global label list also holds the training labels, which change with data
        return {"rows": rows_digest(test), "predicted": [test.labels[i] for i in outputs]}

    def restored_outputs(self, stored: dict[str, Any], test: TestSet) -> np.ndarray | None:
        if stored.get("rows") != rows_digest(test) or len(stored.get("predicted", [])) != len(test.inputs):
            return None
        index = {label: i for i, label in enumerate(test.labels)}
        return np.array([index.get(label, -1) for label in stored["predicted"]], dtype=np.int64)

    def feedback_rows(self, spec: ModelSpec, texts: list[str], labels: list[str], lines: list[int]) -> pd.DataFrame:
        assert isinstance(spec, TextClassificationSpec)
        columns = {spec.text_column: texts, spec.label_column: labels}  # as logged: validation checks them
        return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()}).assign(
            **{LINE: lines}
        )

    def after_fit(
        self, predictor: Any, train: TrainSet, oof: np.ndarray, labels: list[str], rows: np.ndarray | None = None
    ) -> tuple[float | None, dict]:
        """The label audit (on the searched rows: all, or a large training set's sample) and the cascade's
        calibration, both from the search's out-of-fold probabilities."""
        from shoal.data.audit import LABEL_ISSUES_FILE, label_issues

        error_rate, issues = label_issues(train.inputs, train.targets, labels, oof, rows)
        files: dict[str, Any] = {LABEL_ISSUES_FILE: issues}
        # the confidence a cascade defers on, calibrated on the same out-of-fold probabilities
        searched = train.targets if rows is None else [train.targets[i] for i in rows]
        record = calibrate(oof, np.array([labels.index(label) for label in searched]))
        if record is not None:
            files[CALIBRATION_FILE] = record.as_json()
        return error_rate, files


def align(proba: np.ndarray, model_labels: list[str], labels: list[str]) -> np.ndarray:
    """Re-order probability columns from a model's labels to the global label list."""
    out = np.zeros((proba.shape[0], len(labels)))
    out[:, [labels.index(label) for label in model_labels]] = proba
    return out


def predict_indices(predictor: Any, test: TestSet) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label indices in the global label list, probabilities in the predictor's columns)."""
    proba = predictor.predict_proba(test.inputs)
    mapping = np.array([test.labels.index(label) if label in test.labels else -1 for label in predictor.labels])
    return mapping[proba.argmax(axis=1)], proba


def rows_digest(test: TestSet) -> str:
    """Names the test rows in their order (the texts; what a predictor's outputs depend on)."""
    digest = hashlib.sha256()
    for text in test.inputs:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def latest_labels(stored: pd.DataFrame | None) -> dict[str, str]:
    """Each stored text's label (by normalized text; a later drop's label supersedes an earlier one)."""
    if stored is None or stored.empty:
        return {}
    return dict(zip(stored["text"].map(normalize), stored["label"], strict=True))


def _class_warnings(labels: pd.Series) -> list[str]:
    counts = Counter(labels)
    warnings = []
    tiny = sorted(label for label, n in counts.items() if n < TINY_CLASS)
    if tiny:
        warnings.append(
            f"tiny classes (< {TINY_CLASS} rows): {', '.join(tiny[:10])}" + (" ..." if len(tiny) > 10 else "")
        )
    if len(counts) > 1 and max(counts.values()) >= IMBALANCE_RATIO * min(counts.values()):
        common, rare = counts.most_common()[0], counts.most_common()[-1]
        warnings.append(f"class imbalance: {common[0]!r} has {common[1]} rows, {rare[0]!r} has {rare[1]}")
    return warnings
