"""shoal: run a fleet of small, task-specific models in production.

`shoal.Client` and `shoal.AsyncClient` (HTTP clients of `shoal serve`) are imported on first use, so
`import shoal` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "ShoalError", "__version__"]

if TYPE_CHECKING:
    from shoal.client import AsyncClient, Client, ShoalError


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client", "ShoalError"):
        from shoal import client

        return getattr(client, name)
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")
