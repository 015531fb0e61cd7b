"""Decode and preprocess images ahead of the model, in this process or in worker processes.

Each image becomes a :class:`~musiq.tokens.preprocessor.Prepared`: its input index, its name, and
either its tokens or the reason it cannot be scored. Per-image failures never stop the stream.
Workers run the same :meth:`Preprocessor.prepare <musiq.tokens.preprocessor.Preprocessor.prepare>`
as the one-image path; only the tokens travel back.

With ``pixels=True`` (the torch backend: tokens are made on the scoring device) workers run
:meth:`Preprocessor.decode <musiq.tokens.preprocessor.Preprocessor.decode>` and hand the decoded
uint8 pixels over through shared memory (:mod:`musiq.tokens.shm`): only a block name and a shape
are pickled; the parent maps the block and removes its name at once, and every block of a
worker that died is removed too, so nothing is left in ``/dev/shm``.
"""
from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from . import shm
from ..decoding.decode import ImageInput, source_name
from ..failures import WORKER_DIED
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


def _decode_to_shm(preprocessor: Preprocessor, index: int, image: ImageInput,
                   name: str) -> Prepared:
    """(In a worker.) Decode into the shared block ``name``; the Prepared carries its shape."""
    item = preprocessor.decode(index, image)
    if item.pixels is not None:
        try:
            item.shm = (name, shm.write(name, item.pixels))  # type: ignore[attr-defined]
            item.pixels = None
        except OSError:  # /dev/shm full: the pixels are pickled instead
            pass
    return item


def iter_prepared(images: Iterable[ImageInput], preprocessor: Preprocessor, *, workers: int = 0,
                  prefetch: int | None = None, pixels: bool = False) -> Iterator[Prepared]:
    """Prepared images in input order.

    ``workers`` = 0 prepares in this process, lazily; N > 0 uses N worker processes with at
    most ``prefetch`` (default 2 per worker) images in flight, so memory stays bounded.
    ``pixels``: decode only (items carry ``pixels``, through shared memory from workers).
    """
    if workers <= 0:
        for i, image in enumerate(images):
            yield preprocessor.decode(i, image) if pixels else preprocessor.prepare(i, image)
        return
    pool = _Pool(preprocessor, workers, pixels)
    limit = max(prefetch or 2 * workers, 1)
    inflight: deque[tuple[int, ImageInput, Future]] = deque()
    try:
        it = enumerate(images)
        exhausted = False
        while True:
            while not exhausted and len(inflight) < limit:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                inflight.append((*nxt, pool.submit(*nxt)))
            if not inflight:
                return
            i, image, fut = inflight.popleft()
            try:
                result = pool.receive(fut.result())
            except BrokenProcessPool:
                # A worker died (killed for memory, say): this image fails; the images still
                # in flight are prepared again by a new pool.
                result = Prepared(i, source_name(image), error=WORKER_DIED("preparing this image"))
                pool.restart()
                for k, (j, img, _) in enumerate(list(inflight)):
                    inflight[k] = (j, img, pool.submit(j, img))
            yield result
    finally:
        pool.close()


class _Pool:
    """Worker processes that prepare images, and the shared-memory blocks they hand over."""

    def __init__(self, preprocessor: Preprocessor, workers: int, pixels: bool) -> None:
        self.preprocessor, self.workers, self.pixels = preprocessor, workers, pixels
        self.ctx = multiprocessing.get_context("spawn")
        self.ledger = shm.Ledger()
        self.use_shm = pixels and shm.available()
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self.ctx,
                                   initializer=_init_worker)

    def submit(self, i: int, image: ImageInput) -> Future:
        if self.use_shm:
            return self.executor.submit(_decode_to_shm, self.preprocessor, i, image,
                                        self.ledger.issue())
        if self.pixels:
            return self.executor.submit(self.preprocessor.decode, i, image)
        return self.executor.submit(self.preprocessor.prepare, i, image)

    def receive(self, item: Prepared) -> Prepared:
        block = getattr(item, "shm", None)
        if block is not None:
            del item.shm  # type: ignore[attr-defined]
            try:
                item.pixels = self.ledger.take(*block)
            except (OSError, ValueError) as e:  # one image's hand-over, not the run
                item.num_tokens = 0
                item.error = f"shared-memory hand-over failed: {e}"
        return item

    def restart(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.ledger.clear()  # blocks the dead pool's workers made but never handed over
        self.executor = self._start()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.ledger.clear()
