"""Optional API key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


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
