"""The paired bootstrap shared by the task kinds whose metrics are not confusion matrices.

Both contenders are scored on the *same* resampled rows, so their per-row errors move together and the test
sees the difference, not the noise of the test set. Δ > 0 means the challenger is better (for an error metric,
the reduction); the one-sided p-value is the share of resamples where the challenger is not better.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shoal.evaluate.classification import resample_indices

#: a metric of predictions over all rows (resamples None) or over each row of a (B, n) index array
Metric = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def paired_bootstrap(
    metric: Metric,
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    lower_is_better: bool,
    bootstrap: int,
    seed: int,
    test: str,
) -> dict[str, Any]:
    sign = -1.0 if lower_is_better else 1.0
    idx = resample_indices(len(challenger), bootstrap, seed)
    deltas = sign * (metric(challenger, idx) - metric(champion, idx))
    delta = float(sign * (metric(challenger, None) - metric(champion, None)))
    return {
        "test": test,
        "delta": delta,
        "ci": [float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))],
        "p_value": float((np.sum(deltas <= 0) + 1) / (bootstrap + 1)),
    }
