"""What a task kind defines: its data (columns, validation, split rule) and how its models are judged
(cross-validation outputs, metrics with CIs, the floor, the paired test the gate runs).

The trainer, evaluator and gate only call these methods, so a new kind of model is one module here plus its
families; nothing downstream branches on the task's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE
from shoal.data.sets import TestSet, TrainSet
from shoal.data.split import assign_split
from shoal.fleet import ModelSpec
from shoal.tasks.columns import ColumnType, Typed, read_columns


@dataclass
class Validated:
    """A drop's rows in canonical columns, with the warnings found and rows left out by --skip-invalid."""

    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DataDefaults:
    """Defaults a task chose from a model's training data: fleet-file keys and their values (`settings`), the data
    profile they were chosen from, and why, in one line."""

    settings: dict[str, Any]
    profile: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Errors:
    """A version's errors against outcomes, as the drift check compares them (`shoal.monitor`): each `signed` error
    (outcome − answer) in the task's scale-free unit, the time its outcome belongs to (nanoseconds since the epoch),
    and `block`: how many consecutive times one answer's errors span (a forecast's horizon), the blocks the drift
    check compares them in."""

    name: str  # what erred, for the test's name ("forecast")
    signed: np.ndarray
    times: np.ndarray
    block: int

    def __len__(self) -> int:
        return len(self.signed)

    @classmethod
    def join(cls, parts: Sequence[Errors], limit: int) -> Errors:
        """The first `limit` errors of `parts` in their order (each part newest first)."""
        first = parts[0]
        signed = np.concatenate([part.signed for part in parts])[:limit]
        times = np.concatenate([part.times for part in parts])[:limit]
        return cls(first.name, signed, times, max(part.block for part in parts))


