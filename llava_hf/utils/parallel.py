"""Concurrency: an order-preserving, memory-bounded thread map for I/O-bound work (reading and checking
media), and the pool of worker processes that builds shards."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ordered_map", "process_pool"]

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int = 4, window: int = 64
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in input order, with at most ``window`` items in flight.

    ``fn`` runs in a thread pool (it should be I/O bound); ``items`` is consumed lazily, so memory
    holds at most ``window`` results whatever the length of the input.
    """
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llava-hf-io") as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                while len(pending) >= window:
                    head, future = pending.popleft()
                    yield head, future.result()
            while pending:
                head, future = pending.popleft()
                yield head, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (forked where the platform can) that end when this process dies.

    A worker outliving a killed build would go on reading and writing for nobody: on Linux the kernel
    kills each worker when the thread that started it ends (``PR_SET_PDEATHSIG``); elsewhere a thread
    of the worker checks its parent every second.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),))


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the call above
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="llava-hf-parent-watch", daemon=True).start()
