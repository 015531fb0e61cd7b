"""Decode and tokenise uploads in worker processes that can be killed.

A decoder can be made to work for minutes by a small file (a progressive JPEG with thousands
of empty scans; a 1x999,999 PNG whose native scale is 31,250 tokens). A thread cannot be
stopped, so each image goes to one of ``decode_workers`` processes and is given a deadline:
past it, or when its request is cancelled, the process is killed (by its pid), its memory
goes back to the system, and a fresh process replaces it.

Before tokenising, the worker counts the tokens the image would have from its decoded size
and refuses it above ``max_tokens``: the model's cost grows with the square of the token
count, and tokens are ~12 kB each, so this bounds both the model work and the memory one
image can take, whatever its pixel count.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ..errors import MusiqError, UnsupportedFormat
from ..failures import describe_failure, is_out_of_memory
from ..tokens.preprocess import Tokens
from ..tokens.preprocessor import Preprocessor

log = logging.getLogger("musiq.serve")

#: Seconds a new worker process may take to import its libraries.
STARTUP_TIMEOUT_S = 120.0


@dataclass
class Decoded:
    """What a worker sends back: ``tokens``, or ``error`` with the HTTP status it maps to.

    Asked for several preprocessings (several models, one decode), ``variants`` holds one
    :class:`Decoded` per preprocessing asked (its tokens, or its own error: a token bound),
    and ``error`` is set only when the image could not be decoded.
    """

    tokens: Tokens | None = None
    error: str | None = None
    status: int = 200
    variants: list["Decoded"] | None = None


class DecodeTimeout(Exception):
    """The worker did not finish in time; it was killed."""


def decode_one(data: bytes, options: Preprocessor) -> Decoded:
    """Decode, check the token count (``options.max_tokens``), tokenise; every failure
    becomes ``error``."""
    try:
        rgb = options.pixels(data)
    except Exception as e:  # one odd file must not take the worker down
        return _failed(e)
    return _tokens(rgb, options)


def decode_shared(data: bytes, preprocessors: tuple[Preprocessor, ...],
                  which: int | tuple[int, ...]) -> Decoded:
    """``which`` an index: that preprocessing, as :func:`decode_one`. A tuple of indices
    (several models): decode once (the pool's preprocessings share their decoding settings)
    and make the tokens of each preprocessing named from the same pixels, in ``variants``;
    ``error`` is then set only when decoding failed."""
    if isinstance(which, int):
        return decode_one(data, preprocessors[which])
    try:
        rgb = preprocessors[which[0]].pixels(data)
    except Exception as e:
        return _failed(e)
    return Decoded(variants=[_tokens(rgb, preprocessors[i]) for i in which])


def _tokens(rgb, options: Preprocessor) -> Decoded:
    try:
        return Decoded(tokens=options.tokens_of_pixels(rgb, "<upload>"))
    except Exception as e:
        return _failed(e)


def _failed(e: Exception) -> Decoded:
    return Decoded(error=describe_failure(e, "decoding this image"), status=_status(e))


def _status(e: Exception) -> int:
    """415: not an image format we read; 422: an image that cannot be scored (corrupt,
    over a limit); 503: out of memory (try again later, or a smaller image); 500: a bug."""
    if isinstance(e, UnsupportedFormat):
        return 415
    if isinstance(e, MusiqError):
        return 422
    return 503 if is_out_of_memory(e) else 500


def _worker_main(conn, options: tuple[Preprocessor, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    try:
        import torch  # imported by musiq anyway; one thread: decoding is element-wise NumPy
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    import numpy as np
    for pp in options:
        pp.tokens_of_pixels(np.zeros((32, 32, 3), np.uint8))  # first-call costs, now
    conn.send_bytes(b"ready")  # imports done: the deadline of the first image starts now
    while True:
        try:
            header = conn.recv_bytes()  # 0 or 1 (variants wanted), then one byte per index
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        which = tuple(header[1:]) if header[0] else header[1]
        conn.send(decode_shared(data, options, which))


class _Worker:
    def __init__(self, ctx, options: tuple[Preprocessor, ...]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, options),
                                name="musiq-decode", daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self._lock = threading.Lock()

    def check_ready(self) -> bool:
        """Non-blocking: has the process finished starting?"""
        if self.ready or not self._lock.acquire(blocking=False):
            return self.ready
        try:
            if self.conn.poll(0):
                self.conn.recv_bytes()
                self.ready = True
        except (EOFError, OSError):
            pass
        finally:
            self._lock.release()
        return self.ready

    def roundtrip(self, data: bytes, which: int | tuple[int, ...], timeout: float) -> Decoded:
        """Blocking: send the preprocessings asked and the bytes, wait at most ``timeout`` s
        for the answer."""
        with self._lock:  # a fresh process may still be importing: not the image's time
            if not self.ready:
                if not self.conn.poll(STARTUP_TIMEOUT_S):
                    raise DecodeTimeout
                self.conn.recv_bytes()
                self.ready = True
        several = not isinstance(which, int)
        self.conn.send_bytes(bytes([several, *(which if several else [which])]))
        self.conn.send_bytes(data)
        if not self.conn.poll(timeout):
            raise DecodeTimeout
        return self.conn.recv()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()  # SIGKILL by pid: a decoder stuck in C code ignores anything else
        self.proc.join(5)
        self.conn.close()


class DecodePool:
    """``workers`` decode processes; :meth:`decode` awaits one image's :class:`Decoded`.

    ``options``: one preprocessing, or several that share their decoding settings (pixel
    limit, EXIF orientation): every worker can make the tokens of each, and a request names
    the ones it needs by index (several models scoring one upload decode it once).
    """

    def __init__(self, workers: int, options: Preprocessor | tuple[Preprocessor, ...], *,
                 timeout_s: float, max_tokens: int | None) -> None:
        several = (options,) if isinstance(options, Preprocessor) else tuple(options)
        if not several or len(several) > 255:
            raise ValueError("a decode pool needs 1 to 255 preprocessings")
        decoding = {(pp.max_pixels, pp.exif_transpose) for pp in several}
        if len(decoding) != 1:
            raise ValueError("preprocessings of one decode pool must share max_pixels and "
                             "exif_transpose")
        # The server's own token bound, set once in what every worker runs.
        self.options = tuple(replace(pp, max_tokens=max_tokens) for pp in several)
        self.timeout_s, self.max_tokens = timeout_s, max_tokens
        # spawn: the server holds threads and a loaded model; forking that is unsafe.
        self._ctx = multiprocessing.get_context("spawn")
        self._io = ThreadPoolExecutor(workers, thread_name_prefix="musiq-decode-io")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._workers = workers
        #: Workers killed (deadline or cancelled request) since start; for tests and logs.
        self.killed = 0

    def _spawn(self) -> None:
        w = _Worker(self._ctx, self.options)
        self._all.add(w)
        self._idle.put_nowait(w)

    def start(self) -> None:
        for _ in range(self._workers):
            self._spawn()

    def ready(self) -> bool:
        """At least one worker has started (or is busy, hence started)."""
        return any(w.check_ready() for w in list(self._all))

    async def decode(self, data: bytes, which: int | tuple[int, ...] = 0) -> Decoded:
        """The image's tokens or error: ``which`` is the preprocessing wanted (its index), or
        a tuple of them, whose tokens are then the answer's ``variants`` (see
        :func:`decode_shared`); ``Decoded(status=422)`` past the deadline."""
        indices = (which,) if isinstance(which, int) else which
        if not indices or not all(0 <= i < len(self.options) for i in indices):
            raise ValueError(f"no such preprocessing in this pool: {which}")
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        healthy = False
        try:
            result = await loop.run_in_executor(self._io, worker.roundtrip, data, which,
                                                self.timeout_s)
            healthy = True
            return result
        except DecodeTimeout:
            log.warning("decoding took longer than %g s; worker %d killed", self.timeout_s,
                        worker.proc.pid)
            return Decoded(error=f"decoding took longer than the limit of {self.timeout_s:g} s "
                                 "(the image is too costly to decode)", status=422)
        except (EOFError, OSError, BrokenPipeError):
            return Decoded(error="the decoding process ended unexpectedly (out of memory?)",
                           status=503)
        finally:
            if healthy:
                self._idle.put_nowait(worker)
            else:  # timed out, crashed, or its request was cancelled mid-work: kill it
                self.killed += 1
                self._all.discard(worker)
                worker.proc.kill()  # now, even while this task is being cancelled
                loop.run_in_executor(None, worker.kill)  # reap it off the event loop
                self._spawn()

    def stop(self) -> None:
        for w in list(self._all):
            w.kill()
        self._all.clear()
        self._io.shutdown(wait=False, cancel_futures=True)
