"""Keep memory flat over inputs of many different sizes (docs/performance.md, "Memory").

Every new image size gives tensors of new sizes. glibc's malloc serves blocks of at least
its *mmap threshold* with ``mmap`` (given back to the system when freed), but it raises that
threshold to the size of every such block freed, up to 32 MiB: after a few passes every
activation comes from the heap, where blocks of ever-new sizes fragment it, and the heap is
never given back. ``predict_many`` over mixed-size JPEGs grew by about 2 MB per image this
way (417 -> 577 MB over 100 images, still rising; 473 MB -> 1.56 GB over 1,000 in the
report). :func:`bound_allocator` fixes the threshold (which also switches the raising off),
so large tensors are mapped and unmapped and the heap holds only small objects: the same
100 images stayed at 397-407 MB.

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
import sys

#: glibc's ``mallopt`` parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks of at least this many bytes are mapped (and unmapped when freed): glibc's own
#: starting value, kept instead of being raised with every large block freed.
MMAP_THRESHOLD_BYTES = 128 * 1024
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
    libc = _libc()
    if libc is None:
        return False
    ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    _state["applied"] = ok
    return ok


def unbound() -> None:
    """Leave glibc's defaults in this process (for measuring what the bounds save; it must be
    called before the first model is loaded)."""
    _state["disabled"] = True


def release() -> bool:
    """Give free heap memory back to the system now (``malloc_trim(0)``); True if any was."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0))
