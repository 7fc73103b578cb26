"""A `Predictor` around a fitted scikit-learn classifier, saved with skops (trusted types only)."""

from __future__ import annotations

import copy
import importlib
import sys
import zipfile
from collections.abc import Hashable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import sklearn
from scipy.special import expit
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from shoal.families.base import Predictor, read_json, write_json
from shoal.families.runtime.text_features import Entries, FastTfidf, entries_together

MODEL_FILE = "model.skops"
#: a text vectorizer's vocabulary is saved as these two arrays (its terms in index order, UTF-8, and where each ends)
#: instead of a dict: skops writes a dict entry by entry into its JSON schema and rebuilds it node by node, which made
#: loading a Banking77 TF-IDF model 1-2 s of Python holding the GIL (a serving event loop stalled during hot swaps)
_TERMS, _TERM_ENDS = "_shoal_terms_utf8", "_shoal_term_ends"
_STEPS: dict[type, str] = {Pipeline: "steps", FeatureUnion: "transformer_list"}


def _import_skops_io() -> ModuleType:
    """`skops.io` without torch. Importing it lists every scikit-learn estimator, which imports every sklearn
    module, among them the array-API adapter for torch, which imports torch whenever it is installed (hundreds of MB
    mapped into a server that only loads artifacts). Unless torch is loaded already, it is hidden for that import:
    `import torch` then raises ImportError, which scikit-learn's walk over its modules skips. Runs once, when this
    module is first imported (in a server: by the first model load, in its loader thread; nothing else a server runs
    imports torch)."""
    if "torch" in sys.modules:
        return importlib.import_module("skops.io")
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("skops.io")
    finally:
        del sys.modules["torch"]


sio = _import_skops_io()
UntrustedTypesFound: type[Exception] = importlib.import_module("skops.io.exceptions").UntrustedTypesFoundException


class UntrustedArtifact(RuntimeError):
    """The artifact holds types this family does not expect; it is not loaded."""


