"""One OpenMP thread for the tree ensembles (HistGradientBoosting).

The search already runs folds in parallel processes, and a server runs one batch per executor slot; on a shared
2-core machine OpenMP's spinning threads on top of that made a small fit 10x slower. The controller is built once,
so entering the limit costs little on the prediction path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def single_thread() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="openmp"):
        yield
