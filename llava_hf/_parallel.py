"""Order-preserving, memory-bounded concurrent map for I/O-bound work (reading and checking media)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ordered_map"]

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
