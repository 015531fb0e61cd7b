"""Decoded pixels handed from a worker process to the parent through shared memory.

A worker decodes an image into a :mod:`multiprocessing.shared_memory` block whose name the
parent chose, and returns only that name and the shape (a few bytes are pickled, not the
pixels). The parent maps the block, removes its name at once (the mapping lives as long as
the array that views it) and so leaves nothing in ``/dev/shm``; a :class:`Ledger` of the
names handed out removes the blocks of a worker that died before answering.
"""
from __future__ import annotations

import itertools
import mmap
import os
from multiprocessing import resource_tracker, shared_memory

import numpy as np

_SHM_DIR = "/dev/shm"
_counter = itertools.count()


def available() -> bool:
    """True where blocks can be mapped from ``/dev/shm`` (Linux); else pixels are pickled."""
    return os.path.isdir(_SHM_DIR) and os.name == "posix"


def new_name() -> str:
    """A name unique to this process and call (no leading slash)."""
    return f"musiq_{os.getpid()}_{next(_counter)}"


def write(name: str, rgb: np.ndarray) -> tuple[int, ...]:
    """(In a worker.) Put ``rgb`` in a new block called ``name``; returns its shape."""
    block = shared_memory.SharedMemory(name=name, create=True, size=max(rgb.nbytes, 1))
    try:
        np.ndarray(rgb.shape, np.uint8, buffer=block.buf)[...] = rgb
    finally:
        block.close()  # the block stays; the parent owns it now
    return tuple(rgb.shape)


def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """(In the parent.) The block's pixels as an array; the block's name is removed now and its
    memory freed with the array."""
    path = os.path.join(_SHM_DIR, name)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        mapped = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        unlink(name)
    n = int(np.prod(shape))
    return np.frombuffer(mapped, np.uint8, count=n).reshape(shape)


def unlink(name: str) -> None:
    """Remove a block by name, if it exists, and tell the resource tracker (which the worker
    that made it registered it with) that it is gone."""
    try:
        os.unlink(os.path.join(_SHM_DIR, name))
    except FileNotFoundError:
        return  # never made (its worker died first), or already removed
    try:
        resource_tracker.unregister("/" + name, "shared_memory")
    except Exception:  # pragma: no cover - tracker already gone at shutdown
        pass


class Ledger:
    """Names handed to workers and not yet taken; :meth:`clear` removes what is left."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._dead: set[str] = set()  # removed once; a dying pool's worker may still make them

    def issue(self) -> str:
        name = new_name()
        self._names.add(name)
        return name

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        self._names.discard(name)
        return take(name, shape)

    def clear(self) -> None:
        """Remove every block not taken (and again those removed by an earlier clear)."""
        for name in list(self._names) + list(self._dead):
            unlink(name)
        self._dead |= self._names
        self._names.clear()

    def __len__(self) -> int:
        return len(self._names)
