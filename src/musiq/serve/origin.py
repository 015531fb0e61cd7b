"""Host and Origin checks: a web page must not be able to use a local server.

A key-less server on 127.0.0.1 is reachable by any page the user opens: the browser posts to
it (a "simple" multipart request needs no CORS preflight) and, after DNS rebinding
(``evil.example`` resolving to 127.0.0.1), even reads the answers. Both arrive with a Host or
Origin the server does not own, so both are refused with 403.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def default_hosts(bound: str) -> tuple[str, ...]:
    """Host names accepted when none are configured: the bound address (any for 0.0.0.0)."""
    if bound in WILDCARD:
        return ("*",)
    return LOOPBACK if bound in LOOPBACK else (bound,)


def host_name(value: str) -> str:
    """``name:port`` or ``[v6]:port`` -> name (lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OriginGuard:
    """Pure ASGI middleware: 403 unless Host is allowed and Origin (when sent) is the
    server's own or allowed."""

    def __init__(self, app, hosts: tuple[str, ...], origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}
        self.origins = {o.lower().rstrip("/") for o in origins}

    def _refusal(self, scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            return (f"Host '{host}' is not allowed (allowed: {', '.join(sorted(self.hosts))}; "
                    "start the server with --allowed-host NAME to add one)")
        origin = headers.get("origin")
        if origin is None or origin.lower().rstrip("/") in self.origins:
            return None
        parts = urlsplit(origin.lower())
        if origin == "null" or parts.netloc != host.lower():
            return (f"Origin '{origin}' is not this server's; cross-site requests are refused "
                    "(start the server with --allowed-origin ORIGIN to allow one)")
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            reason = self._refusal(scope)
            if reason is not None:
                await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
