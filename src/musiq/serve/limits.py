"""Admission control and bounded reading of request bodies.

Memory is bounded by refusing work, never by queueing it: a request first takes one slot of
the image queue before its body is read, and the slots for its other images once the body is
parsed; when the queue is full the answer is 503 with ``Retry-After``.
"""
from __future__ import annotations

import math
from typing import AsyncIterator

from fastapi import HTTPException, Request


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


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks, raising 413 as soon as more than ``limit`` bytes arrived
    (a chunked upload declares no length, so counting is the only check)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        if chunk:
            yield chunk
