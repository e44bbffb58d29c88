"""Resolving a mixture: each source's selection drawn from its own seeded generator, and the selected
records taken from a source's items in one pass."""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any, TypeVar

from ..errors import UsageError
from ..utils.logging import get_logger
from .saved import Mixture, MixtureSource
from .spec import MixtureSpec, Strategy, parse_mixture

logger = get_logger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# resolution


def _sample(rng: Any, n: int, k: int) -> set[int]:
    """``k`` distinct integers from ``range(n)`` (Floyd's algorithm), using only ``rng.random()``.

    ``Random.random()`` is the one method whose output Python keeps stable across versions for a
    given seed, so the sample is the same on every Python.
    """
    chosen: set[int] = set()
    for j in range(n - k, n):
        t = min(int(rng.random() * (j + 1)), j)
        chosen.add(j if t in chosen else t)
    return chosen


def _sorted_sample(rng: Any, n: int, k: int) -> array[int]:
    """A uniform random ``k``-subset of ``range(n)``, ascending; draws the smaller of it and its complement."""
    if k <= n - k:
        return array("q", sorted(_sample(rng, n, k)))
    left_out = _sample(rng, n, n - k)
    return array("q", (i for i in range(n) if i not in left_out))


def _select(strategy: Strategy, count: int, rng: Any) -> array[int]:
    size = strategy.size(count)
    if strategy.kind == "all" or size == count:
        return array("q", range(count))
    if strategy.kind == "first":
        return array("q", range(size))
    if strategy.kind == "end":
        return array("q", range(count - size, count))
    return _sorted_sample(rng, count, size)


def _with_repeats(indices: array[int], repeat: Fraction, rng: Any) -> array[int]:
    if repeat == 1:
        return indices
    whole = math.floor(repeat)
    extra_count = math.ceil(repeat * len(indices)) - whole * len(indices)
    extra = _sample(rng, len(indices), extra_count)
    out = array("q")
    for pos, index in enumerate(indices):
        out.extend([index] * (whole + (1 if pos in extra else 0)))
    return out


def resolve(spec: MixtureSpec, counts: Mapping[str, int], seed: int = 0) -> Mixture:
    """Resolve ``spec`` against the record ``counts`` of its sources (by source name) with ``seed``.

    A pure function: the same spec, counts and seed give the same :class:`Mixture` everywhere.

    Raises:
        UsageError: a count is missing or negative, or ``seed`` is not an integer.
    """
    import random

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"the mixture seed must be an integer, got {seed!r}")
    label = spec.path or "<mixture>"
    sources: list[MixtureSource] = []
    arrays: list[array[int]] = []
    for src in spec.sources:
        count = counts.get(src.name)
        if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(
                f"{label}: no record count for source {src.name!r} ({src.json_path}): got {count!r}"
            )
        strategy = src.strategy
        if strategy.number is not None and strategy.number > count:
            logger.warning(
                "%s: source %r asks for %s but %s has only %d records; taking all of them",
                label,
                src.name,
                strategy,
                src.json_path,
                count,
            )
        rng = random.Random(f"{seed}:{src.name}")
        indices = _with_repeats(_select(strategy, count, rng), src.repeat, rng)
        sources.append(
            MixtureSource(
                name=src.name,
                json_path=src.json_path,
                image_folder=src.image_folder,
                video_folder=src.video_folder,
                strategy=str(strategy),
                repeat=src.repeat,
                count=count,
                selected=len(indices),
                audio_folder=src.audio_folder,
            )
        )
        arrays.append(indices)
    return Mixture(
        seed=seed,
        sources=tuple(sources),
        indices=tuple(arrays),
        yaml_path=spec.path,
        yaml_sha256=spec.sha256,
    )


def load_mixture(path: str | os.PathLike[str], *, seed: int = 0) -> Mixture:
    """Parse the mixture YAML at ``path``, count each source's records, and resolve with ``seed``.

    Counting reads every source file once (incrementally, with :func:`llava_hf.records.count_records`).

    Raises:
        InputFileError: the YAML or a source file is missing or unreadable.
        UsageError: the YAML is not a valid mixture.
    """
    from ..records import count_records

    spec = parse_mixture(path)
    counts = {src.name: count_records(src.json_path) for src in spec.sources}
    return resolve(spec, counts, seed)


def iter_selected(indices: Sequence[int], items: Iterable[tuple[int, T]]) -> Iterator[T]:
    """Yield each item of ``items`` (``(record index, item)`` pairs in ascending index order) as many
    times as its index occurs in ``indices`` (sorted, as :meth:`Mixture.indices_by_source` gives).

    Stops reading ``items`` after the last wanted index, so a ``first:N`` source reads only its head.
    Indices with no matching item (a record the reader rejected) are simply not yielded.
    """
    if not indices:
        return
    pos = 0
    last = indices[-1]
    for index, item in items:
        while pos < len(indices) and indices[pos] < index:
            pos += 1
        while pos < len(indices) and indices[pos] == index:
            yield item
            pos += 1
        if index >= last or pos >= len(indices):
            return
