"""Make a worker process exit when its parent dies (even by ``kill -9``).

A pool's workers otherwise keep running as orphans, holding memory and CPU. The parent's
death is seen as a change of ``os.getppid()`` (the orphan is re-parented), checked by a
daemon thread; this works for processes started from any thread, unlike Linux's
``PR_SET_PDEATHSIG``, which fires when the *thread* that forked exits.
"""
from __future__ import annotations

import os
import threading
import time

#: How often the parent is checked, in seconds.
POLL_S = 0.5


def exit_with_parent(poll_s: float = POLL_S) -> None:
    """Start a daemon thread that ends this process (``os._exit(1)``) once its parent is
    gone. Call it in the worker's initializer."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="musiq-exit-with-parent", daemon=True).start()
