"""Why a model cannot be trained as asked; light to import, so the CLI can name it without the training stack."""

from __future__ import annotations


class TrainError(RuntimeError):
    """A model that cannot be trained as asked (no data, no test set, ...)."""
