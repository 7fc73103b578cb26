"""Label-quality audit: confident learning on out-of-fold probabilities lists likely label errors.

cleanlab is imported inside `label_issues`, so readers of `LABEL_ISSUES_FILE` (the report, the CLI) stay light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_LISTED = 200
LABEL_ISSUES_FILE = "label_issues.json"


def label_issues(
    texts: list[str], targets: list[str], labels: list[str], oof_proba: np.ndarray
) -> tuple[float, list[dict[str, Any]]]:
    """(estimated label-error rate, the most likely mislabelled examples, worst first)."""
    from cleanlab.filter import find_label_issues

    given = np.array([labels.index(label) for label in targets])
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
            "row": int(i),
            "text": texts[i],
            "given": targets[i],
            "suggested": labels[int(present[proba[i].argmax()])],
            "given_probability": float(proba[i, column[given[i]]]),
        }
        for i in ranked[:MAX_LISTED]
    ]
    return len(ranked) / len(given), issues
