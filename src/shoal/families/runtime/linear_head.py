"""A multinomial logistic-regression head on fixed embeddings, stored as plain arrays (`.npy`, no pickles).

Fitting uses scikit-learn; predicting is numpy only (softmax of `x @ W.T + b`), with BLAS held to one thread: a
multi-threaded BLAS on a product this small is up to 100x slower on a busy machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from shoal.families.base import read_json, write_json

WEIGHTS_FILE = "head_weights.npy"
BIAS_FILE = "head_bias.npy"
LABELS_FILE = "labels.json"


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


class LinearHead:
    """`predict_proba(x) = softmax(x @ weights.T + bias)`, one row of `weights` per label."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: list[str]) -> None:
        if weights.shape != (len(labels), weights.shape[1]) or bias.shape != (len(labels),):
            raise ValueError(f"head shapes {weights.shape}, {bias.shape} do not fit {len(labels)} labels")
        self.weights, self.bias, self.labels = weights.astype(np.float32), bias.astype(np.float32), labels

    @classmethod
    def fit(cls, x: np.ndarray, targets: Sequence[str], c: float, seed: int) -> LinearHead:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, list(targets))
        labels = [str(label) for label in model.classes_]
        weights, bias = model.coef_, model.intercept_
        if len(labels) == 2:  # binary: one logit z for labels[1]; softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]
            weights, bias = np.vstack([np.zeros_like(weights), weights]), np.concatenate([[0.0], bias])
        return cls(weights, bias, labels)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with _threadpools().limit(limits=1, user_api="blas"):
            logits = x.astype(np.float32) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        return (logits / logits.sum(axis=1, keepdims=True)).astype(np.float64)

    def n_parameters(self) -> int:
        return int(self.weights.size + self.bias.size)

    def save(self, folder: Path) -> None:
        np.save(folder / WEIGHTS_FILE, self.weights, allow_pickle=False)
        np.save(folder / BIAS_FILE, self.bias, allow_pickle=False)
        write_json(folder / LABELS_FILE, self.labels)

    @classmethod
    def load(cls, folder: Path) -> LinearHead:
        weights = np.load(folder / WEIGHTS_FILE, allow_pickle=False)
        bias = np.load(folder / BIAS_FILE, allow_pickle=False)
        return cls(weights, bias, [str(label) for label in read_json(folder / LABELS_FILE)])
