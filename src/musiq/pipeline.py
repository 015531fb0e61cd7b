"""Decode and preprocess images ahead of the model, in this process or in worker processes.

Each image becomes a :class:`Prepared`: its input index, its name, and either its tokens or
the reason it cannot be scored. Per-image failures never stop the stream. Workers run the
same :func:`musiq.decode.load_image` and :func:`musiq.preprocess.preprocess` as the one-image
path; only the tokens travel back.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable, Iterator

from .decode import ImageInput, load_image
from .errors import ImageError
from .preprocess import PreprocessConfig, Tokens, preprocess
from .watchdog import exit_with_parent


@dataclass
class Prepared:
    """One input after decoding and preprocessing: ``tokens`` or ``error`` is set."""

    index: int
    source: str
    tokens: Tokens | None = None
    error: str | None = None

    def __len__(self) -> int:
        return len(self.tokens) if self.tokens is not None else 0


@dataclass(frozen=True)
class PrepareOptions:
    """What decoding and preprocessing need (picklable, sent to workers)."""

    config: PreprocessConfig
    max_pixels: int | None
    exif_transpose: bool


def source_name(image: ImageInput) -> str:
    """How an input is named in results: its path, or ``<type>`` for in-memory data."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"


def prepare(index: int, image: ImageInput, options: PrepareOptions) -> Prepared:
    """Decode and preprocess one image; any failure becomes ``error`` (never raises)."""
    source = source_name(image)
    try:
        rgb = load_image(image, max_pixels=options.max_pixels,
                         exif_transpose=options.exif_transpose)
        return Prepared(index, source, tokens=preprocess(rgb, options.config, source))
    except ImageError as e:
        return Prepared(index, source, error=e.reason)
    except MemoryError:
        return Prepared(index, source, error="out of memory while decoding/preprocessing")
    except Exception as e:  # one odd file must not stop a run over thousands
        return Prepared(index, source, error=f"{type(e).__name__}: {e}")


def _init_worker() -> None:
    # Ctrl-C is the parent's to handle (it shuts the pool down); no traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()  # no orphans after the parent is killed (kill -9)
    # Preprocessing is NumPy element-wise work: one thread per worker process.
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch always importable here
        pass


def iter_prepared(images: Iterable[ImageInput], options: PrepareOptions, *, workers: int = 0,
                  prefetch: int | None = None) -> Iterator[Prepared]:
    """Prepared images in input order.

    ``workers`` = 0 prepares in this process, lazily; N > 0 uses N worker processes with at
    most ``prefetch`` (default 2 per worker) images in flight, so memory stays bounded.
    """
    if workers <= 0:
        for i, image in enumerate(images):
            yield prepare(i, image, options)
        return
    limit = max(prefetch or 2 * workers, 1)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    inflight: deque[tuple[int, ImageInput, Future]] = deque()
    try:
        it = enumerate(images)
        exhausted = False
        while True:
            while not exhausted and len(inflight) < limit:
                try:
                    i, image = next(it)
                except StopIteration:
                    exhausted = True
                    break
                inflight.append((i, image, pool.submit(prepare, i, image, options)))
            if not inflight:
                return
            i, image, fut = inflight.popleft()
            try:
                result = fut.result()
            except BrokenProcessPool:
                # A worker died (killed for memory, say): this image fails; the images still
                # in flight are prepared again by a new pool.
                result = Prepared(i, source_name(image),
                                  error="worker process died while preparing this image")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                           initializer=_init_worker)
                retry = [(j, img) for j, img, _ in inflight]
                inflight.clear()
                for j, img in retry:
                    inflight.append((j, img, pool.submit(prepare, j, img, options)))
            yield result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
