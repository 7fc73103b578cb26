"""A real Ray cluster on 127.0.0.1 for the scale-out tests (`shoal.train.local_cluster`, shared with the
benchmarks): a head and further nodes, each a `ray start --block` process in a session of its own, one CPU each,
torn down (only these processes) at the end."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from conftest import POSTGRES_ENV, SKIP_POSTGRES
from shoal.train.local_cluster import (  # noqa: F401 (LATENCY, NODE)
    LATENCY,
    NODE,
    Cluster,
    ClusterFailed,
    actor_processes,
    local_cluster,
)
from shoal.train.local_cluster import free_port as _free_port  # noqa: F401 (the scale-out tests' names)
from shoal.train.local_cluster import stop as _stop  # noqa: F401


@contextmanager
def ray_cluster(
    nodes: int = 2, node_args: list[str] | None = None, *, node_env: dict[int, dict[str, str]] | None = None
) -> Iterator[Cluster]:
    """A head node and `nodes - 1` more on 127.0.0.1, each started with `NODE + LATENCY` (or `node_args`); node `i`
    (0: the head) with `node_env[i]` added to its environment. A node that does not start fails the test."""
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(local_cluster(nodes, node_args, node_env))
        except ClusterFailed as error:
            pytest.fail(str(error))
        yield cluster


@contextmanager
def postgres_databases() -> Iterator[Callable[[], str]]:
    """`make()`: a new PostgreSQL database's URL (each dropped at the end); skips the test without PostgreSQL."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(SKIP_POSTGRES)
    from shoal.registry.database import temporary_database

    with ExitStack() as stack:
        yield lambda: stack.enter_context(temporary_database(base, "shoal_ray"))
