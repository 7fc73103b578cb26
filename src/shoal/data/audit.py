"""Label-quality audit: confident learning on out-of-fold probabilities lists likely label errors.

cleanlab is imported inside `label_issues`, so readers of `LABEL_ISSUES_FILE` (the report, the CLI) stay light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_LISTED = 200
LABEL_ISSUES_FILE = "label_issues.json"


def label_issues(
    texts: list[str], targets: list[str], labels: list[str], oof_proba: np.ndarray, rows: np.ndarray | None = None
) -> tuple[float, list[dict[str, Any]]]:
    """(estimated label-error rate, the most likely mislabelled examples, worst first), from the out-of-fold
    probabilities of the training rows `rows` (a large training set's sample: the rate is estimated on it, and only
    its rows are listed) or of every row (None). Each issue's `row` is its index in `texts`."""
    from cleanlab.filter import find_label_issues

    rows = np.arange(len(targets)) if rows is None else rows
    given = np.array([labels.index(targets[i]) for i in rows])
    present = np.unique(given)
    if len(present) < 2 or len(given) < 10:
        return 0.0, []
    # cleanlab wants every column to be a class that occurs; map to the classes present
    column = {c: i for i, c in enumerate(present)}
    proba = oof_proba[:, present]
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    ranked = find_label_issues(
        np.array([column[g] for g in given]),
        proba,
        return_indices_ranked_by="self_confidence",
        n_jobs=1,  # more would fork a multiprocessing.Pool from a process with threads: a child can hang for ever
    )
    issues = [
        {
            "row": int(rows[i]),
            "text": texts[rows[i]],
            "given": targets[rows[i]],
            "suggested": labels[int(present[proba[i].argmax()])],
            "given_probability": float(proba[i, column[given[i]]]),
        }
        for i in ranked[:MAX_LISTED]
    ]
    return len(ranked) / len(given), issues
