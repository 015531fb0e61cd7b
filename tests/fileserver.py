"""A local HTTP file server for download tests (127.0.0.1 only), with Range support and
switchable faults: drop the connection after N bytes, ignore Range, send an MD5 header."""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    """What the server does; tests change it between requests.

    ``files``: URL path -> content. ``cut_after``: close the connection after sending this
    many body bytes (once per listed count, first in first out). ``ranges``: honour Range.
    ``stall_after``: likewise, but go silent for 3 s first (the client must time out).
    ``md5``: send ``x-goog-hash: md5=...`` (value override in ``md5_override``).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: list[int] = field(default_factory=list)
    ranges: bool = True
    stall_after: list[int] = field(default_factory=list)
    md5: bool = False
    md5_override: bytes | None = None
    trickle_s: float | None = None  # send the body one byte per this many seconds
    endless: bool = False  # no Content-Length, and data until the client hangs up
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)
    log: list[tuple[str, str | None, int]] = field(default_factory=list)  # path, Range, status


def _handler(b: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            if self.path in b.redirects:
                b.log.append((self.path, rng, 302))
                self.send_response(302)
                self.send_header("Location", b.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if b.endless and self.path in b.files:
                b.log.append((self.path, rng, 200))
                self.send_response(200)
                self.end_headers()
                self.close_connection = True
                try:
                    while True:
                        self.wfile.write(b"\0" * 65536)
                except OSError:
                    return
            data = b.files.get(self.path)
            if data is None:
                b.log.append((self.path, rng, 404))
                self.send_error(404, "Not Found")
                return
            start = 0
            status = 200
            if rng and b.ranges:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    b.log.append((self.path, rng, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = data[start:]
            b.log.append((self.path, rng, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range",
                                 f"bytes {start}-{len(data) - 1}/{len(data)}")
            if b.md5:
                digest = b.md5_override or hashlib.md5(data).digest()
                self.send_header("x-goog-hash",
                                 f"crc32c=AAAAAA==,md5={base64.b64encode(digest).decode()}")
            self.end_headers()
            if b.trickle_s is not None:
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(b.trickle_s)
                except OSError:
                    pass
                self.close_connection = True
                return
            if b.cut_after or b.stall_after:
                stall = not b.cut_after
                n = (b.cut_after or b.stall_after).pop(0)
                self.wfile.write(body[:n])
                self.wfile.flush()
                if stall:
                    time.sleep(3)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-file (the tests' dropped and resumed downloads) is
        expected: no traceback on stderr for it."""
        import sys
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FileServer:
    """``with FileServer() as srv: srv.url`` -> ``http://127.0.0.1:PORT/``."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.httpd = _Server(("127.0.0.1", 0), _handler(self.behaviour))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
