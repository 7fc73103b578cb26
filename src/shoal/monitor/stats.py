"""Two-sample tests and the multiplicity correction a drift verdict is built from (numpy and scipy only).

Each test answers "could these two samples come from the same distribution?" with a p-value; a window runs several
(one per column, descriptor or output), and `benjamini_hochberg` keeps the chance that *any* of them fires on a window
without drift at most the window's level. `mean_shift_test` compares the means of two samples observed over time whose
values are correlated over spans of consecutive times (a forecast's errors over its horizon).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy import stats


def mmd_test(
    reference: np.ndarray | sp.spmatrix, current: np.ndarray | sp.spmatrix, *, permutations: int, seed: int
) -> tuple[float, float]:
    """(MMD², p-value) of a Gaussian-kernel maximum mean discrepancy between the rows of two samples, the bandwidth
    set by the median distance (the usual heuristic), the p-value from `permutations` random relabellings of the
    pooled rows; when none of them reaches the observed MMD², the tail of a gamma fitted to them (never above the
    permutation floor 1 / (permutations + 1))."""
    pooled = sp.vstack([reference, current]).tocsr() if sp.issparse(reference) else np.vstack([reference, current])
    gram = pooled @ pooled.T
    gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram)
    norms = np.diag(gram)
    distances = np.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0.0)
    upper = distances[np.triu_indices_from(distances, k=1)]
    positive = upper[upper > 0]
    bandwidth = float(np.median(positive)) if len(positive) else 1.0
    kernel = np.exp(-distances / bandwidth)
    n_ref, n = reference.shape[0], pooled.shape[0]
    rng = np.random.default_rng(seed)
    groups = np.empty((n, permutations + 1))
    groups[:, 0] = np.arange(n) < n_ref  # the observed split, then the relabellings
    for column in range(1, permutations + 1):
        groups[:, column] = rng.permutation(groups[:, 0])
    weights = groups / n_ref - (1 - groups) / (n - n_ref)
    values = np.einsum("ij,ij->j", weights, kernel @ weights)
    observed, null = float(values[0]), values[1:]
    exceeded = int(np.sum(null >= observed))
    if exceeded or null.var() == 0:
        return observed, float((1 + exceeded) / (permutations + 1))
    # beyond every relabelling: a gamma fitted to the relabellings' MMD² (moments) gives the tail below 1 / (P + 1),
    # so a check at a small level can still fire on this test alone
    shape, scale = null.mean() ** 2 / null.var(), null.var() / null.mean()
    return observed, float(min(1 / (permutations + 1), stats.gamma.sf(observed, shape, scale=scale)))


def ks_test(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(KS statistic, p-value) of two samples of numbers."""
    result = stats.ks_2samp(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
    return float(result.statistic), float(result.pvalue)


def chi2_test(
    reference: Sequence[str], current: Sequence[str], *, simulations: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """(chi-squared statistic, p-value) of two samples of categories (a 2 x k contingency table of the categories
    either sample holds); one category in all: (0, 1). With many rare categories (more than a fifth of the expected
    counts below 5: 77 intents in a window of 200) the asymptotic p-value is too small (about twice the false
    alarms at a small level), so it comes from `simulations` tables drawn under the null — the window's counts
    drawn from the pooled ones (multivariate hypergeometric) — and, when none of them reaches the observed
    statistic, the asymptotic tail (never above the simulation floor 1 / (simulations + 1))."""
    categories = sorted(set(reference) | set(current))
    if len(categories) < 2:
        return 0.0, 1.0
    index = {category: i for i, category in enumerate(categories)}
    table = np.zeros((2, len(categories)))
    for row, sample in enumerate((reference, current)):
        np.add.at(table[row], [index[value] for value in sample], 1)
    statistic, p_value, _, expected = stats.chi2_contingency(table, correction=False)
    if np.mean(expected < 5) <= 0.2:
        return float(statistic), float(p_value)
    pooled, drawn = table.sum(axis=0).astype(np.int64), int(table[1].sum())
    windows = np.random.default_rng(seed).multivariate_hypergeometric(pooled, drawn, size=simulations)
    simulated = _chi2_statistics(np.stack([pooled - windows, windows], axis=1))
    exceeded = int(np.sum(simulated >= statistic - 1e-9))
    if exceeded:
        return float(statistic), float((1 + exceeded) / (simulations + 1))
    return float(statistic), float(min(1 / (simulations + 1), p_value))


def _chi2_statistics(tables: np.ndarray) -> np.ndarray:
    """Pearson's statistic of each 2 x k table of `tables` (shape n x 2 x k; every column total above 0)."""
    rows, columns, total = tables.sum(axis=2, keepdims=True), tables.sum(axis=1, keepdims=True), tables.sum()
    expected = rows * columns / (total / len(tables))
    return np.sum((tables - expected) ** 2 / expected, axis=(1, 2))


def benjamini_hochberg(p_values: Sequence[float], level: float) -> np.ndarray:
    """Which of `p_values` are discoveries at false-discovery rate `level` (Benjamini–Hochberg). When no test has
    anything to find, the chance of any discovery is at most `level`."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p)
    passed = p[order] <= level * np.arange(1, len(p) + 1) / len(p)
    found = np.zeros(len(p), dtype=bool)
    if passed.any():
        found[order[: int(np.nonzero(passed)[0].max()) + 1]] = True
    return found


def block_means(values: np.ndarray, times: np.ndarray, size: int) -> np.ndarray:
    """`values` averaged per time (several may share one), the times in order cut into consecutive blocks of about
    `size` (at least one block), and each block's mean."""
    unique, inverse = np.unique(np.asarray(times), return_inverse=True)
    per_time = np.bincount(inverse, weights=np.asarray(values, dtype=float)) / np.bincount(inverse)
    return np.array([block.mean() for block in np.array_split(per_time, max(1, len(unique) // size))])


def effective_blocks(count: int, correlation: float) -> float:
    """How many independent blocks the mean of `count` consecutive blocks is worth when neighbouring blocks'
    means correlate by `correlation` at lag one, decaying as an AR(1)'s: count / (1 + 2 Σ (1 − k/count) ρ^k)."""
    lags = np.arange(1, count)
    return float(count / (1 + 2 * np.sum((1 - lags / count) * correlation**lags)))


def mean_shift_test(
    reference: tuple[np.ndarray, np.ndarray],
    current: tuple[np.ndarray, np.ndarray],
    *,
    block: int,
    greater_only: bool = False,
    ratio: bool = False,
) -> tuple[float, float]:
    """(current mean, p-value) of "the current sample's mean equals the reference's", for values observed over time
    (each sample: values, times) that are correlated within `block` consecutive times and drift in level from one
    such span to the next (a forecast's errors over its horizon, a season's weather): the two-sample t-test on the
    samples' block means (`block_means`), their spread pooled, each sample counted as the independent blocks it is
    worth (`effective_blocks`, the blocks' lag-one correlation pooled within the samples: a spell of large errors
    spans several blocks, and counting them as independent made calm windows "significant" several times as often
    as the level says). Raises ValueError when the two samples hold fewer than three blocks.
    `greater_only`: only a current mean above the reference's is evidence. `ratio`: the values are sizes (absolute
    errors) and the test compares the logs of the block means — "have they grown by a factor?" — whose spread is
    near normal where the means' own is skewed by spells of large errors (the t-test's tail then fired on calm
    windows several times as often as the level says)."""
    before, now = block_means(*reference, block), block_means(*current, block)
    if len(before) + len(now) < 3:
        raise ValueError(f"{len(before) + len(now)} blocks of {block} times; a comparison needs at least three")
    mean_now = float(now.mean())
    if ratio:  # a block with no error at all: a thousandth of a typical block's, not minus infinity (one such block
        # would otherwise be the whole spread and silence the test)
        positive = np.concatenate([before, now])
        floor = 1e-3 * float(np.median(positive[positive > 0])) if np.any(positive > 0) else 1e-12
        before, now = np.log(np.maximum(before, floor)), np.log(np.maximum(now, floor))
    centred = [before - before.mean(), now - now.mean()]
    squares = float(sum(np.sum(c**2) for c in centred))
    difference = float(now.mean() - before.mean())
    if squares == 0:
        moved = difference > 0 if greater_only else difference != 0
        return mean_now, 0.0 if moved else 1.0
    correlation = float(np.clip(sum(np.sum(c[1:] * c[:-1]) for c in centred) / squares, 0.0, 0.95))
    worth = effective_blocks(len(before), correlation), effective_blocks(len(now), correlation)
    # correlated blocks scatter less around their own mean: E[Σ (x − x̄)²] = σ² (n − n / n_eff), not σ² (n − 1)
    lost = sum(len(blocks) / effective for blocks, effective in zip((before, now), worth, strict=True))
    spread = float(np.sqrt(squares / max(len(before) + len(now) - lost, 1e-9)))
    freedom = max(1.0, sum(worth) - 2)
    t = difference / (spread * np.sqrt(1 / worth[0] + 1 / worth[1]))
    return mean_now, float(stats.t.sf(t, freedom) if greater_only else 2 * stats.t.sf(abs(t), freedom))
