"""Named-entity metrics: entity-level precision, recall and F1 (an entity counts when its span and type are exact),
per type, and the WNUT-17 "surface form" F1, with bootstrap CIs and the paired test resampling sentences.

Entity-level scores are sums of per-sentence counts (true positives, predicted, gold), so a resample of sentences is
one fancy-index and a sum. Surface-form F1 counts each distinct (entity text, type) once over the whole set, found
or missed (the shared task's second measure: a model that finds a rare name once scores as one that finds a common
name everywhere); a resample is then a sentence-by-form incidence product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from shoal.evaluate.classification import resample_indices
from shoal.evaluate.paired import paired_bootstrap

Span = tuple[int, int, str]
ENTITY_METRICS = ("entity_f1", "entity_precision", "entity_recall")
METRICS = (*ENTITY_METRICS, "surface_f1")


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def counts(truth: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> np.ndarray:
    """(n, 3): each sentence's exact matches, predicted entities and gold entities."""
    out = np.zeros((len(truth), 3), dtype=np.int64)
    for i, (gold, found) in enumerate(zip(truth, pred, strict=True)):
        out[i] = len(set(gold) & set(found)), len(found), len(gold)
    return out


def _prf(summed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of summed counts (..., 3)."""
    tp, predicted, gold = summed[..., 0], summed[..., 1], summed[..., 2]
    precision, recall = _divide(tp, predicted), _divide(tp, gold)
    return precision, recall, _divide(2 * tp, predicted + gold)


def _entity_metric(name: str, summed: np.ndarray) -> np.ndarray:
    precision, recall, f1 = _prf(summed)
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}[name]


class SurfaceForms:
    """Which sentences hold which distinct (text, type) forms, in the truth and in a prediction."""

    def __init__(self, texts: Sequence[str], truth: Sequence[Sequence[Span]]) -> None:
        self.texts = texts
        self.ids: dict[tuple[str, str], int] = {}
        self.gold = self._cells(truth)

    def _cells(self, spans: Sequence[Sequence[Span]]) -> tuple[list[int], list[int]]:
        """(sentence, form id) of every entity."""
        rows, cols = [], []
        for i, (text, entities) in enumerate(zip(self.texts, spans, strict=True)):
            for start, end, label in entities:
                rows.append(i)
                cols.append(self.ids.setdefault((text[start:end], label), len(self.ids)))
        return rows, cols

    def f1(self, pred: Sequence[Sequence[Span]], resamples: np.ndarray | None = None) -> np.ndarray:
        """Surface-form F1 of `pred`, or one per row of `resamples` (B, n)."""
        found = self._cells(pred)
        n, width = len(self.texts), len(self.ids)
        gold, found_matrix = (
            sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, width)) for rows, cols in (self.gold, found)
        )
        if resamples is None:
            weights = sparse.csr_matrix(np.ones((1, n)))
        else:
            b = resamples.shape[0]
            rows = np.repeat(np.arange(b), resamples.shape[1])
            weights = sparse.csr_matrix((np.ones(rows.size), (rows, resamples.ravel())), shape=(b, n))
        has_gold = (weights @ gold).toarray() > 0  # (B, forms): the form is in some sampled sentence
        has_found = (weights @ found_matrix).toarray() > 0
        summed = np.stack([(has_gold & has_found).sum(axis=1), has_found.sum(axis=1), has_gold.sum(axis=1)], axis=-1)
        f1 = _prf(summed)[2]
        return f1 if resamples is not None else f1[0]


def metric_values(
    name: str,
    texts: Sequence[str],
    truth: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    resamples: np.ndarray | None = None,
) -> np.ndarray:
    """The named metric of `pred`, or one value per row of `resamples` (sentence indices, shape (B, n))."""
    if name == "surface_f1":
        return SurfaceForms(texts, truth).f1(pred, resamples)
    if name not in ENTITY_METRICS:
        raise ValueError(f"unknown token-classification metric {name!r}; use one of {', '.join(METRICS)}")
    per_sentence = counts(truth, pred)
    summed = per_sentence.sum(axis=0) if resamples is None else per_sentence[resamples].sum(axis=1)
    return _entity_metric(name, summed)


def score(
    texts: Sequence[str],
    truth: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    types: Sequence[str],
    metric: str,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Every quality number of `pred` on the test sentences, with the fleet metric's 95% bootstrap CI (resampling
    sentences)."""
    per_sentence = counts(truth, pred)
    precision, recall, f1 = _prf(per_sentence.sum(axis=0))
    result: dict[str, Any] = {
        "entity_precision": float(precision),
        "entity_recall": float(recall),
        "entity_f1": float(f1),
        "surface_f1": float(SurfaceForms(texts, truth).f1(pred)),
    }
    boot = metric_values(metric, texts, truth, pred, resample_indices(len(texts), bootstrap, seed))
    result["metric"] = metric
    result["ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    result["per_type"] = per_type(truth, pred, types)
    result["n_entities"] = int(per_sentence[:, 2].sum())
    result["n_test"] = len(texts)
    return result


def per_type(
    truth: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]], types: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and gold count of each entity type."""
    out: dict[str, dict[str, float | int]] = {}
    for label in types:
        kept_truth = [[s for s in gold if s[2] == label] for gold in truth]
        kept_pred = [[s for s in found if s[2] == label] for found in pred]
        summed = counts(kept_truth, kept_pred).sum(axis=0)
        precision, recall, f1 = _prf(summed)
        out[label] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(summed[2]),
        }
    return out


def paired_test(
    texts: Sequence[str],
    truth: Sequence[Sequence[Span]],
    challenger: Sequence[Sequence[Span]],
    champion: Sequence[Sequence[Span]],
    metric: str,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Is the challenger's `metric` better on the same sentences? A paired bootstrap resampling sentences."""
    forms = SurfaceForms(texts, truth) if metric == "surface_f1" else None

    def value(pred: np.ndarray, resamples: np.ndarray | None) -> np.ndarray:
        if forms is not None:
            return forms.f1(list(pred), resamples)
        return metric_values(metric, texts, truth, list(pred), resamples)

    return paired_bootstrap(
        value,
        challenger,
        champion,
        lower_is_better=False,
        bootstrap=bootstrap,
        seed=seed,
        test=f"paired bootstrap of {metric} over the same sentences",
    )
