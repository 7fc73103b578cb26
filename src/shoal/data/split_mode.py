"""Where a drop's rows go: `train`, `test` (an official test split, kept as is) or `auto` (by a hash of each
example, see `split`). Its own module so the CLI can offer the choice without importing pandas."""

from __future__ import annotations

from typing import Literal

SplitMode = Literal["train", "test", "auto"]
