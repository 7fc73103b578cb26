"""The data a model is trained and judged on, as its task assembled it from the stored drops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TestSet:
    """The frozen test set as every candidate sees it."""

    inputs: list[Any]  # what a predictor takes: texts, or feature rows (dicts)
    truth: np.ndarray  # classification: index into `labels`; regression: the target values
    hash: str
    labels: list[str] = field(default_factory=list)  # classification: the global label list (train ∪ test)
    context: Any = None  # what else the task's scoring needs (forecasting: the series and backtest windows)
    judged_by: str | None = None  # whose labels these are when not people's (a cold start's LLM answers)


@dataclass
class TrainSet:
    """The training rows as families fit on them: inputs and their targets (labels, values or series ids)."""

    inputs: list[Any]
    targets: list[Any]
