"""The family contract: fit on a dataset, predict for a batch of raw inputs, save to / load from a folder.

A family is a recipe with a search grid; `fit` returns a `Predictor`. Adding a family is one module that
subclasses `Family` and decorates it with `@register`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

Params = dict[str, Any]


class Predictor(ABC):
    """A fitted model. `labels` name the columns of `predict_proba`'s output: the class names of a classifier;
    for other tasks the columns of their output (a regressor's `value`, `lower`, `upper`)."""

    labels: list[str]
    #: True when a fitted predictor pickles between the trainer's own processes (the final fit runs in a pool
    #: worker); False: the trainer loads it from the saved artifact instead
    portable: ClassVar[bool] = False

    @abstractmethod
    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """Output for a batch, shape (len(inputs), len(labels)): class probabilities for a classifier. The
        server's batcher and the latency profile call this for every task."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write everything needed by `Family.load` into `folder` (no pickles)."""

    @abstractmethod
    def n_parameters(self) -> int:
        """Number of learned numbers (weights, vocabulary entries, priors)."""

    def warm_up_inputs(self) -> list[Any]:
        """One input the server predicts before it serves a freshly loaded version."""
        return ["warm-up request"]

    def check_inputs(self, inputs: Sequence[Any]) -> list[str]:
        """Why a request's inputs cannot be predicted (the server answers 422 with these), or []."""
        return []

    def predict(self, inputs: Sequence[str]) -> list[str]:
        proba = self.predict_proba(inputs)
        return [self.labels[i] for i in proba.argmax(axis=1)]

    def together_key(self) -> Hashable | None:
        """Predictors with the same key (not None) predict several batches, their own or each other's, as one call
        of `predict_together` (`predict_batches`); None: this one predicts its batches alone."""
        return None

    @classmethod
    def predict_together(cls, predictors: Sequence[Predictor], inputs: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        """`predictors[i].predict_proba(inputs[i])` for every i, for predictors of one `together_key`."""
        return [predictor.predict_proba(batch) for predictor, batch in zip(predictors, inputs, strict=True)]


def together_groups(predictors: Sequence[Predictor]) -> list[list[int]]:
    """The predictors' indices in groups: those of one `together_key` (not None) together, every other alone."""
    alone: list[list[int]] = []
    groups: dict[Hashable, list[int]] = {}
    for i, predictor in enumerate(predictors):
        key = predictor.together_key()
        if key is None:
            alone.append([i])
        else:
            groups.setdefault(key, []).append(i)
    return [*alone, *groups.values()]


def predict_group(predictors: Sequence[Predictor], inputs: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """One group's outputs (`together_groups`): its one predictor's `predict_proba`, or one `predict_together`."""
    if len(predictors) == 1:
        return [predictors[0].predict_proba(inputs[0])]
    return predictors[0].predict_together(predictors, inputs)


def predict_batches(predictors: Sequence[Predictor], inputs: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """`predictors[i].predict_proba(inputs[i])` for every i (the same numbers), the batches of predictors with the
    same `together_key` predicted by one `predict_together` call: a server of many models runs many batches of a
    few inputs each, which cost mostly the fixed costs of each call."""
    outputs: list[np.ndarray | None] = [None] * len(predictors)
    for group in together_groups(predictors):
        answers = predict_group([predictors[i] for i in group], [inputs[i] for i in group])
        for i, output in zip(group, answers, strict=True):
            outputs[i] = output
    return outputs  # type: ignore[return-value]


class Family(ABC):
    """A named recipe for a model: its task, its search grid and how to fit and load it."""

    name: ClassVar[str]
    task: ClassVar[str]
    #: relative training cost (1 = a TF-IDF linear model); used to order candidates
    cost: ClassVar[float] = 1.0
    #: declared expected costs, so the trainer can skip a family that cannot meet a model's budgets
    expected_p95_ms: ClassVar[float] = 5.0
    expected_size_mb: ClassVar[float] = 50.0
    expected_train_seconds_per_1k_rows: ClassVar[float] = 5.0
    #: whether `fit` honours `params["class_weight"] == "balanced"` (each class weighted inversely to its share); the
    #: search adds it to every setting when the model's `class_weight` is balanced
    class_weighted: ClassVar[bool] = False
    #: for a quantized variant, the family it quantizes: eligible only within tolerance of that one's metric
    quantized_from: ClassVar[str | None] = None

    def grid(self, n_rows: int) -> list[Params]:
        """Hyper-parameter settings to search with cross-validation on the training data."""
        return [{}]

    @abstractmethod
    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> Predictor:
        """Fit on training data only."""

    @abstractmethod
    def load(self, folder: Path) -> Predictor:
        """Load what `Predictor.save` wrote."""


class FeatureFamily(Family):
    """A family whose model is a fitted featurizer and a head fitted on its features. Families with the same
    `features_key` build the same features from the same rows, so the search fits the featurizer once per fold
    (on that fold's training part only) and once on all training rows, and shares it between their settings."""

    #: families with equal keys compute identical features from identical rows
    features_key: ClassVar[str]

    @abstractmethod
    def fit_features(self, inputs: Sequence[Any]) -> tuple[Any, Any]:
        """(the fitted featurizer, the features of `inputs`); the same for every family of this `features_key`."""

    def features(self, featurizer: Any, inputs: Sequence[Any]) -> Any:
        """The features of `inputs` by a featurizer `fit_features` fitted (a fold's held-out rows in the search)."""
        return featurizer.transform(list(inputs))

    @abstractmethod
    def fit_head(self, features: Any, targets: Sequence[Any], params: Params, seed: int, start: Any = None) -> Any:
        """A head fitted on features (with `predict_proba` and `classes_`); its solver begins at `start` when given
        (what `head_start` made), else from zero."""

    def head_start(self, earlier: Predictor, featurizer: Any, targets: Sequence[Any]) -> Any:
        """Where the final fit's solver may begin on `featurizer`'s features and `targets`' classes: the solution of
        `earlier`, a version of this family fitted on earlier data, moved onto these features; None (the default,
        and whenever `earlier` does not fit): from zero. The optimum is the same either way, only the path to it
        shorter. The search never uses it: its folds must not begin from a model that saw their held-out rows."""
        return None

    def fit_heads(self, features: Any, targets: Sequence[Any], grid: list[Params], seed: int) -> list[Any]:
        """A head per setting of `grid`, in its order, on one fold's features (the search's fits). Each is fitted on
        its own here; a family whose solver can start from the previous setting's solution may do so."""
        return [self.fit_head(features, targets, params, seed) for params in grid]

    @abstractmethod
    def assemble(self, featurizer: Any, head: Any) -> Predictor:
        """The predictor of a fitted featurizer and head."""

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any], params: Params, seed: int) -> Predictor:
        featurizer, features = self.fit_features(inputs)
        return self.assemble(featurizer, self.fit_head(features, targets, params, seed))


def class_weight(params: Params) -> str | None:
    """The scikit-learn `class_weight` of a setting: "balanced" or None."""
    return "balanced" if params.get("class_weight") == "balanced" else None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