def require_columns(frame: pd.DataFrame, needed: list[str], source: str, keys: str) -> None:
    """Reject a drop that lacks a needed column (naming the columns it has and the fleet keys to set) or any row."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        present = ", ".join(str(c) for c in frame.columns if c != LINE) or "none"
        reason = f"missing column(s) {', '.join(missing)} (columns present: {present}); set {keys} in shoal.yaml"
        raise DropRejected(source, [Problem(None, reason)])
    if frame.empty:
        raise DropRejected(source, [Problem(None, "the file has no rows")])


class TaskKind(ABC):
    name: str
    #: the canonical columns a validated drop holds (besides `split`); empty when they depend on the data
    columns: tuple[str, ...]
    #: the type of each column a drop must have, keyed by the fleet-file field that names it (`text_column`);
    #: a field set to None (an optional column) is not required. Enforced by `read` (`shoal.tasks.columns`).
    column_types: ClassVar[tuple[tuple[str, ColumnType], ...]]
    #: metrics where lower is better (errors); every other metric is maximised
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    #: how the gate names the floor a first version must beat
    floor_name: ClassVar[str]
    #: the family whose version serves when no candidate beats the floor, for a task whose floor is itself a
    #: useful answer (a seasonal-naive forecast); None: the floor (the majority class, the mean) only sets the
    #: bar a first version must significantly clear, and a model with no candidate above it serves nothing
    serving_floor: ClassVar[str | None] = None
    #: (metric key, column title) of the quality numbers a report shows beside the fleet metric
    report_columns: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: larger families to suggest when nothing beats the floor (`shoal.advice`), with how to get them
    stronger_families: ClassVar[tuple[tuple[str, ...], str]] = ((), "")
    #: whether `shoal label` can label unlabelled inputs for this task with a teacher
    takes_teacher: ClassVar[bool] = False
    #: whether the outcomes of a version's answers arrive later as data (a forecast's realised values): the drift
    #: check then compares its served answers' errors (`served_errors`) with its errors on its test set
    #: (`test_errors`) instead of its inputs with its training inputs
    realised_outcomes: ClassVar[bool] = False
    #: what `after_fit` does, as the phase of training time it is reported under
    after_fit_phase: ClassVar[str] = "after_fit"

    # -- data --------------------------------------------------------------------------------------
    @abstractmethod
    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        """Check a drop's raw rows; raise DropRejected (nothing written) or return canonical rows.

        `stored` holds the rows of the model's drops so far (None before its first drop): a task whose schema
        is inferred from the first drop enforces it; a time series checks the new rows against the stored."""

    def declared_columns(self, spec: ModelSpec) -> dict[str, ColumnType]:
        """The drop's column names (as the fleet file sets them) and their types."""
        named = ((getattr(spec, key), kind) for key, kind in self.column_types)
        return {name: kind for name, kind in named if name is not None}

    def read(self, frame: pd.DataFrame, spec: ModelSpec, source: str) -> Typed:
        """A drop's declared columns as typed values (a missing column or an empty drop rejects it whole)."""
        declared = self.declared_columns(spec)
        require_columns(frame, list(declared), source, " / ".join(key for key, _ in self.column_types))
        return read_columns(frame, declared)

    @abstractmethod
    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        """The string hashed to place each example in train or test (stable as data grows)."""

    def assign_split(self, rows: pd.DataFrame, mode: str, test_fraction: float) -> pd.Series:
        """Each validated row's split: by `mode`, or for `auto` by a hash of its key."""
        return assign_split(self.split_keys(rows), mode, test_fraction)

    @abstractmethod
    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """All drops' rows -> (train, test, notes), de-duplicated and leak-free."""

    @abstractmethod
    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        """Assembled training rows -> what families fit on; raises ValueError when they cannot be trained."""

    @abstractmethod
    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        """Assembled test rows -> the frozen test set (its hash names it in every version)."""

    def data_defaults(self, train: TrainSet) -> DataDefaults | None:
        """Defaults for the spec's `data_chosen` keys, from a model's training data at its first training
        (`shoal.defaults` keeps them); None: this task's defaults do not depend on the data."""
        return None

    # -- judging -----------------------------------------------------------------------------------
    def better(self, metric: str, value: float) -> float:
        """A number that grows as `metric` improves (for ranking candidates and CV settings)."""
        return -value if metric in self.lower_is_better else value

    @abstractmethod
    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train, held-out) index pairs of the search on training data."""

    def search_sample(self, targets: Sequence[Any], rows: int, seed: int) -> np.ndarray | None:
        """The training rows (sorted indices, about `rows` of them) a search on large data cross-validates on, the
        final fit still using every row; None (the default): this task's search always uses every row."""
        return None

    @abstractmethod
    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        """A fitted fold model's outputs on held-out rows, aligned so folds can be stacked."""

    @abstractmethod
    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        """The metric of out-of-fold outputs."""

    @abstractmethod
    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        """What the gate compares on the test set: predicted label indices, or predicted values."""

    @abstractmethod
    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        """(every quality number with the fleet metric's 95% bootstrap CI, the gate outputs)."""

    @abstractmethod
    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        """Gate outputs of the floor a first version must significantly beat."""

    @abstractmethod
    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        """Is the challenger better on the same test rows? {test, delta (> 0: better), ci, p_value, ...}."""

    def feedback_rows(self, spec: ModelSpec, texts: list[str], labels: list[str], lines: list[int]) -> pd.DataFrame:
        """Raw drop rows that give these logged inputs their correct labels (feedback), in the columns the fleet
        file names; a task whose answers are not labels rejects feedback."""
        raise DropRejected("feedback", [Problem(None, f"a {self.name} model takes no label feedback")])

    def after_fit(
        self, predictor: Any, train: TrainSet, oof: np.ndarray, labels: list[str], rows: np.ndarray | None = None
    ) -> tuple[float | None, dict]:
        """Use the search's out-of-fold outputs once the final model is fit: (label-error rate, files to store).
        `oof` holds the outputs of the training rows `rows` (a search on a sample), or of every row (None)."""
        return None, {}

    def is_stale(self, champion_metrics: dict[str, Any], test: TestSet) -> bool:
        """Whether the production version's output is out of date on the current data whatever its quality
        (a forecast that starts before the latest observation): its own recipe refit on this data replaces it."""
        return False

    def stored_outputs(self, outputs: np.ndarray, test: TestSet) -> dict[str, Any] | None:
        """The gate outputs a version gave on `test`, as JSON stored in its artifact so the gate need not load and
        run it again on the same rows (`restored_outputs`); None: this task does not store them."""
        return None

    def restored_outputs(self, stored: dict[str, Any], test: TestSet) -> np.ndarray | None:
        """`stored_outputs` as gate outputs on `test`, or None unless they were computed on exactly its rows."""
        return None

    # -- watching production (for a task with `realised_outcomes`) ----------------------------------
    def served_errors(self, predictor: Any, rows: pd.DataFrame, spec: ModelSpec) -> Errors:
        """The errors of a version's answers whose outcomes `rows` (the model's assembled rows now) hold, newest
        first; empty when none has been realised yet."""
        raise NotImplementedError(f"a {self.name} model's answers have no realised outcomes")

    def test_errors(self, predictor: Any, test: TestSet) -> Errors:
        """The errors of a version on its frozen test set, in the unit of `served_errors`: the reference."""
        raise NotImplementedError(f"a {self.name} model's answers have no realised outcomes")

    def profile_inputs(self, test: TestSet) -> list[Any]:
        """Inputs for the latency profile, in the form a served request carries."""
        return test.inputs
