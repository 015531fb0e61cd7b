"""Connection limits under uvicorn's h11 protocol: a header deadline, a cap on open
connections below the process's open-file limit, and accept errors logged at a bounded rate.

uvicorn closes a kept-alive connection that stays idle (``timeout_keep_alive``) but gives a
connection that has not finished its request headers all the time in the world: 1,100 half
request lines held every file descriptor of a process with the usual 1,024 limit, so nothing
else was accepted (``/healthz`` timed out) and asyncio logged one traceback per failed
accept. Here every request's headers must arrive within ``header_timeout_s`` of its first
byte (or of the connection opening), else the answer is 408 and the connection is closed (as
is one still sending, after that time, the body of a request answered without reading it);
and at most ``cap`` connections are open: one more evicts the oldest connection still
waiting for its headers (503), or is refused with 503 if every open connection has a
request in progress.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import resource
import time
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("musiq.serve")

#: File descriptors kept free for everything but client connections: the listening socket,
#: decode workers' pipes, log files, multipart spool files, one accept in flight.
FD_RESERVE = 64


def open_fds() -> int:
    """File descriptors this process has open now (64 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def connection_cap(requested: int, spool_files: int = 0) -> int:
    """``requested``, lowered to fit below the open-file limit (soft ``RLIMIT_NOFILE``) with
    the descriptors open now, :data:`FD_RESERVE` and ``spool_files`` (multipart files spooled
    to disk at once) to spare; at least 1."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - open_fds() - FD_RESERVE - spool_files))


def raw_answer(status: int, reason: str, detail: str) -> bytes:
    """A complete ``Connection: close`` answer with a JSON ``detail``, written below h11."""
    body = ('{"detail": "%s"}' % detail.replace('"', "'")).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class ConnectionGuard:
    """What all connections share: the cap, the header deadline, and the connections still
    waiting for their headers (oldest first, the ones evicted at the cap)."""

    def __init__(self, cap: int, header_timeout_s: float,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        if cap < 1 or header_timeout_s <= 0:
            raise ValueError("cap must be >= 1 and header_timeout_s > 0")
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.on_refusal = on_refusal or (lambda reason: None)
        self.live: set[GuardedH11Protocol] = set()
        self.waiting: collections.OrderedDict[GuardedH11Protocol, None] = \
            collections.OrderedDict()

    def protocol(self) -> type[H11Protocol]:
        """The protocol class to give uvicorn (``Config(http=...)``)."""
        guard = self
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with :class:`ConnectionGuard`'s limits."""

    guard: ConnectionGuard
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        g = self.guard
        g.live.add(self)
        self._start_header_clock()
        if len(g.live) <= g.cap:
            return
        victim = next((p for p in g.waiting if p is not self), None)
        if victim is None:
            self._refuse(503, "Service Unavailable", f"server busy: all {g.cap} connections "
                         "have a request in progress, retry later", "connections")
        else:
            victim._refuse(503, "Service Unavailable", "too many connections: this one had "
                           "not sent its request headers", "connections")

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes with no request in progress: the start of a next request, or the rest of a
        # body the app answered without reading (which uvicorn lets a client dribble forever).
        if self._header_timer is None and not self._in_progress():
            self._start_header_clock()
        super().data_received(data)
        if self._in_progress():
            self._stop_header_clock()

    def _in_progress(self) -> bool:
        """Whether a request's headers arrived and its answer is not complete."""
        return self.cycle is not None and not self.cycle.response_complete

    def _start_header_clock(self) -> None:
        self._header_timer = self.loop.call_later(self.guard.header_timeout_s,
                                                  self._headers_late)
        self.guard.waiting[self] = None

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.guard.waiting.pop(self, None)

    def _forget(self) -> None:
        self._stop_header_clock()
        self.guard.live.discard(self)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._in_progress() or self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._refuse(408, "Request Timeout", "the request headers did not arrive within "
                         f"{self.guard.header_timeout_s:g} s", "header_timeout")
        else:  # still sending the body of a request that was answered: nothing to say
            self._forget()
            self.transport.close()
            self.guard.on_refusal("header_timeout")

    def _refuse(self, status: int, reason: str, detail: str, label: str) -> None:
        self._forget()
        if not self.transport.is_closing():
            self.transport.write(raw_answer(status, reason, detail))
            self.transport.close()
        self.guard.on_refusal(label)


class AcceptErrorLog:
    """A loop exception handler that logs each kind of error at most once per ``every_s``
    seconds, with how many were left out: asyncio reports every failed ``accept()`` (out of
    file descriptors) with a traceback, which filled 123 MB of log in 40 s."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = collections.Counter()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        key = f"{context.get('message', '')}|{type(exc).__name__}|{getattr(exc, 'errno', '')}"
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            self._left_out[key] += 1
            return
        self._last[key] = now
        skipped = self._left_out.pop(key, 0)
        more = f" ({skipped} more like it in the last {self.every_s:g} s)" if skipped else ""
        if context.get("message", "").startswith("socket.accept() out of system resource"):
            log.error("cannot accept connections: %s; open-file limit %s%s", exc,
                      resource.getrlimit(resource.RLIMIT_NOFILE)[0], more)
            return
        if more:
            context = {**context, "message": context.get("message", "") + more}
        loop.default_exception_handler(context)
