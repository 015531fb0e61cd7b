"""Group images of mixed sizes into forward passes by token count.

The encoder runs on sequences padded to the longest image of a batch, so a batch costs
``images x (longest + 1)`` token slots (the +1 is CLS). Sorting the images of a window by
length before cutting it into batches keeps that padding small; a cap on the slots bounds the
memory of one pass. Results are put back in input order by the caller (:class:`Reorder`).
"""
from __future__ import annotations

from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


def batch_cost(lengths: list[int]) -> int:
    """Token slots a batch of these sequence lengths occupies in the encoder (CLS included)."""
    return len(lengths) * (max(lengths) + 1) if lengths else 0


def cut(items: list[T], length: Callable[[T], int], *, batch_size: int,
        max_tokens: int) -> list[list[T]]:
    """Sort ``items`` by length and cut them into batches of at most ``batch_size`` items and
    ``max_tokens`` padded token slots. An item longer than ``max_tokens`` goes alone."""
    if batch_size < 1 or max_tokens < 1:
        raise ValueError("batch_size and max_tokens must be positive")
    batches: list[list[T]] = []
    current: list[T] = []
    longest = 0
    for item in sorted(items, key=length):
        n = length(item)
        grown = max(longest, n)
        if current and (len(current) >= batch_size
                        or (len(current) + 1) * (grown + 1) > max_tokens):
            batches.append(current)
            current, grown = [], n
        current.append(item)
        longest = grown
    if current:
        batches.append(current)
    return batches


def schedule(items: Iterable[T], length: Callable[[T], int], *, batch_size: int,
             max_tokens: int, window: int, window_tokens: int | None = None
             ) -> Iterator[list[T]]:
    """Batches from a stream: read up to ``window`` items (or ``window_tokens`` valid tokens),
    sort that window by length and cut it (see :func:`cut`).

    Memory stays bounded by the window; every item appears in exactly one batch.
    """
    if window < 1:
        raise ValueError("window must be positive")
    pending: list[T] = []
    tokens = 0
    for item in items:
        pending.append(item)
        tokens += length(item)
        if len(pending) >= window or (window_tokens is not None and tokens >= window_tokens):
            yield from cut(pending, length, batch_size=batch_size, max_tokens=max_tokens)
            pending, tokens = [], 0
    if pending:
        yield from cut(pending, length, batch_size=batch_size, max_tokens=max_tokens)


class Reorder(Generic[T]):
    """Hold results that arrive out of order; release them in index order (0, 1, 2 ...)."""

    def __init__(self) -> None:
        self._done: dict[int, T] = {}
        self._next = 0

    def put(self, index: int, value: T) -> None:
        if index < self._next or index in self._done:
            raise ValueError(f"result {index} given twice")
        self._done[index] = value

    def ready(self) -> Iterator[T]:
        """The results that can be released now, in order."""
        while self._next in self._done:
            yield self._done.pop(self._next)
            self._next += 1

    def __len__(self) -> int:
        """Results held back, waiting for an earlier one."""
        return len(self._done)
