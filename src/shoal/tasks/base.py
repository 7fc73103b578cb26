"""What a task kind defines: the columns of its data, how a drop is validated, how examples are split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pandas as pd

from shoal.fleet import ModelSpec


@dataclass
class Validated:
    """A drop's rows in canonical columns, with the warnings found and rows left out by --skip-invalid."""

    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class TaskKind(ABC):
    name: str
    #: the canonical columns a validated drop holds (besides `split`)
    columns: tuple[str, ...]

    @abstractmethod
    def validate(self, frame: pd.DataFrame, spec: ModelSpec, source: str, *, skip_invalid: bool) -> Validated:
        """Check a drop's raw rows; raise DropRejected (nothing written) or return canonical rows."""

    @abstractmethod
    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        """The string hashed to place each example in train or test (stable as data grows)."""

    @abstractmethod
    def assemble(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """All drops' rows -> (train, test, notes), de-duplicated and leak-free."""
