"""Dynamic batching: gather concurrent images into one packed forward pass.

Requests hand tokenised images to :meth:`Batcher.submit` and await their logits. One task
per model takes the first waiting image, then keeps adding images that arrive within
``max_wait_ms`` until ``max_batch_size`` images or the scorer's token budget is reached, and
runs :meth:`Scorer.logits` in the model thread, off the event loop. Packing images of any
sizes into one pass is what :class:`~musiq.network.model.PackedBatch` is for; the result of each image
does not depend on its batch beyond float32 rounding.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ..tokens.preprocess import Tokens
from ..scorer import Scorer
from .prometheus import Registry

log = logging.getLogger("musiq.serve")


class BatcherStopped(RuntimeError):
    """The server is shutting down; the image was not scored."""


@dataclass
class _Item:
    tokens: Tokens
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Forms batches for one model; :meth:`start` inside the event loop, :meth:`stop` at exit."""

    def __init__(self, scorer: Scorer, executor: Executor, metrics: Registry, *,
                 max_batch_size: int = 8, max_wait_ms: float = 5.0) -> None:
        self.scorer = scorer
        self.executor = executor
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        # A deque, not an asyncio.Queue: a cancelled image must leave it at once, so that its
        # tokens (megabytes) are freed when its request times out, not when a batch gets to it.
        self._queue: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._carry: _Item | None = None  # did not fit the token budget of the last batch
        self._task: asyncio.Task | None = None
        #: Exponential moving average of model seconds per image, for Retry-After hints.
        self.seconds_per_image = 0.2
        #: ``time.monotonic()`` when the forward pass now running began; None when idle.
        self.busy_since: float | None = None

    @property
    def queued(self) -> int:
        """Images waiting for a batch (cancelled ones are removed at once)."""
        return len(self._queue) + (self._carry is not None)

    def stalled(self, limit_s: float) -> str | None:
        """Why this batcher cannot score now (its loop ended, or one forward pass has run
        longer than ``limit_s`` seconds), or None when it is ready."""
        if self._task is None or self._task.done():
            return "the scoring loop is not running"
        if self.busy_since is not None and time.monotonic() - self.busy_since > limit_s:
            return (f"one forward pass has run for {time.monotonic() - self.busy_since:.0f} s "
                    f"(limit {limit_s:g} s)")
        return None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name=f"batcher-{self.scorer.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        pending = [self._carry] if self._carry else []
        pending += list(self._queue)
        self._queue.clear()
        for item in pending:
            if not item.future.done():
                item.future.set_exception(BatcherStopped("server is shutting down"))

    async def submit(self, tokens: Tokens) -> np.ndarray:
        """Logits of one image, once its batch has run (cancel the await to drop it)."""
        future = asyncio.get_running_loop().create_future()
        item = _Item(tokens, future)
        self._queue.append(item)
        self._arrived.set()
        try:
            return await future
        except asyncio.CancelledError:
            self._drop(item)
            raise

    def _drop(self, item: _Item) -> None:
        """Forget a cancelled image that no batch has taken yet."""
        if self._carry is item:
            self._carry = None
            return
        try:
            self._queue.remove(item)
        except ValueError:  # already in a running batch: its row is discarded
            pass

    async def _next(self, timeout: float | None) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        while not self._queue:
            if timeout is not None and timeout <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                return None
            if timeout is not None:  # woken for an image that was dropped again: give up
                timeout = 0.0
        return self._queue.popleft()

    async def _collect(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        batch: list[_Item] = []
        budget = self.scorer.max_batch_tokens
        used = 0
        deadline = None
        while len(batch) < self.max_batch_size:
            item = await self._next(None if deadline is None else deadline - loop.time())
            if item is None:
                break
            if item.future.done():  # its request timed out or went away while queued
                continue
            if batch and used + len(item.tokens) > budget:
                self._carry = item
                break
            batch.append(item)
            used += len(item.tokens)
            if deadline is None:
                deadline = loop.time() + self.max_wait_s
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Images whose requests went away while the batch was filling are not run.
            batch = [i for i in await self._collect() if not i.future.done()]
            if not batch:
                continue
            started = time.perf_counter()
            self.busy_since = time.monotonic()
            try:
                logits = await loop.run_in_executor(
                    self.executor, self.scorer.logits, [i.tokens for i in batch])
            except Exception as e:  # a model failure fails this batch, not the server
                log.exception("forward pass of %d image(s) failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            finally:
                self.busy_since = None
            elapsed = time.perf_counter() - started
            self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * elapsed / len(batch)
            self.metrics.batches.inc(model=self.scorer.name, size=str(len(batch)))
            self.metrics.batch_size.observe(len(batch))
            self.metrics.model_seconds.observe(elapsed)
            for item, row in zip(batch, logits):
                if not item.future.done():
                    item.future.set_result(row)
