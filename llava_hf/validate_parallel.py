"""``llava-hf validate`` on both cores: a big file checked in two halves by two processes, merged in order.

A local, uncompressed input file of at least :data:`SPLIT_MIN` bytes is cut at a candidate record
boundary near its middle (the start of a line of a ``.jsonl``; for a JSON array, the start of an
object that looks like a record, found by decoding a window of the file). Worker A checks the file
from its start; worker B checks it from the candidate. Neither can know everything alone, so:

- A is the authority on the boundary: it reads the file as a one-process run does, and when its
  next element starts exactly at the candidate, it stops there and reports that element's index
  (the first index of B's half). Otherwise (the candidate was inside a value, or the file ends
  early) A reads on to the end, and B's work is dropped.
- B counts record indices from 0. Its problems are moved to their real index in the parent: every
  record-level message starts with ``locate(file, index, id, field)`` (and an id-less record's
  generated id holds the index), so the prefix is rebuilt; anything else (never seen so far) is
  checked again from the file at its offset. A file-level problem in B's half (its reading could
  stop at another element than a one-process read) drops B's half too: the parent then reads that
  half itself, as one process does.
- Duplicate ids are found by the parent, in input order: the workers send the id of each record
  (or the index of an id-less one) and check each record as if its id were new; a record whose id
  was used before gets exactly what :meth:`Validator.check` gives then (its ``duplicate_id``
  problem after the conversation's, before the media paths'; no readability problems).

Each worker writes its results to a spill file of its own, in batches, so memory stays bounded
whatever the file size, and the parent reads A's as they come (the progress bar) and B's after A.
Smaller files, ``.gz`` files and URLs are checked in this process the same way.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from .problems import Problem, locate
from .records import (
    file_kind,
    id_stems,
    iter_items,
    records_from_items,
)
from .records.dataset_info import entry_for
from .utils.logging import get_logger
from .validate import Validator, duplicate_problem
from .validate_workers import Step, _Batch, _file_end, _Flagged, _Options, _Range, _Spill, _worker

__all__ = ["SPLIT_MIN", "Step", "validate_files"]

#: Input files smaller than this are checked in one process (a worker's start costs ~0.2 s).
SPLIT_MIN = 8 << 20
_MEDIA_PATH_CODES = frozenset(("missing_media", "media_outside_root"))
_WINDOW = 1 << 20
_RECORD_START = re.compile(r"[}\]]\s*,\s*\{")
logger = get_logger(__name__)


# ------------------------------------------------------------------------------------------- parent


def split_offset(file: str) -> int | None:
    """A candidate record boundary near the middle of a big local file, or None (not split)."""
    if "://" in file or file.lower().endswith(".gz"):
        return None
    try:
        size = os.path.getsize(file)
        jsonl = file_kind(file) == "jsonl"
    except Exception:  # an unknown kind or a missing file: the one-process read says what is wrong
        return None
    if size < SPLIT_MIN:
        return None
    mid = size // 2
    with open(file, "rb") as f:
        f.seek(mid)
        window = f.read(_WINDOW)
    if jsonl:
        nl = window.find(b"\n")
        return mid + nl + 1 if 0 <= nl < len(window) - 1 else None
    text = window.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    for m in _RECORD_START.finditer(text):
        at = m.end() - 1
        try:
            value, end = decoder.raw_decode(text, at)
        except (ValueError, RecursionError):
            continue
        after = text[end : end + 64].lstrip()
        if (
            isinstance(value, dict)
            and ("conversations" in value or "messages" in value)
            and after[:1] in ",]"
        ):
            return mid + len(text[:at].encode("utf-8", "surrogateescape"))
    return None


class _Merge:
    """The parent's books: duplicate ids in input order, and the rebasing of B's indices."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self.seen = validator.seen_ids

    def step(self, batch: _Batch, file: str, stem: str, base: int) -> Step:
        s = batch.stats
        step = Step(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
        seen = self.seen
        problems = step.problems
        for entry, index in zip(batch.entries, batch.indices):
            cls = entry.__class__
            if cls is str:
                if entry in seen:
                    problems.append(duplicate_problem(file, index + base, entry))
                else:
                    seen.add(entry)
            elif entry is None or cls is int:
                index += base
                rid = f"{stem}-{index}" if entry is None else f"{stem}-{index}-{entry}"
                if rid in seen:
                    problems.append(duplicate_problem(file, index, rid))
                else:
                    seen.add(rid)
            else:
                problems.extend(self._flagged(entry, None if index < 0 else index, file, stem, base))
        return step

    def _flagged(
        self, f: _Flagged, relative: int | None, file: str, stem: str, base: int
    ) -> tuple[Problem, ...]:
        index = relative + base if relative is not None else None
        rid = f.id
        if f.generated and index is not None:
            rid = f"{stem}-{index}" if f.position is None else f"{stem}-{index}-{f.position}"
        problems = f.problems
        if base and index is not None:
            rebased = _rebase(problems, index, f.id if f.generated else None, rid)
            if rebased is None:
                return self._again(f, file, stem, index, rid)
            problems = rebased
        if rid is None:
            return problems
        if not f.normalized:
            self.seen.add(rid)  # a record that does not normalize still uses its id
            return problems
        if rid not in self.seen:
            self.seen.add(rid)
            return problems
        assert index is not None
        kept = [p for p in problems if p.code not in _MEDIA_PATH_CODES and p.code != "unreadable_media"]
        paths = [p for p in problems if p.code in _MEDIA_PATH_CODES]
        return (*kept, duplicate_problem(file, index, rid), *paths)

    def _again(self, f: _Flagged, file: str, stem: str, index: int, rid: str | None) -> tuple[Problem, ...]:
        """Check a record again from the file, at its real index (a message the prefix rule misses)."""
        v = self.validator
        assert f.offset is not None
        items = iter_items(file, start_offset=f.offset, start_index=index, stop_index=index + 1)
        entry = entry_for(v.entries, file)
        for k, (record, problems) in enumerate(records_from_items(items, stem=stem, entry=entry)):
            if f.position is not None and k != f.position:
                continue
            duplicate = record is not None and rid is not None and rid in self.seen
            if rid is not None:
                self.seen.add(rid)
            return v.check_readability(v.check(record, problems, duplicate=duplicate)).problems
        return f.problems  # not reached: the item is there


def _rebase(
    problems: tuple[Problem, ...], index: int, old_id: str | None, new_id: str | None
) -> tuple[Problem, ...] | None:
    """The problems of a record of B's half at its real ``index``; None if a message does not allow it."""
    out = []
    for p in problems:
        if p.index is None:
            out.append(p)
            continue
        pid = new_id if old_id is not None and p.id == old_id else p.id
        prefix = locate(p.file, p.index, p.id, p.field)
        if not p.message.startswith(prefix):
            return None
        rest = p.message[len(prefix) :]
        if old_id is not None and old_id in rest:
            return None
        out.append(
            Problem(
                p.code, locate(p.file, index, pid, p.field) + rest, p.file, index, pid, p.field, p.severity
            )
        )
    return tuple(out)


# ------------------------------------------------------------------------------------------ driver


def validate_files(
    validator: Validator, files: Iterable[str], *, processes: int | None = None
) -> Iterator[Step]:
    """Check every record of ``files`` (one split) in input order, as :meth:`Validator.iter_checked`
    does, in :class:`Step` s: the same problems, in the same order; big files split over two processes.

    Steps without records come while the parent waits for the workers (the bar's position moves).
    Worker processes make a :class:`Validator` of the same options (a subclass's own methods run in
    this process only); ``validator.seen_ids`` gets every id, as :meth:`Validator.iter_checked` leaves it.
    """
    files = [str(f) for f in files]
    stems = id_stems(files)
    processes = processes if processes is not None else min(2, os.cpu_count() or 1)
    merge = _Merge(validator)
    done_bytes = 0
    done_records = 0
    pool: ProcessPoolExecutor | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="llava-hf-validate-") as spill_dir:
            for n, file in enumerate(files):
                stem = stems[file]
                candidate = split_offset(file) if processes >= 2 else None
                if candidate is None:
                    steps: Iterator[Step] = _in_process(merge, _Range(validator, file, stem), file, stem, 0)
                else:
                    if pool is None:
                        pool = _start_pool()
                    steps = _split(merge, pool, _Options.of(validator), file, stem, candidate, spill_dir, n)
                last = 0
                for step in steps:
                    done_records += step.records if step.done < 0 else 0
                    step.done = done_records if step.done < 0 else done_records + step.done
                    last = max(last, step.position)
                    step.position = done_bytes + step.position
                    yield step
                done_bytes += max(last, _file_end(file))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _start_pool() -> ProcessPoolExecutor:
    import multiprocessing

    from . import validate_workers
    from .utils.parallel import process_pool

    methods = multiprocessing.get_all_start_methods()
    shared = multiprocessing.get_context("fork").RawArray("q", 5) if "fork" in methods else None
    validate_workers._SHARED = shared
    return process_pool(2)


