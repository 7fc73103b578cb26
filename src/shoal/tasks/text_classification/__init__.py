"""Text classification: a text column and a label column; one label per text."""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The form two texts must share to count as the same example."""
    return _SPACE.sub(" ", text).strip().lower()
