"""``musiq serve``'s memory bound on request bodies over all connections, as clients meet it:
a real server process on 127.0.0.1 (started and stopped by pid), real sockets."""
from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
from serving import ServerProcess  # noqa: E402

SMALL = (GOLDEN / "images" / "coffee_30x20_q90.jpg").read_bytes()
DECLARED = 900_000  # two of them fit the 2 MiB budget, a third does not


@pytest.fixture(scope="module")
def server(ckpt_1class):
    srv = ServerProcess("--model", str(ckpt_1class), "--max-upload-mb", "1",
                        "--max-body-memory-mb", "2", "--body-timeout", "30")
    yield srv
    srv.stop()


def stalled_upload(port: int, headers: str, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + first)
    return s


def reply_of(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    got = b""
    try:
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            part = s.recv(4096)
            if not part:
                break
            got += part
    except (socket.timeout, ConnectionResetError):
        pass
    return got


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_bodies_over_all_connections_are_bounded(server):
    holders = [stalled_upload(server.port, f"Content-Length: {DECLARED}\r\n", b"\xff\xd8")
               for _ in range(2)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        third = stalled_upload(server.port, f"Content-Length: {DECLARED}\r\n", b"\xff\xd8")
        reply = reply_of(third, 5)
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"retry-after: 1" in reply.lower()
        assert b"request bodies being received or waiting" in reply
        assert time.monotonic() - started < 3  # at once, not after a body timeout
        # A chunked upload declares nothing: it is counted as it arrives.
        chunked = stalled_upload(server.port, "Transfer-Encoding: chunked\r\n",
                                 b"".join(chunk(bytes(64 * 1024)) for _ in range(8)))
        reply = reply_of(chunked, 5)
        assert reply.startswith(b"HTTP/1.1 503"), reply
    finally:
        for s in holders:
            s.close()
    # The stalled clients went away: their share is given back and uploads are taken again.
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(server.url + "/v1/score", content=SMALL, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["score"] is not None
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert re.search(r'musiq_rejected_total\{reason="body_memory"\} 2$', metrics, re.M), metrics
    assert 'reason="queue_full"' not in metrics


def test_readiness_503_is_not_a_refusal(ckpt_1class):
    """A server whose decode workers are not started answers /healthz 503; that used to count
    as musiq_rejected_total{reason="queue_full"} and fire queue-full alerts."""
    from fastapi.testclient import TestClient

    from musiq.scorer import load
    from musiq.serve.app import create_app

    app = create_app([load(str(ckpt_1class), device="cpu")])
    # No lifespan: the decode workers never start, so the server is not ready.
    client = TestClient(app, base_url="http://127.0.0.1")
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "stalled"
    text = client.get("/metrics").text
    assert re.search(r'musiq_requests_total\{route="/healthz",status="503"\} 1', text)
    assert "musiq_rejected_total{" not in text, text
    assert re.search(r"# HELP musiq_rejected_total .*body_memory.*header_timeout", text)
