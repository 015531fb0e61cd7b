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
    """What a worker sends back: ``tokens``, or ``error`` with the HTTP status it maps to."""

    tokens: Tokens | None = None
    error: str | None = None
    status: int = 200


class DecodeTimeout(Exception):
    """The worker did not finish in time; it was killed."""


def decode_one(data: bytes, options: Preprocessor) -> Decoded:
    """Decode, check the token count (``options.max_tokens``), tokenise; every failure
    becomes ``error``."""
    try:
        rgb = options.pixels(data)
        return Decoded(tokens=options.tokens_of_pixels(rgb, "<upload>"))
    except Exception as e:  # one odd file must not take the worker down
        return Decoded(error=describe_failure(e, "decoding this image"), status=_status(e))


def _status(e: Exception) -> int:
    """415: not an image format we read; 422: an image that cannot be scored (corrupt,
    over a limit); 503: out of memory (try again later, or a smaller image); 500: a bug."""
    if isinstance(e, UnsupportedFormat):
        return 415
    if isinstance(e, MusiqError):
        return 422
    return 503 if is_out_of_memory(e) else 500


def _worker_main(conn, options: Preprocessor) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    try:
        import torch  # imported by musiq anyway; one thread: decoding is element-wise NumPy
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    import numpy as np
    options.tokens_of_pixels(np.zeros((32, 32, 3), np.uint8))  # first-call costs, now
    conn.send_bytes(b"ready")  # imports done: the deadline of the first image starts now
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send(decode_one(data, options))


class _Worker:
    def __init__(self, ctx, options: Preprocessor) -> None:
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

    def roundtrip(self, data: bytes, timeout: float) -> Decoded:
        """Blocking: send the bytes, wait at most ``timeout`` s for the answer."""
        with self._lock:  # a fresh process may still be importing: not the image's time
            if not self.ready:
                if not self.conn.poll(STARTUP_TIMEOUT_S):
                    raise DecodeTimeout
                self.conn.recv_bytes()
                self.ready = True
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
    """``workers`` decode processes; :meth:`decode` awaits one image's :class:`Decoded`."""

    def __init__(self, workers: int, options: Preprocessor, *, timeout_s: float,
                 max_tokens: int | None) -> None:
        # The server's own token bound, set once in what every worker runs.
        self.options = replace(options, max_tokens=max_tokens)
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

    async def decode(self, data: bytes) -> Decoded:
        """The image's tokens or error; ``Decoded(status=504)`` past the deadline."""
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        healthy = False
        try:
            result = await loop.run_in_executor(self._io, worker.roundtrip, data,
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
