"""One failure classifier: what went wrong with one image, as the sentence its row carries.

Every path that turns a failure into an error row (the local engine's decode and model
stages, the Ray engine's decode tasks and actors, the service's decode workers and batcher,
training's data) calls :func:`describe_failure`, so the same failure reads the same everywhere:

* :class:`~musiq.errors.ImageError` (unreadable, unsupported, over a limit): its reason;
* out of memory, recognised by type (``MemoryError``, ``torch.OutOfMemoryError``), never by
  matching a message: ``out of memory while <stage>``;
* a worker process that died: ``worker process died while <stage>``;
* anything else: ``<stage> failed: <ExceptionType>: <first line>``.
"""
from __future__ import annotations

import sys

from .errors import ImageError, MusiqError

__all__ = ["NON_FINITE", "WORKER_DIED", "describe_failure", "is_out_of_memory"]

#: The error of an image whose logits are NaN or infinite (a broken checkpoint): such a value
#: is no score, nor valid JSON.
NON_FINITE = "the model returned non-finite logits (NaN or Inf); the checkpoint is broken"


def WORKER_DIED(stage: str) -> str:  # noqa: N802 - a message, spelled as a constant
    return f"worker process died while {stage}"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host or device out-of-memory errors, by type."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")  # no import: a decode worker may never load torch
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is None and torch is not None:
        oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def describe_failure(exc: BaseException, stage: str = "scoring") -> str:
    """The error text of an image whose ``stage`` (``decoding``, ``preprocessing``, ``the
    forward pass`` ...) raised ``exc``."""
    if isinstance(exc, ImageError):
        return exc.reason
    if is_out_of_memory(exc):
        return f"out of memory while {stage}"
    if isinstance(exc, MusiqError):
        return str(exc)
    first = str(exc).strip().split("\n")[0]
    return f"{stage} failed: {type(exc).__name__}" + (f": {first}" if first else "")
