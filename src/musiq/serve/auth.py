"""Optional API key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key")


def check_api_key(request: Request, expected: str | None) -> None:
    """Raise 401 unless no key is configured or the request presents it.

    The comparison is constant-time in the key's content (``hmac.compare_digest`` on bytes),
    so response timing does not reveal how much of a guess was right.
    """
    if expected is None:
        return
    given = presented_key(request)
    if given is None:
        raise HTTPException(
            401, "missing API key: this server needs one; send 'Authorization: Bearer KEY' "
                 "or 'X-API-Key: KEY'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(401, "wrong API key: the key sent is not this server's",
                            headers={"WWW-Authenticate": "Bearer"})


class KeyGuard:
    """Pure ASGI middleware for ``--protect-all``: every path but ``/healthz`` needs the key
    (the routes under ``/v1/`` check it themselves in any case)."""

    OPEN = frozenset({"/healthz"})

    def __init__(self, app, key: str) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("path") not in self.OPEN:
            try:
                check_api_key(Request(scope), self.key)
            except HTTPException as e:
                answer = JSONResponse({"detail": e.detail}, status_code=e.status_code,
                                      headers=e.headers)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
