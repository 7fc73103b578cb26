"""`tfidf-logreg`: word + char n-gram TF-IDF and multinomial logistic regression."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from shoal.families import register
from shoal.families.base import FeatureFamily, Params, Predictor, class_weight
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import fit_tfidf, tfidf_pipeline, tfidf_transform


@register
class TfidfLogReg(FeatureFamily):
    name = "tfidf-logreg"
    task = "text-classification"
    cost = 1.0
    expected_p95_ms = 3.0
    expected_size_mb = 30.0
    expected_train_seconds_per_1k_rows = 6.0
    features_key = "tfidf-word-char"
    class_weighted = True

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 3.0}, {"C": 20.0}]

    def fit_features(self, inputs: Sequence[str]) -> tuple[Any, Any]:
        return fit_tfidf(inputs)

    def features(self, featurizer: Any, inputs: Sequence[str]) -> Any:
        return tfidf_transform(featurizer, inputs)

    def fit_head(
        self, features: Any, targets: Sequence[str], params: Params, seed: int, start: Any = None
    ) -> LogisticRegression:
        head = LogisticRegression(
            C=params.get("C", 10.0), class_weight=class_weight(params), max_iter=300, random_state=seed
        )
        if start is not None:
            head.set_params(warm_start=True)
            head.coef_, head.intercept_ = start
        head.fit(features, list(targets))
        return head.set_params(warm_start=False)

    def head_start(self, earlier: Predictor, featurizer: Any, targets: Sequence[str]) -> Any:
        """`earlier`'s coefficients (coef_, intercept_) moved onto `featurizer`'s columns by term and onto the
        classes of `targets` by name; a term or class it did not have starts at zero. None when `earlier` is not
        a multiclass logistic regression on TF-IDF features built the same way (same parts, analyzers, n-grams)."""
        steps = getattr(getattr(earlier, "estimator", None), "steps", None)
        if not steps or len(steps) != 2:
            return None
        union, head = steps[0][1], steps[1][1]
        classes = sorted({str(target) for target in targets})
        if (
            type(head) is not LogisticRegression
            or head.coef_.shape[0] != len(head.classes_)  # binary: one row, no class of its own to move
            or len(classes) <= 2
            or not _same_features(union, featurizer)
        ):
            return None
        columns = np.concatenate(
            [
                _columns(before.vocabulary_, now.vocabulary_, offset)
                for (_, before), (_, now), offset in zip(
                    union.transformer_list, featurizer.transformer_list, _offsets(union), strict=True
                )
            ]
        )
        rows = {str(label): i for i, label in enumerate(head.classes_)}
        coef = np.zeros((len(classes), len(columns)))
        intercept = np.zeros(len(classes))
        known = columns >= 0
        for i, label in enumerate(classes):
            if label in rows:
                coef[i, known] = head.coef_[rows[label], columns[known]]
                intercept[i] = head.intercept_[rows[label]]
        return coef, intercept

    def fit_heads(self, features: Any, targets: Sequence[str], grid: list[Params], seed: int) -> list[Any]:
        """The search's heads on one fold: each setting's solver starts from the previous setting's solution (the
        grid lists C growing, and a larger C's optimum lies near a smaller one's: Banking77's C=20 takes 16 L-BFGS
        iterations from C=3's solution instead of 36 from zero). The final fit starts from zero, or from the production
        version's solution (`head_start`)."""
        heads: list[Any] = []
        for params in grid:
            head = copy.deepcopy(heads[-1]) if heads else LogisticRegression(max_iter=300, random_state=seed)
            head.set_params(C=params.get("C", 10.0), class_weight=class_weight(params), warm_start=True)
            heads.append(head.fit(features, list(targets)))
        return heads

    def assemble(self, featurizer: Any, head: Any) -> SklearnPredictor:
        return SklearnPredictor(tfidf_pipeline(featurizer, head))

    def load(self, folder: Path) -> SklearnPredictor:
        return SklearnPredictor.load(folder)


def _same_features(before: Any, now: Any) -> bool:
    """Whether two fitted feature unions build their columns the same way (their vocabularies may differ)."""
    parts = [getattr(union, "transformer_list", None) for union in (before, now)]
    if not parts[0] or not parts[1] or len(parts[0]) != len(parts[1]):
        return False
    return all(
        name == other
        and type(a) is type(b) is TfidfVectorizer
        and (a.analyzer, a.ngram_range, a.lowercase) == (b.analyzer, b.ngram_range, b.lowercase)
        for (name, a), (other, b) in zip(*parts, strict=True)
    )


def _columns(before: dict[str, int], now: dict[str, int], offset: int) -> np.ndarray:
    """For each of `now`'s columns (in index order), `offset` + the column of the same term in `before`, or -1."""
    columns = np.full(len(now), -1, dtype=np.int64)
    for term, index in now.items():
        found = before.get(term)
        if found is not None:
            columns[index] = offset + found
    return columns


def _offsets(union: Any) -> list[int]:
    """Where each part's columns start in the union's features."""
    sizes = [len(part.vocabulary_) for _, part in union.transformer_list]
    return [int(sum(sizes[:i])) for i in range(len(sizes))]
