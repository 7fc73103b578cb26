"""Hash-based train/test assignment: an example's split depends only on its own normalized content."""

from __future__ import annotations

import hashlib

import pandas as pd


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for a string."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def assign_split(keys: pd.Series, mode: str, test_fraction: float) -> pd.Series:
    if mode in ("train", "test"):
        return pd.Series([mode] * len(keys), index=keys.index, dtype=object)
    return keys.map(lambda key: "test" if hash_fraction(key) < test_fraction else "train")
