"""Tabular regression's data and judging: numeric and categorical feature columns and a numeric target.

The schema (each feature numeric or categorical) is inferred from the model's first drop and stored with it
(the stored drops' column types); every later drop must have exactly those columns with values of those types,
or it is rejected whole with the file, line and reason. Missing feature values are allowed (each family
handles them); a missing or non-numeric target is not. A row's split is a hash of its feature values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE
from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate import regression as metrics
from shoal.families.tabular import CATEGORICAL, NUMERIC
from shoal.fleet import ModelSpec
from shoal.tasks.base import TaskKind, Validated, require_columns
from shoal.tasks.columns import ColumnType, as_number, is_missing, read_columns
from shoal.tasks.regression.spec import RegressionSpec

TARGET = "__target__"
RESERVED = ("split", "key")  # the split and the row key assemble adds
MIN_TRAIN_ROWS = 10
#: a column inferred categorical although this share of its values are numbers gets a warning
MOSTLY_NUMERIC = 0.9

Schema = dict[str, str]  # feature column -> numeric | categorical, in column order
#: each feature's column type, by the kind the schema gives it
FEATURE_TYPES = {NUMERIC: ColumnType.NUMBER, CATEGORICAL: ColumnType.CATEGORY}


def stored_schema(frame: pd.DataFrame) -> Schema:
    """The schema a stored (canonical) drop was written with: float columns are numeric."""
    return {
        column: NUMERIC if pd.api.types.is_numeric_dtype(frame[column]) else CATEGORICAL
        for column in frame.columns
        if column not in (TARGET, "split", LINE)
    }


def infer_schema(frame: pd.DataFrame, features: list[str]) -> tuple[Schema, list[str]]:
    """A first drop's schema: a column is numeric when every present value is a number; and warnings. Values that
    are neither a number nor a string (a list, a boolean ...) do not count: they are refused whatever the type."""
    schema: Schema = {}
    warnings = []
    for column in features:
        present = [v for v in frame[column] if not is_missing(v) and (isinstance(v, str) or as_number(v) is not None)]
        numbers = sum(as_number(v) is not None for v in present)
        schema[column] = NUMERIC if numbers == len(present) else CATEGORICAL
        if not present:
            warnings.append(f"column {column!r} has no values in the first drop; it is taken as numeric")
        elif schema[column] == CATEGORICAL and numbers >= MOSTLY_NUMERIC * len(present):
            warnings.append(f"column {column!r} is categorical although {numbers} of {len(present)} values are numbers")
    return schema, warnings


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """One string per row from its feature values (sorted by column name, so column order never matters)."""
    columns = sorted(c for c in frame.columns if c not in (TARGET, "split", LINE, "key"))
    parts = []
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            text = values.map(lambda v: "" if v != v else format(float(v), ".12g"))
        else:
            text = values.map(lambda v: "" if is_missing(v) else str(v))
        parts.append(column + "=" + text.astype(str))
    if not parts:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    key = parts[0]
    for part in parts[1:]:
        key = key + "\x1f" + part
    return key


def _feature_array(values: list[Any], kind: str) -> np.ndarray:
    """A typed column as stored: float64 with NaN for a missing number, object with None for a missing category."""
    if kind == NUMERIC:
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.asarray(values, dtype=object)


def features_of(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (TARGET, "split", LINE, "key")]


class Regression(TaskKind):
    name = "regression"
    columns = ()
    #: the target; each feature is NUMBER or CATEGORY by the schema the model's first drop set
    column_types = (("target_column", ColumnType.NUMBER),)
    lower_is_better = metrics.LOWER_IS_BETTER
    floor_name = "the mean floor"
    report_columns = (("r2", "R²"), ("rmse", "RMSE"), ("interval_coverage", "90% coverage"))
    after_fit_phase = "intervals"

    # -- data --------------------------------------------------------------------------------------
    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        assert isinstance(spec, RegressionSpec)
        target = spec.target_column
        require_columns(frame, [target], source, "target_column")
        present = [c for c in frame.columns if c != LINE]
        features = [c for c in present if c != target]
        warnings: list[str] = []
        if stored is None:
            reserved = [c for c in features if c in RESERVED or c.startswith("__")]
            if reserved:
                raise DropRejected(source, [Problem(None, f"reserved column name(s): {', '.join(reserved)}")])
            if not features:
                raise DropRejected(source, [Problem(None, f"no feature columns besides the target {target!r}")])
            schema, warnings = infer_schema(frame, features)
        else:
            schema = stored_schema(stored)
            _check_columns(source, schema, features)
        types = {column: FEATURE_TYPES[kind] for column, kind in schema.items()}
        typed = read_columns(frame, {**types, target: ColumnType.NUMBER})
        problems, refused = list(typed.problems), typed.refused
        for line, value in zip(typed.lines, typed.values[target], strict=True):
            if value is None and line not in refused:
                problems.append(Problem(line, f"target {target!r}: missing"))
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        bad = {p.line for p in problems}
        keep = np.array([line not in bad for line in typed.lines])
        clean = pd.DataFrame({column: _feature_array(typed.values[column], schema[column])[keep] for column in schema})
        clean[TARGET] = _feature_array(typed.values[target], NUMERIC)[keep]
        if clean.empty:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        empty = [c for c, kind in schema.items() if clean[c].isna().all() and stored is not None]
        if empty:
            warnings.append(f"column(s) with no values in this drop: {', '.join(empty)}")
        if clean[TARGET].nunique() < 2:
            warnings.append("the target has a single value in this drop")
        return Validated(clean, warnings, [str(p) for p in problems])

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return row_keys(frame)

    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        notes: list[str] = []
        frame = frame.assign(key=row_keys(frame))
        test = frame[frame["split"] == "test"]
        train = frame[frame["split"] == "train"]
        deduped = train.drop_duplicates("key", keep="last")  # a later drop's target wins for the same features
        if len(deduped) < len(train):
            notes.append(f"{len(train) - len(deduped)} repeated training rows merged (latest target kept)")
        leaking = deduped["key"].isin(set(test["key"]))
        if leaking.any():
            notes.append(f"{int(leaking.sum())} training rows also in the test set left out of training")
        # sorted by key: the same rows train the same model whatever the order of drops
        train = deduped[~leaking].sort_values("key", kind="stable")
        columns = [*features_of(frame), TARGET]
        return train[columns].reset_index(drop=True), test[columns].reset_index(drop=True), notes

    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        if len(train) < MIN_TRAIN_ROWS:
            raise ValueError(f"needs at least {MIN_TRAIN_ROWS} training rows (has {len(train)})")
        return TrainSet(records(train), train[TARGET].astype(float).tolist())

    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        payload = test.assign(key=row_keys(test)).sort_values(["key", TARGET], kind="stable")
        digest = hashlib.sha256(payload.to_csv(index=False, lineterminator="\n").encode("utf-8")).hexdigest()
        return TestSet(records(test), test[TARGET].to_numpy(dtype=np.float64), digest)

    # -- judging -----------------------------------------------------------------------------------
    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        folds = max(2, min(folds, len(targets)))
        return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(targets))))

    def search_sample(self, targets: Sequence[Any], rows: int, seed: int) -> np.ndarray | None:
        """A uniform random sample of `rows` rows."""
        return np.sort(np.random.default_rng(seed).choice(len(targets), size=min(rows, len(targets)), replace=False))

    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        return np.asarray(predictor.predict_proba(inputs))[:, 0]

    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        return float(metrics.metric_values(np.asarray(targets, dtype=np.float64), oof, metric))

    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        return np.asarray(predictor.predict_proba(test.inputs))[:, 0]

    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        out = np.asarray(predictor.predict_proba(test.inputs))
        result = metrics.score(
            test.truth, out[:, 0], metric, bootstrap=bootstrap, seed=seed, lower=out[:, 1], upper=out[:, 2]
        )
        return result, out[:, 0]

    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        return np.full(len(test.truth), float(np.mean(train.targets)))

    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        return metrics.paired_test(test.truth, challenger, champion, metric, bootstrap=bootstrap, seed=seed)

    def after_fit(
        self, predictor: Any, train: TrainSet, oof: np.ndarray, labels: list[str], rows: np.ndarray | None = None
    ) -> tuple[float | None, dict]:
        """The prediction interval comes from the out-of-fold residuals of the search (honest, unlike
        residuals on the training rows)."""
        targets = np.asarray(train.targets, dtype=np.float64)
        predictor.set_interval((targets if rows is None else targets[rows]) - oof)
        return None, {}


def _check_columns(source: str, schema: Schema, features: list[str]) -> None:
    new = [c for c in features if c not in schema]
    missing = [c for c in schema if c not in features]
    problems = []
    fixed = ", ".join(f"{c} ({kind})" for c, kind in schema.items())
    if new:
        problems.append(Problem(None, f"new column(s) {', '.join(new)} not in the schema set by the first drop"))
    if missing:
        problems.append(Problem(None, f"missing column(s) {', '.join(missing)}"))
    if problems:
        problems.append(Problem(None, f"the schema (from the model's first drop) is: {fixed}"))
        raise DropRejected(source, problems)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature rows as dicts (what a predict request carries): NaN for a missing number, None for a missing
    category."""
    features = features_of(frame)
    out = frame[features].astype(object).where(frame[features].notna(), None)
    rows: list[dict[str, Any]] = out.to_dict("records")
    return rows
