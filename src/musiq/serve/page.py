"""The web page at ``/``: three fixed files shipped as package data, read once."""
from __future__ import annotations

from importlib import resources

from fastapi import HTTPException
from fastapi.responses import Response

FILES = {"index.html": "text/html; charset=utf-8",
         "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8",
         "favicon.svg": "image/svg+xml"}

#: The page talks only to this server and shows only local blob: thumbnails.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Page:
    """Serves the page's files by name from a fixed table (never a path from the request)."""

    def __init__(self) -> None:
        root = resources.files(__package__) / "static"
        self._content = {name: (root / name).read_bytes() for name in FILES}

    def response(self, name: str) -> Response:
        if name not in self._content:
            raise HTTPException(404, f"no such file: {name}")
        return Response(self._content[name], media_type=FILES[name],
                        headers={"Content-Security-Policy": CSP,
                                 "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-cache"})