def _in_process(merge: _Merge, checker: _Range, file: str, stem: str, base: int) -> Iterator[Step]:
    for batch in checker.batches():
        step = merge.step(batch, file, stem, base)
        step.position, step.done = batch.position, -1
        yield step


def _split(
    merge: _Merge,
    pool: ProcessPoolExecutor,
    options: _Options,
    file: str,
    stem: str,
    candidate: int,
    spill_dir: str,
    n: int,
) -> Iterator[Step]:
    jsonl = file_kind(file) == "jsonl"
    from . import validate_workers

    shared = validate_workers._SHARED
    if shared is not None:
        for k in range(4):
            shared[k] = 0
    generation = n + 1
    paths = []
    futures: list[Future[tuple[int | None, bool]]] = []
    for slot, (start, stop) in enumerate(((0, candidate), (candidate, None))):
        path = os.path.join(spill_dir, f"{n}-{slot}.pickle")
        open(path, "wb").close()
        paths.append(path)
        futures.append(
            pool.submit(_worker, (options, file, stem, start, stop, jsonl, path, slot, generation))
        )

    def waiting(records_merged: int) -> Step:
        step = Step(done=0)
        if shared is not None:
            step.position = shared[0] + shared[1]  # bytes checked by A and B
            step.done = max(0, shared[2] + shared[3] - records_merged)
        return step

    merged = 0
    first = _Spill(paths[0])
    try:
        while True:
            finished = futures[0].done()
            batch = first.read()
            if batch is None:
                if finished:  # and nothing written after it finished
                    break
                yield waiting(merged)
                time.sleep(0.02)
                continue
            step = merge.step(batch, file, stem, 0)
            merged += step.records
            step.position, step.done = batch.position, -1
            yield step
    finally:
        first.close()
    base, _ = futures[0].result()
    if base is None:  # no element starts at the candidate (or the file ends before): A read it all
        logger.debug("%s: no record starts at byte %d; read by one process", file, candidate)
        if shared is not None:
            shared[4] = generation
        return
    while not futures[1].done():
        yield waiting(merged)
        time.sleep(0.02)
    _, failed = futures[1].result()
    if failed:  # B's half ends with a file-level problem: read it as one process does
        logger.debug(
            "%s: a problem of the whole file after byte %d; read again from record %d", file, candidate, base
        )
        yield from _in_process(merge, _Range(options.validator(), file, stem, skip=base), file, stem, 0)
        return
    logger.debug("%s: checked in two processes, split at byte %d (record %d)", file, candidate, base)
    second = _Spill(paths[1])
    try:
        while (batch := second.read()) is not None:
            step = merge.step(batch, file, stem, base)
            step.position, step.done = batch.position, -1
            yield step
    finally:
        second.close()
