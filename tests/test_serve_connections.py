"""``musiq serve`` against connections that never finish their headers: a real server process
on 127.0.0.1 with a lowered open-file limit (started and stopped by pid), real sockets."""
from __future__ import annotations

import re
import resource
import socket
import time

import httpx
import pytest

pytest.importorskip("fastapi")
from serving import ServerProcess  # noqa: E402

#: The server's open-file limit here: low enough that HALF connections exhaust it.
NOFILE = 256
HALF = 300
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def open_half_requests(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(HALF_REQUEST)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing ``s``, or None if it is still open."""
    s.settimeout(timeout)
    got = b""
    try:
        while True:
            part = s.recv(4096)
            if not part:
                return got
            got += part
    except socket.timeout:
        return None
    except ConnectionResetError:
        return got


def test_half_requests_do_not_lock_out_healthz(ckpt_1class):
    # 32 MiB of bodies: up to 32 multipart files spooled to disk, descriptors kept spare.
    srv = ServerProcess("--model", str(ckpt_1class), "--max-body-memory-mb", "32",
                        preexec_fn=low_nofile)
    socks = []
    try:
        socks = open_half_requests(srv.port, HALF)
        time.sleep(1.0)  # let the server accept what it can
        started = time.monotonic()
        r = httpx.get(srv.url + "/healthz", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert time.monotonic() - started < 5
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
        m = re.search(r'musiq_rejected_total\{reason="connections"\} (\d+)', metrics)
        assert m and int(m.group(1)) >= 1, metrics
    finally:
        for s in socks:
            s.close()
        srv.stop()
    log = srv.output()
    assert log.count("Too many open files") <= 3, log[-3000:]
    assert len(log) < 20_000, log[-3000:]


def test_headers_and_idle_connections_time_out(ckpt_1class):
    srv = ServerProcess("--model", str(ckpt_1class), "--header-timeout", "1",
                        "--keep-alive-timeout", "1")
    try:
        half = open_half_requests(srv.port, 3)
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        started = time.monotonic()
        for s in half:
            reply = closed_by_server(s, 10)
            assert reply is not None and reply.startswith(b"HTTP/1.1 408"), reply
            assert b"headers did not arrive within 1 s" in reply
        assert closed_by_server(silent, 10) is not None
        assert time.monotonic() - started < 5
        # A keep-alive connection: one request answered, then idle past the limit.
        idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_by_server(idle, 5) is not None
        # A second request started on a kept-alive connection gets its own header deadline.
        again = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert again.recv(4096).startswith(b"HTTP/1.1 200")
        again.sendall(HALF_REQUEST)  # within the keep-alive time: uvicorn stops that clock
        reply = closed_by_server(again, 10)
        assert reply is not None and b"HTTP/1.1 408 Request Timeout" in reply, reply
        # A body the app answers without reading, dribbled a byte at a time after the answer.
        dribble = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        dribble.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 100000\r\n\r\nabc")
        assert dribble.recv(4096).startswith(b"HTTP/1.1 405")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 8:
                dribble.sendall(b"x")
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 5, "a dribbling client kept its connection"
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
        m = re.search(r'musiq_rejected_total\{reason="header_timeout"\} (\d+)', metrics)
        assert m and int(m.group(1)) >= 5, metrics
    finally:
        srv.stop()


def test_accept_errors_are_logged_at_a_bounded_rate(caplog, monkeypatch):
    """asyncio reports every failed accept(); 1,000 of them give one line, then one per
    window with the count left out (before: a traceback each, 123 MB of log in 40 s)."""
    import asyncio
    import errno

    from musiq.serve import connections

    clock = [100.0]
    monkeypatch.setattr(connections.time, "monotonic", lambda: clock[0])
    handler = connections.AcceptErrorLog(every_s=10)
    loop = asyncio.new_event_loop()
    context = {"message": "socket.accept() out of system resource",
               "exception": OSError(errno.EMFILE, "Too many open files")}
    try:
        with caplog.at_level("ERROR", logger="musiq.serve"):
            for _ in range(1000):
                handler(loop, context)
            clock[0] += 10.5
            handler(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("cannot accept connections: [Errno 24] Too many open files")
    assert "999 more like it in the last 10 s" in lines[1]
    assert not any(r.exc_info for r in caplog.records)  # no tracebacks
