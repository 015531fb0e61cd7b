"""Run a stream of prepared images through the engine in packed passes, in input order.

Images arrive decoded (and tokenised, on the NumPy path) from :func:`musiq.tokens.pipeline.
iter_prepared`; within a window they are sorted by token count and packed into passes of at
most ``batch_size`` images and ``max_tokens`` padded token slots (:func:`musiq.engine.batching.
schedule`); results leave in input order. On CUDA a pass is launched before the previous
one's logits are read back (the plan's ``depth``), so decoding, copies and compute overlap.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from .batching import Reorder, schedule
from .memory import release
from ..tokens.preprocessor import Prepared
from .runtime import Engine, Failure

__all__ = ["run_stream"]

#: Images scored between two hand-backs of free heap pages to the system.
RELEASE_EVERY = 8


def run_stream(engine: Engine, prepared: Iterable[Prepared], *, batch_size: int,
               max_tokens: int | None = None, window: int | None = None
               ) -> Iterator[tuple[Prepared, np.ndarray | Failure]]:
    """``(item, logits row or Failure)`` for every prepared image, in input order; an image
    that failed before the model carries its own error as a :class:`Failure`."""
    max_tokens = max_tokens or engine.plan.max_batch_tokens
    window = window or 4 * batch_size
    order: Reorder[tuple[Prepared, object]] = Reorder()

    def gate(stream: Iterable[Prepared]) -> Iterator[Prepared]:
        for item in stream:  # failed images skip the model: they are ready at once
            if item.ok:
                yield item
            else:
                order.put(item.index, (item, Failure(item.error or "not scored")))

    since_release = 0

    def settle(done: Sequence[Prepared], launched: object) -> None:
        nonlocal since_release
        for item, row in zip(done, engine.finish(done, launched)):
            order.put(item.index, (item, row))
        # Images of many sizes leave the heap fragmented (glibc keeps freed activations):
        # hand the free pages back every few images, which keeps memory flat at no
        # measurable cost (docs/performance.md, benchmarks/bench_memory.py).
        since_release += len(done)
        if since_release >= RELEASE_EVERY:
            release()
            since_release = 0

    depth = engine.plan.depth
    inflight: list[tuple[Sequence[Prepared], object]] = []
    for batch in schedule(gate(prepared), len, batch_size=batch_size, max_tokens=max_tokens,
                          window=window, window_tokens=4 * max_tokens):
        inflight.append((batch, engine.launch(batch)))
        while len(inflight) > depth:
            settle(*inflight.pop(0))
        yield from order.ready()  # type: ignore[misc]
    for done, launched in inflight:
        settle(done, launched)
    yield from order.ready()  # type: ignore[misc]
    if len(order):  # pragma: no cover - every index is put exactly once
        raise RuntimeError("internal error: results left unordered")
