"""Sentence embeddings: a pretrained encoder served at `POST /v1/models/{name}/embed`, judged on pairs the user
provides (STS style: two texts and a similarity score on any numeric scale; 1/0 for retrieval-style
"related or not" pairs).

The encoders are frozen, so every pair is evaluation data: an `auto` drop goes to the test set whole. The
metric is Spearman's ρ between the pairs' cosine similarities and their scores; the floor is word overlap
(Jaccard), which a first version must significantly beat.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shoal.data.errors import DropRejected, Problem
from shoal.data.sets import TestSet, TrainSet
from shoal.data.split import assign_split
from shoal.evaluate import embedding as metrics
from shoal.fleet import ModelSpec
from shoal.tasks.base import TaskKind, Validated
from shoal.tasks.columns import ColumnType
from shoal.tasks.embedding.spec import EmbeddingSpec
from shoal.tasks.text_classification import normalize

TEXT, PAIR, SCORE = "text", "text_pair", "score"
_WORD = re.compile(r"\w+")


def word_overlap(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Jaccard similarity of the two texts' lowercased word sets (the floor)."""
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        left, right = set(_WORD.findall(x.lower())), set(_WORD.findall(y.lower()))
        out[i] = len(left & right) / len(left | right) if left | right else 0.0
    return out


class Embedding(TaskKind):
    name = "embedding"
    columns = (TEXT, PAIR, SCORE)
    column_types = (
        ("text_column", ColumnType.TEXT),
        ("pair_column", ColumnType.TEXT),
        ("score_column", ColumnType.NUMBER),
    )
    floor_name = "the word-overlap floor"
    report_columns = (("pearson", "Pearson r"),)

    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        assert isinstance(spec, EmbeddingSpec)
        typed = self.read(frame, spec, source)
        problems, refused = list(typed.problems), typed.refused
        rows = []
        for line, a, b, number in zip(
            typed.lines,
            typed.values[spec.text_column],
            typed.values[spec.pair_column],
            typed.values[spec.score_column],
            strict=True,
        ):
            if line in refused:
                continue
            empty = [c for c, v in ((spec.text_column, a), (spec.pair_column, b)) if v is None or not v.strip()]
            if empty:
                problems.append(Problem(line, f"empty text in column(s) {', '.join(repr(c) for c in empty)}"))
            elif number is None:
                problems.append(Problem(line, f"column {spec.score_column!r}: missing"))
            else:
                rows.append((a, b, number))
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        if not rows:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        clean = pd.DataFrame(rows, columns=[TEXT, PAIR, SCORE])
        return Validated(clean, [], [str(p) for p in problems])

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return frame[TEXT].map(normalize) + "\x1f" + frame[PAIR].map(normalize)

    def assign_split(self, rows: pd.DataFrame, mode: str, test_fraction: float) -> pd.Series:
        """Frozen encoders learn nothing: pairs are test data unless a drop says otherwise."""
        return assign_split(self.split_keys(rows), "test" if mode == "auto" else mode, test_fraction)

    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        frame = frame.assign(key=self.split_keys(frame))
        test = frame[frame["split"] == "test"].drop_duplicates("key", keep="last")
        train = frame[frame["split"] == "train"]
        columns = [TEXT, PAIR, SCORE]
        return train[columns].reset_index(drop=True), test[columns].reset_index(drop=True), []

    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        return TrainSet(train[TEXT].tolist(), train[SCORE].tolist())

    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        if len(test) < 3:
            raise ValueError("needs at least 3 test pairs to judge an encoder")
        a, b = test[TEXT].tolist(), test[PAIR].tolist()
        digest = hashlib.sha256()
        for row in sorted(zip(a, b, test[SCORE].astype(float).tolist(), strict=True)):
            digest.update(repr(row).encode() + b"\n")
        texts = list(dict.fromkeys(a + b))
        return TestSet(texts, test[SCORE].to_numpy(dtype=np.float64), digest.hexdigest(), context=(a, b))

    # -- judging -----------------------------------------------------------------------------------
    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return []  # nothing is fit

    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        raise NotImplementedError("embedding has no cross-validation folds")

    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        raise NotImplementedError("embedding has no cross-validation folds")

    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        """The cosine similarity of each pair (embeddings are unit length)."""
        a, b = test.context
        vectors = predictor.predict_proba(test.inputs)
        row = {text: i for i, text in enumerate(test.inputs)}
        left = vectors[[row[t] for t in a]]
        right = vectors[[row[t] for t in b]]
        return np.asarray((left * right).sum(axis=1), dtype=np.float64)

    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        similarity = self.gate_outputs(predictor, test)
        result = metrics.score(test.truth, similarity, metric, bootstrap=bootstrap, seed=seed)
        result["dim"] = int(predictor.dim)
        return result, similarity

    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        a, b = test.context
        return word_overlap(a, b)

    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        return metrics.paired_test(test.truth, challenger, champion, bootstrap=bootstrap, seed=seed)
