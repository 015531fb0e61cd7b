"""Admission control and bounded reading of request bodies.

Memory held in request bodies is bounded twice, by refusing work rather than queueing it:

- Over all connections, the bytes of bodies being received or waiting for their answer are
  at most ``max_body_memory`` (:class:`BodyBudget`). A request takes its declared
  Content-Length from the budget before reading a byte (a chunked upload takes each chunk as
  it arrives) and gives it back when it is answered; a request that does not fit gets 503
  with ``Retry-After`` at once. When the budget empties, freed memory is handed back to the
  system (``malloc_trim``, glibc), so a burst of uploads does not leave the process large.
- One body is at most ``max_upload_bytes`` (413, from Content-Length before reading, or
  counted while reading a chunked upload).

The body is read whole, under ``body_timeout_s``, before the request takes any slot of the
image queue (:class:`Admission`); when the queue is full the answer is 503 with
``Retry-After``. A client that stops sending therefore holds its connection and its share of
the body budget for at most ``body_timeout_s``, and never a queue slot.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import AsyncIterator

from fastapi import HTTPException, Request

#: The ``reason`` label of ``musiq_rejected_total`` for a refusal, kept in the request's scope.
REFUSAL_KEY = "musiq.refusal"


def refused(request: Request, reason: str, error: HTTPException) -> HTTPException:
    """``error``, after recording ``reason`` for the metrics (see ``MetricsMiddleware``)."""
    request.scope[REFUSAL_KEY] = reason
    return error


class QueueFull(HTTPException):
    """503: the image queue is full; ``retry_after`` is a hint in whole seconds."""

    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(
            503, f"server busy: the queue of {max_queue} image(s) is full, retry later",
            headers={"Retry-After": str(retry_after)})


class Admission:
    """Counts images admitted and not yet answered, up to ``max_queue``."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.depth = 0

    def acquire(self, n: int, seconds_per_image: float) -> None:
        """Take ``n`` slots or raise :class:`QueueFull` (nothing taken)."""
        if self.depth + n > self.max_queue:
            # Time to drain the queue at the measured rate, at least 1 s, at most a minute.
            wait = math.ceil(self.depth * seconds_per_image)
            raise QueueFull(min(max(wait, 1), 60), self.max_queue)
        self.depth += n

    def release(self, n: int) -> None:
        self.depth -= n


def mebibytes(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"request body is larger than the limit of {mebibytes(limit)}")


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse early (before reading) a body whose Content-Length is above ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPException(400, "invalid Content-Length header") from None
        if size > limit:
            raise too_large(limit)


async def limited_stream(request: Request, limit: int,
                         hold: "BodyHold | None" = None) -> AsyncIterator[bytes]:
    """The body's chunks, raising 413 as soon as more than ``limit`` bytes arrived
    (a chunked upload declares no length, so counting is the only check). With ``hold``, the
    declared length is taken from its budget before reading, and every byte beyond it as it
    arrives (503 when the budget cannot take it)."""
    if hold is not None:
        hold.cover(request, declared_length(request) or 0)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        if hold is not None:
            hold.cover(request, received)
        if chunk:
            yield chunk


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class BodyBudgetFull(HTTPException):
    """503: the bodies held over all connections would exceed the budget."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            503, f"server busy: request bodies being received or waiting already hold most of "
                 f"this server's {mebibytes(limit)} for them, retry later",
            headers={"Retry-After": "1"})


class BodyBudget:
    """Bytes of request bodies held over all requests, at most ``limit`` (``hold()`` for
    each request; the event loop is the only user, so no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._trim = _malloc_trim()
        self._freed_since_trim = 0

    def hold(self) -> "BodyHold":
        return BodyHold(self)

    def _take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def _give(self, n: int) -> None:
        self.held -= n
        self._freed_since_trim += n
        # Large bodies leave glibc's heap fragmented and its mmap threshold raised (3.35 GB
        # stayed after 100 uploads of 32 MB): hand the pages back once nothing is held, or
        # once a whole budget's worth was freed under constant load.
        due = (self._freed_since_trim >= TRIM_AFTER_BYTES if self.held == 0
               else self._freed_since_trim >= self.limit)
        if due and self._trim:
            self._freed_since_trim = 0
            self._trim(0)


#: Bytes freed (once the budget is empty) before memory is handed back to the system.
TRIM_AFTER_BYTES = 8 * 1024 * 1024


class BodyHold:
    """One request's share of a :class:`BodyBudget`; ``release()`` gives all of it back."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def cover(self, request: Request, total: int) -> None:
        """Hold at least ``total`` bytes, or raise :class:`BodyBudgetFull` (503)."""
        more = total - self.bytes
        if more <= 0:
            return
        if not self.budget._take(more):
            raise refused(request, "body_memory", BodyBudgetFull(self.budget.limit))
        self.bytes = total

    def release(self) -> None:
        n, self.bytes = self.bytes, 0
        if n:
            self.budget._give(n)


def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None
