"""Optional bearer-token auth. `require_token` is the FastAPI dependency for every route that changes state.

The token is read from the environment variable named by `workspace.server.token_env` (default
`SHOAL_TOKEN`) when the app is built; when it is unset, auth is off. Predictions are open unless
`workspace.server.protect_predict` is true. The token is never logged or echoed.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from shoal.serve.errors import ServeError
from shoal.serve.state import ServeState, get_state

bearer = HTTPBearer(
    auto_error=False, description="the token from the server's SHOAL_TOKEN (or workspace.server.token_env)"
)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization` header value as `bearer` reads it (None unless it is `Bearer <token>`); for
    the predict routes, which read their headers themselves."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


def check_token(state: ServeState, given: str | None) -> None:
    """Refuse with 401 unless `given` is the server's token (when one is configured)."""
    if state.token is None:
        return
    if given is None or not hmac.compare_digest(given.encode(), state.token.encode()):
        raise ServeError(
            401,
            "unauthorized",
            f"this endpoint needs 'Authorization: Bearer <token>' with the token set in ${state.token_env} "
            "on the server",
            {"WWW-Authenticate": "Bearer"},
        )


async def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """Refuse the request with 401 unless it carries the server's bearer token (when one is configured), and with 403
    when a browser says another site sent it (`Sec-Fetch-Site: cross-site`: a page elsewhere posting a form to this
    server, which would otherwise change its state whenever no token is configured)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ServeError(403, "forbidden", "a state change sent by another site is refused; send it from this server")
    check_token(get_state(request), credentials.credentials if credentials is not None else None)
