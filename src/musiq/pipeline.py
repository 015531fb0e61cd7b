"""Decode and preprocess images ahead of the model, in this process or in worker processes.

Each image becomes a :class:`~musiq.preprocessor.Prepared`: its input index, its name, and
either its tokens or the reason it cannot be scored. Per-image failures never stop the stream.
Workers run the same :meth:`Preprocessor.prepare <musiq.preprocessor.Preprocessor.prepare>`
as the one-image path; only the tokens travel back.
"""
from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from .decode import ImageInput, source_name
from .preprocessor import Prepared, Preprocessor
from .watchdog import exit_with_parent

__all__ = ["Prepared", "iter_prepared", "source_name"]


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


def iter_prepared(images: Iterable[ImageInput], preprocessor: Preprocessor, *, workers: int = 0,
                  prefetch: int | None = None) -> Iterator[Prepared]:
    """Prepared images in input order.

    ``workers`` = 0 prepares in this process, lazily; N > 0 uses N worker processes with at
    most ``prefetch`` (default 2 per worker) images in flight, so memory stays bounded.
    """
    if workers <= 0:
        for i, image in enumerate(images):
            yield preprocessor.prepare(i, image)
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
                inflight.append((i, image, pool.submit(preprocessor.prepare, i, image)))
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
                    inflight.append((j, img, pool.submit(preprocessor.prepare, j, img)))
            yield result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