class SklearnPredictor(Predictor):
    """Wraps any fitted scikit-learn classifier with `predict_proba` and `classes_`."""

    #: skops types beyond its defaults that this family's estimators contain
    extra_trusted: ClassVar[tuple[str, ...]] = ()
    portable = True

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.labels = [str(label) for label in estimator.classes_]
        self._transforms, self._final, self._lean, self._tfidf = _inference_steps(estimator)

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        """Pickled (between the trainer's processes only) as its estimator: the inference steps are rebuilt."""
        return type(self), (self.estimator,)

    def predict_proba(self, inputs: Sequence[str]) -> np.ndarray:
        # the fitted pipeline, minus scikit-learn's per-call input and parameter validation and the joblib
        # dispatch of FeatureUnion: same numbers, a third of the time for a single text. A pipeline whose every step
        # has a lean path calls no scikit-learn code at all, so it does not set scikit-learn's config either
        if self._lean:
            return self._steps(inputs)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self._steps(inputs)

    def _steps(self, inputs: Sequence[str]) -> np.ndarray:
        features: Any = list(inputs)
        for transform in self._transforms:
            features = transform(features)
        return np.asarray(self._final(features), dtype=np.float64)

    def together_key(self) -> Hashable | None:
        """A pipeline of TF-IDF features and a lean head predicts together with those whose features are weighted
        alike (`entries_together`)."""
        return None if self._tfidf is None else (type(self), *self._tfidf.together_key())

    @classmethod
    def predict_together(cls, predictors: Sequence[Predictor], inputs: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        lean = [p for p in predictors if isinstance(p, SklearnPredictor) and p._tfidf is not None]
        if len(lean) != len(predictors):
            return super().predict_together(predictors, inputs)
        fasts = [p._tfidf for p in lean if p._tfidf is not None]
        entries = entries_together(fasts, [list(batch) for batch in inputs])
        return [np.asarray(p._final(e), dtype=np.float64) for p, e in zip(lean, entries, strict=True)]

    def save(self, folder: Path) -> None:
        dump_skops(self.estimator, folder / MODEL_FILE)
        write_json(folder / "labels.json", self.labels)

    def n_parameters(self) -> int:
        return count_parameters(self.estimator)

    @classmethod
    def load(cls, folder: Path) -> SklearnPredictor:
        path = folder / MODEL_FILE
        predictor = cls(load_skops(path, cls.extra_trusted))
        if predictor.labels != read_json(folder / "labels.json"):
            raise UntrustedArtifact(f"{path}: classes do not match labels.json")
        return predictor


def dump_skops(estimator: Any, path: Path) -> None:
    sio.dump(_with_term_arrays(estimator), path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)


def load_skops(path: Path, extra_trusted: tuple[str, ...]) -> Any:
    """Load a skops file holding only skops' default trusted types and `extra_trusted` (never anything else)."""
    try:
        estimator = sio.load(path, trusted=list(extra_trusted))  # audits every type before it builds anything
    except UntrustedTypesFound:
        untrusted = set(sio.get_untrusted_types(file=path)) - set(extra_trusted)
        raise UntrustedArtifact(f"{path} contains types shoal does not load: {', '.join(sorted(untrusted))}") from None
    return _with_vocabularies(estimator, path)


def _with_term_arrays(estimator: Any) -> Any:
    """`estimator` with each text vectorizer's vocabulary as two arrays; the fitted estimator itself is unchanged
    (the pipeline, union and vectorizers are copied shallowly)."""
    if attr := _STEPS.get(type(estimator)):
        outer = copy.copy(estimator)
        setattr(outer, attr, [(name, _with_term_arrays(step)) for name, step in getattr(estimator, attr)])
        return outer
    vocabulary = getattr(estimator, "vocabulary_", None)
    if not isinstance(estimator, CountVectorizer) or not isinstance(vocabulary, dict):
        return estimator
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    if [vocabulary[term] for term in terms] != list(range(len(terms))):
        return estimator  # not the 0..n-1 numbering a fitted vectorizer has: saved as the dict it is
    vectorizer = copy.copy(estimator)
    del vectorizer.vocabulary_
    setattr(vectorizer, _TERMS, np.frombuffer("".join(terms).encode("utf-8"), dtype=np.uint8))
    setattr(vectorizer, _TERM_ENDS, np.cumsum([len(term) for term in terms], dtype=np.int64))
    return vectorizer


def _with_vocabularies(estimator: Any, path: Path) -> Any:
    """Rebuild, in place, the vocabulary dicts `_with_term_arrays` saved as arrays. A Python loop, so a thread that
    loads a model leaves the interpreter to the others at every switch interval."""
    for part in _parts(estimator):
        if not isinstance(part, CountVectorizer) or not hasattr(part, _TERMS):
            continue
        text, ends = getattr(part, _TERMS).tobytes().decode("utf-8"), getattr(part, _TERM_ENDS).tolist()
        if ends != sorted(ends) or (ends and ends[-1] != len(text)):
            raise UntrustedArtifact(f"{path}: a vocabulary's term offsets do not match its terms")
        vocabulary, start = {}, 0
        for index, end in enumerate(ends):
            vocabulary[text[start:end]] = index
            start = end
        if len(vocabulary) != len(ends):
            raise UntrustedArtifact(f"{path}: a vocabulary lists a term twice")
        delattr(part, _TERMS)
        delattr(part, _TERM_ENDS)
        part.vocabulary_ = vocabulary
    return estimator


def _steps(estimator: Any) -> list[tuple[str, Any]]:
    """The (name, step) pairs of a pipeline or feature union; [] for any other estimator."""
    attr = _STEPS.get(type(estimator))
    return list(getattr(estimator, attr)) if attr else []


def _parts(estimator: Any) -> list[Any]:
    """The estimator and every step of its pipelines and feature unions, recursively."""
    return [estimator, *(part for _, step in _steps(estimator) for part in _parts(step))]


def _inference_steps(estimator: Any) -> tuple[list[Any], Any, bool, FastTfidf | None]:
    """The fitted pipeline as a list of transform callables and the final classifier's `predict_proba`, whether
    every one of them is a lean path that calls no scikit-learn code, and for a pipeline of TF-IDF features and a lean
    head only, its features (`FastTfidf`, which can make several batches' features as one)."""
    if not isinstance(estimator, Pipeline):
        return [], *_proba(estimator), None
    transforms, lean, fast = [], True, None
    for _, step in estimator.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        fast = FastTfidf(step) if FastTfidf.supports(step) else None
        if fast is not None:
            transforms.append(fast.transform)
            continue
        lean = False
        if isinstance(step, FeatureUnion) and step.transformer_weights is None:
            parts = [_transform(part) for _, part in step.transformer_list if part not in ("drop", "passthrough")]
            transforms.append(lambda x, parts=parts: sp.hstack([part(x) for part in parts], format="csr"))
        else:
            transforms.append(_transform(step))
    final, lean_final = _proba(estimator.steps[-1][1])
    if fast is not None and lean_final:  # the lean head takes the TF-IDF matrix's parts (`Entries`), not built
        transforms[-1] = fast.entries
    alone = fast if fast is not None and lean and lean_final and len(transforms) == 1 else None
    return transforms, final, lean and lean_final, alone


def _proba(classifier: Any) -> tuple[Any, bool]:
    """The classifier's `predict_proba`, and whether it is a lean path: for a LogisticRegression, its own steps
    (scores, then softmax as `sklearn.utils.extmath.softmax` computes it, or for two classes the logistic function as
    its `_predict_proba_lr` does) without the per-call input validation and array-namespace dispatch, which cost more
    than the arithmetic for a few texts."""
    if type(classifier) is not LogisticRegression or classifier.coef_.ndim != 2:
        return classifier.predict_proba, False
    # C-ordered once, not at each batch (`ravel` of the transposed F-ordered view copies it)
    coef_t, intercept = np.ascontiguousarray(classifier.coef_.T), classifier.intercept_
    if len(classifier.classes_) <= 2:
        if coef_t.shape[1] != 1:
            return classifier.predict_proba, False

        def binary(features: Any) -> np.ndarray:
            if isinstance(features, Entries):
                features = features.matrix()
            positive = expit((np.asarray(features @ coef_t) + intercept).reshape(-1))
            return np.stack([1 - positive, positive], axis=1)

        return binary, True

    def proba(features: Any) -> np.ndarray:
        # a sparse matrix times a dense one is dense
        scores = features.times(coef_t) if isinstance(features, Entries) else np.asarray(features @ coef_t)
        scores += intercept
        scores -= np.maximum.reduce(scores, axis=1, keepdims=True)  # `max` and `sum` without their wrappers
        np.exp(scores, out=scores)
        scores /= np.add.reduce(scores, axis=1, keepdims=True)
        return scores

    return proba, True


def _transform(step: Any) -> Any:
    """The step's `transform`, or the same numbers faster (`FastTfidf`) for a TF-IDF vectorizer it reproduces."""
    return FastTfidf(step).transform if FastTfidf.supports(step) else step.transform


def count_parameters(estimator: Any) -> int:
    """Learned numbers in a (possibly nested) scikit-learn estimator."""
    total = 0
    for attr in ("coef_", "intercept_", "class_prior_", "idf_", "a_", "b_"):
        value = getattr(estimator, attr, None)
        if isinstance(value, np.ndarray):
            total += value.size
    vocabulary = getattr(estimator, "vocabulary_", None)
    if isinstance(vocabulary, dict):
        total += len(vocabulary)
    children: list[Any] = []
    for attr in ("steps", "transformer_list"):
        children += [step for _, step in getattr(estimator, attr, [])]
    children += list(getattr(estimator, "calibrated_classifiers_", []))
    children += list(getattr(estimator, "calibrators", []))
    for attr in ("estimator", "base_estimator"):
        child = getattr(estimator, attr, None)
        if child is not None and hasattr(child, "get_params") and not isinstance(child, str):
            children.append(child)
    return total + sum(count_parameters(child) for child in children)
