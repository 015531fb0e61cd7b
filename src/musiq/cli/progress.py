"""Progress of a long run on stderr: a bar on a terminal, else a line now and then.

Under ``nohup``, CI or a pipe a bar would be noise (or nothing at all): there, one line every
:data:`EVERY_S` seconds (``$MUSIQ_PROGRESS_SECONDS`` changes it) says how far the run is,
how fast it goes and how many images failed.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterator, TextIO

from tqdm import tqdm

from ..results.rows import Prediction

#: Seconds between progress lines when stderr is not a terminal.
EVERY_S = 30.0
ENV_EVERY = "MUSIQ_PROGRESS_SECONDS"


def interval() -> float:
    """Seconds between progress lines: ``$MUSIQ_PROGRESS_SECONDS`` or :data:`EVERY_S`."""
    try:
        value = float(os.environ.get(ENV_EVERY, ""))
    except ValueError:
        return EVERY_S
    return value if value >= 0 else EVERY_S


def line(done: int, total: int, failed: int, elapsed: float) -> str:
    """``120/2000 images (6.0 %), 1.30 images/s, 0 failed, about 24 min left``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    pct = 100.0 * done / total if total else 100.0
    text = f"{done}/{total} images ({pct:.1f} %), {rate:.2f} images/s, {failed} failed"
    if rate > 0 and done < total:
        left = (total - done) / rate
        text += (f", about {left / 60:.0f} min left" if left >= 90
                 else f", about {left:.0f} s left")
    return text


def track(preds: Iterator[Prediction], total: int, *, bar: bool, lines: bool,
          prefix: str = "musiq score: ", stream: TextIO | None = None,
          clock: Callable[[], float] = time.monotonic) -> Iterator[Prediction]:
    """Pass ``preds`` through, showing progress: a tqdm bar (``bar``) or, when ``lines``,
    a line every :func:`interval` seconds (never for the last image: the summary says it)."""
    stream = stream or sys.stderr
    progress = tqdm(total=total, unit="img", disable=not bar, file=stream,
                    dynamic_ncols=True, smoothing=0.1)
    every = interval()
    start = last = clock()
    done = failed = 0
    try:
        for p in preds:
            done += 1
            failed += p.error is not None
            progress.update(1)
            if failed:
                progress.set_postfix(failed=failed, refresh=False)
            now = clock()
            if lines and not bar and now - last >= every and done < total:
                last = now
                print(prefix + line(done, total, failed, now - start), file=stream,
                      flush=True)
            yield p
    finally:
        progress.close()
