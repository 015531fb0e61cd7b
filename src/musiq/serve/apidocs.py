"""``GET /docs``: the OpenAPI description as one HTML page rendered on the server.

FastAPI's Swagger UI page loads its script and styles from a CDN: it is blank offline and
breaks the Content-Security-Policy of the server's pages. This page has no script, uses the
server's own stylesheet, and is made from the same document as ``/openapi.json``.
"""
from __future__ import annotations

import json
from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from .page import CSP

METHODS = ("get", "post", "put", "patch", "delete")


def _schema_text(schema: dict) -> str:
    return escape(json.dumps(schema, indent=1, sort_keys=True))


def _operation(method: str, path: str, op: dict) -> list[str]:
    out = [f'<section class="op"><h2><code>{method.upper()} {escape(path)}</code></h2>',
           f"<p>{escape(op.get('summary', ''))}</p>"]
    if op.get("description"):
        out.append(f"<p class=\"hint\">{escape(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        out.append("<h3>Parameters</h3><ul>")
        out += [f"<li><code>{escape(p['name'])}</code> ({escape(p.get('in', ''))}"
                f"{', required' if p.get('required') else ''}): "
                f"{escape(p.get('description', ''))}</li>" for p in params]
        out.append("</ul>")
    body = op.get("requestBody", {}).get("content", {})
    if body:
        out.append("<h3>Request body</h3><ul>")
        out += [f"<li><code>{escape(ct)}</code><pre>{_schema_text(c.get('schema', {}))}</pre>"
                f"</li>" for ct, c in body.items()]
        out.append("</ul>")
    out.append("<h3>Responses</h3><ul>")
    out += [f"<li><code>{escape(str(code))}</code> {escape(r.get('description', ''))}</li>"
            for code, r in sorted(op.get("responses", {}).items())]
    out.append("</ul></section>")
    return out


def render(spec: dict) -> str:
    """The whole page for an OpenAPI ``spec`` (every text escaped)."""
    info = spec.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    out = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{title}: API</title>",
           '<link rel="stylesheet" href="/static/style.css"></head><body><main>',
           f"<h1>{title} <span>HTTP API</span></h1>",
           f"<p>{escape(info.get('description', ''))} Machine-readable: "
           '<a href="/openapi.json">/openapi.json</a> (OpenAPI '
           f"{escape(spec.get('openapi', ''))}).</p>"]
    for path, ops in spec.get("paths", {}).items():
        for method in METHODS:
            if method in ops:
                out += _operation(method, path, ops[method])
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        out.append("<h2>Schemas</h2>")
        out += [f"<h3><code>{escape(name)}</code></h3><pre>{_schema_text(s)}</pre>"
                for name, s in schemas.items()]
    out.append("</main></body></html>")
    return "\n".join(out)


def register(app: FastAPI) -> None:
    """Serve :func:`render` of ``app.openapi()`` at ``/docs`` (create the app with
    ``docs_url=None``)."""
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(render(app.openapi()), headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})
