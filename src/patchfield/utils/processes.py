"""Worker processes that end with the process that started them.

A ``multiprocessing`` pool's workers outlive a parent killed by a signal (``kill PID``, a session's end):
they go on training for hours and keep their run folders locked, so a resume is refused. :func:`worker_pool`
gives every worker, on Linux, the kernel's parent-death signal (``PR_SET_PDEATHSIG``): when its parent
goes, the worker gets ``SIGTERM`` too. Elsewhere the pool is a plain spawn pool.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.pool import Pool

__all__ = ["end_with_parent", "worker_pool"]

_PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int) -> None:
    """In a child process: receive ``SIGTERM`` when the parent ``parent`` (its PID) ends; end now if it already
    has. Does nothing outside Linux."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def worker_pool(processes: int) -> Pool:
    """A spawn-context pool of ``processes`` workers that end with this process (:func:`end_with_parent`)."""
    return mp.get_context("spawn").Pool(processes, initializer=end_with_parent, initargs=(os.getpid(),))
