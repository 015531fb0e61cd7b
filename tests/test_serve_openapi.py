"""``musiq serve`` as third-party clients see it: the OpenAPI document validated and answers
checked against it, /docs working offline, and ``--protect-all``. A real server process on
127.0.0.1 (started and stopped by pid), real HTTP."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
from openapi_schema_validator import OAS31Validator  # noqa: E402
from openapi_spec_validator import validate  # noqa: E402
from serving import ServerProcess  # noqa: E402

KEY = "openapi-key-5d0"
AUTH = {"X-API-Key": KEY}
SMALL = (GOLDEN / "images" / "coffee_30x20_q90.jpg").read_bytes()
CLOSED = ["/metrics", "/docs", "/openapi.json", "/", "/static/app.js", "/v1/models"]


@pytest.fixture(scope="module")
def server(ckpt_1class):
    srv = ServerProcess("--model", str(ckpt_1class), "--max-queue", "1", "--max-files", "1",
                        env={"MUSIQ_API_KEY": KEY})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def spec(server) -> dict:
    return httpx.get(server.url + "/openapi.json", timeout=30).json()


def schema_check(spec: dict, path: str, method: str, status: int, content_type: str,
                 instance) -> None:
    """Validate ``instance`` against what ``spec`` declares for that answer or body."""
    op = spec["paths"][path][method]
    if status:
        schema = op["responses"][str(status)]["content"][content_type]["schema"]
    else:
        schema = op["requestBody"]["content"][content_type]["schema"]
    # The document's components beside the schema, so that its "#/components/..." resolve.
    OAS31Validator({**schema, "components": spec.get("components", {})}).validate(instance)


def test_the_document_is_valid_openapi(spec):
    validate(spec)  # openapi-spec-validator: raises on an invalid document
    health = spec["paths"]["/healthz"]["get"]["responses"]
    assert {"200", "503"} <= set(health), health
    form = (spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]
            ["multipart/form-data"]["schema"])
    assert form["properties"]["file"]["minItems"] == 1


def test_answers_match_the_document(server, spec):
    with httpx.Client(timeout=60, headers=AUTH) as c:
        r = c.get(server.url + "/healthz")
        schema_check(spec, "/healthz", "get", r.status_code, "application/json", r.json())
        r = c.post(server.url + "/v1/score", files=[("file", ("a.jpg", SMALL))])
        assert r.status_code == 200
        schema_check(spec, "/v1/score", "post", 200, "application/json", r.json())
        r = c.post(server.url + "/v1/score", files=[("image", ("a.jpg", SMALL))])
        assert r.status_code == 400
        schema_check(spec, "/v1/score", "post", 400, "application/json", r.json())
    # The server answers 400 to a form without files; the document says so too.
    with pytest.raises(Exception, match="should be non-empty|is too short"):
        schema_check(spec, "/v1/score", "post", 0, "multipart/form-data", {"file": []})
    schema_check(spec, "/v1/score", "post", 0, "multipart/form-data", {"file": ["x"]})
    # /healthz's 503 is declared with the body a stalled server sends.
    schema_check(spec, "/healthz", "get", 503, "application/json",
                 {"status": "stalled", "detail": "decode worker processes are starting",
                  "models": ["m"]})


def test_docs_page_needs_nothing_from_elsewhere(server):
    r = httpx.get(server.url + "/docs", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    text = r.text
    assert "POST /v1/score" in text and "GET /healthz" in text and "/openapi.json" in text
    assert "<script" not in text and "cdn" not in text.lower()
    assert "https://" not in text and "http://" not in text
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_only_v1_needs_the_key_by_default(server):
    for path in CLOSED[:-1]:
        assert httpx.get(server.url + path, timeout=30).status_code == 200, path
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401


def test_protect_all_closes_every_route_but_healthz(ckpt_1class):
    srv = ServerProcess("--model", str(ckpt_1class), "--protect-all",
                        env={"MUSIQ_API_KEY": KEY})
    try:
        with httpx.Client(timeout=30) as c:
            for path in CLOSED:
                r = c.get(srv.url + path)
                assert r.status_code == 401, path
                assert r.json()["detail"].startswith("missing API key")
                assert c.get(srv.url + path, headers=AUTH).status_code == 200, path
            assert c.get(srv.url + "/healthz").status_code == 200
            text = c.get(srv.url + "/metrics", headers=AUTH).text
            assert f'musiq_rejected_total{{reason="unauthorized"}} {len(CLOSED)}' in text
    finally:
        srv.stop()


def test_protect_all_without_a_key_is_refused():
    out = subprocess.run([sys.executable, "-m", "musiq.cli.main", "serve", "--protect-all"],
                         capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "MUSIQ_API_KEY": ""})
    assert out.returncode == 2, out.stderr
    assert "protect_all needs an API key" in out.stderr and "Traceback" not in out.stderr


def test_help_says_decode_workers_are_processes():
    out = subprocess.run([sys.executable, "-m", "musiq.cli.main", "serve", "--help"],
                         capture_output=True, text=True, timeout=120)
    text = " ".join(out.stdout.split())
    assert "worker processes decoding" in text and "threads decoding" not in text
    for flag in ("--protect-all", "--max-body-memory-mb", "--header-timeout",
                 "--max-connections", "--keep-alive-timeout"):
        assert flag in text
