"""Embedding quality on user-given pairs (STS style): Spearman correlation between the cosine similarity of
the two texts' embeddings and the pair's similarity score, with bootstrap CIs and a paired bootstrap test."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from shoal.evaluate.classification import resample_indices
from shoal.evaluate.paired import paired_bootstrap


def spearman(truth: np.ndarray, similarity: np.ndarray, resamples: np.ndarray | None = None) -> np.ndarray:
    """Spearman's ρ (ties get average ranks), or one ρ per row of `resamples`."""
    if resamples is not None:
        truth, similarity = truth[resamples], similarity[resamples]
    a = rankdata(truth, axis=-1)
    b = rankdata(similarity, axis=-1)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=-1) * (b**2).sum(axis=-1))
    return np.divide((a * b).sum(axis=-1), denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def score(truth: np.ndarray, similarity: np.ndarray, metric: str, *, bootstrap: int, seed: int) -> dict[str, Any]:
    boot = spearman(truth, similarity, resample_indices(len(truth), bootstrap, seed))
    pearson = float(np.corrcoef(truth, similarity)[0, 1]) if np.std(similarity) > 0 else 0.0
    return {
        "spearman": float(spearman(truth, similarity)),
        "pearson": pearson,
        "metric": metric,
        "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "n_test": len(truth),
    }


def paired_test(
    truth: np.ndarray, challenger: np.ndarray, champion: np.ndarray, *, bootstrap: int, seed: int
) -> dict[str, Any]:
    return paired_bootstrap(
        lambda similarity, idx: spearman(truth, similarity, idx),
        challenger,
        champion,
        lower_is_better=False,
        bootstrap=bootstrap,
        seed=seed,
        test="paired bootstrap of Spearman's ρ over the same pairs",
    )
