"""Keep memory flat over inputs of many different sizes (docs/performance.md, "Memory").

Every new image size gives tensors of new sizes. glibc's malloc serves blocks of at least
its *mmap threshold* with ``mmap`` (given back to the system when freed), but it raises that
threshold to the size of every such block freed, up to 32 MiB: after a few passes every
activation comes from the heap, where blocks of ever-new sizes fragment it, and the heap is
never given back. ``predict_many`` over 100 JPEGs of new sizes grew 417 -> 623 MB this way,
still rising (473 MB -> 1.56 GB over 1,000 in the report).

By default the engine gives the free heap back every 8 images (:func:`release`,
``malloc_trim``: 402-458 MB over the same 100 images, at no measurable cost).
:func:`bound_allocator` goes further, fixing the threshold (which also switches the raising
off) so that large tensors are mapped and unmapped and the heap holds only small objects
(376-407 MB), at the cost of page faults (1.14-1.17x the time on 2 loaded shared cores): it
is applied when ``$MUSIQ_MMAP_THRESHOLD`` (bytes) is set. Figures: docs/performance.md.

The other per-shape caches are bounded by construction: oneDNN creates no primitive on the
CPU path (the model's convolutions and matmuls do not go through it; its cache holds at most
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` = 1024 entries anyway); a compiled stem (``compile``)
sees padded buckets only (:meth:`musiq.scorer.Scorer._embed`: at most
``log2(stem_chunk / 256) + 1`` shapes, and torch's recompile limit stops it beyond that); the
preprocessing keeps no per-size cache.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's ``mallopt`` parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks of at least this many bytes are mapped (and unmapped when freed): glibc's own
#: starting value, kept instead of being raised with every large block freed.
#: ``$MUSIQ_MMAP_THRESHOLD`` (bytes) asks for it (see :func:`bound_if_asked`); 0 leaves
#: glibc's defaults alone.
MMAP_THRESHOLD_BYTES = 128 * 1024
ENV_THRESHOLD = "MUSIQ_MMAP_THRESHOLD"
#: Free memory at the top of the heap above this is given back to the system.
TRIM_THRESHOLD_BYTES = 4 * 1024 * 1024

_state = {"applied": False, "disabled": False}


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and other C libraries have no mallopt: nothing to bound there.
    return libc if hasattr(libc, "mallopt") else None


def bound_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once; later calls do nothing).

    Returns True when the bounds are in force (glibc on Linux), False elsewhere or after
    :func:`unbound`. Called when a model is loaded; safe to call any number of times.
    """
    if _state["disabled"]:
        return False
    if _state["applied"]:
        return True
    threshold = _threshold()
    libc = _libc()
    if libc is None or not threshold:
        return False
    ok = (libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    _state["applied"] = ok
    return ok


def _threshold() -> int:
    text = os.environ.get(ENV_THRESHOLD, "").strip()
    try:
        value = int(text) if text else MMAP_THRESHOLD_BYTES
    except ValueError:
        value = MMAP_THRESHOLD_BYTES
    # glibc refuses values above HEAP_MAX/2 (32 MiB on 64-bit); 0 (or less): no bound.
    return min(max(value, 0), 32 * 2**20)


def unbound() -> None:
    """Leave glibc's defaults in this process (for measuring what the bounds save; it must be
    called before the first model is loaded)."""
    _state["disabled"] = True


def release() -> bool:
    """Give free heap memory back to the system now (``malloc_trim(0)``); True if any was."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0))


def bound_if_asked() -> bool:
    """:func:`bound_allocator` when ``$MUSIQ_MMAP_THRESHOLD`` is set (called when a model is
    loaded); False otherwise."""
    return bool(os.environ.get(ENV_THRESHOLD)) and bound_allocator()
