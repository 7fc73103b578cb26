"""Text classification's defaults chosen from the training data: the metric and the class weighting, and the
families.

Classes are *imbalanced* when the largest has at least `IMBALANCED_RATIO` times the rows of the smallest (a binary
task from 56/44 on: accuracy is kept for classes close to balanced, where it says nearly what macro-F1 says). Then
accuracy mostly measures the majority class and the majority floor scores its share, so a model that finds the rare
classes may fail to beat the floor significantly on accuracy. The default metric is then macro-F1, every class
counting the same; it is preferred to balanced accuracy (macro recall) because it also counts precision, so a model
cannot gain by over-predicting a rare class, which class weighting pushes it towards. The families that support it
then weigh each class inversely to its share (`class_weight: balanced`). Otherwise the default metric is accuracy,
unweighted.

With fewer than `SMALL_ROWS` training rows and the embeddings extra installed, `minilm-logreg` joins the default
families: frozen sentence embeddings carry what a few hundred texts cannot teach TF-IDF (Banking77 with 10 rows per
intent: 85.4% vs 74.9% accuracy, benchmarks/RESULTS.md), at ~20 s of encoding on 2 cores for such data.
"""

from __future__ import annotations

from collections import Counter

from shoal.data.sets import TrainSet
from shoal.families.runtime.minilm_source import trainable
from shoal.tasks.base import DataDefaults
from shoal.tasks.text_classification.spec import SMALL_ROWS, STATIC_FAMILIES

IMBALANCED_RATIO = 1.25


def profile(train: TrainSet) -> dict[str, float | int]:
    """Rows, classes, the largest class's share and its ratio to the smallest, and the mean text length."""
    counts = Counter(train.targets)
    rows = len(train.targets)
    return {
        "rows": rows,
        "classes": len(counts),
        "majority_share": round(max(counts.values()) / rows, 4),
        "largest_to_smallest": round(max(counts.values()) / min(counts.values()), 3),
        "mean_chars": round(sum(len(text) for text in train.inputs) / rows, 1),
    }


def imbalanced(shape: dict[str, float | int]) -> bool:
    return shape["largest_to_smallest"] >= IMBALANCED_RATIO


def choose(train: TrainSet) -> DataDefaults:
    shape = profile(train)
    facts = (
        f"{shape['rows']} training rows, {shape['classes']} classes, the largest {shape['largest_to_smallest']:.2f}x "
        f"the smallest (share {shape['majority_share']:.2f}), mean {shape['mean_chars']:.0f} characters"
    )
    if imbalanced(shape):
        settings = {"metric": "macro_f1", "class_weight": "balanced"}
        why = f"{facts}: imbalanced (largest >= {IMBALANCED_RATIO:g}x the smallest)"
    else:
        settings = {"metric": "accuracy", "class_weight": "none"}
        why = f"{facts}: balanced enough (largest < {IMBALANCED_RATIO:g}x the smallest)"
    if shape["rows"] < SMALL_ROWS and trainable():
        settings["families"] = [*STATIC_FAMILIES, "minilm-logreg"]
        why += f"; small (< {SMALL_ROWS:,} rows) with the embeddings extra installed: minilm-logreg added"
    return DataDefaults(settings, shape, why)
