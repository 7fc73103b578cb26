"""Optional bearer-token auth. `require_token` is the FastAPI dependency for every route that changes state.

The token is read from the environment variable named by `workspace.server.token_env` (default
`SHOAL_TOKEN`) when the app is built; when it is unset, auth is off. Predictions are open unless
`workspace.server.protect_predict` is true. The token is never logged or echoed.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.serve.errors import ServeError
from shoal.serve.state import get_state

bearer = HTTPBearer(
    auto_error=False, description="the token from the server's SHOAL_TOKEN (or workspace.server.token_env)"
)


def check_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    state = get_state(request)
    if state.token is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), state.token.encode()):
        raise ServeError(
            401,
            "unauthorized",
            f"this endpoint needs 'Authorization: Bearer <token>' with the token set in ${state.token_env} "
            "on the server",
            {"WWW-Authenticate": "Bearer"},
        )


async def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """Refuse the request with 401 unless it carries the server's bearer token (when one is configured)."""
    check_token(request, credentials)
