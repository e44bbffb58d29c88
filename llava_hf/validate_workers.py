"""The workers of :mod:`llava_hf.validate_parallel`: each checks a byte range of a file and spills its results."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .media.files import MediaRoots
from .problems import Problem
from .records import (
    RawItem,
    Record,
    is_pack,
    iter_items,
    normalize,
    records_from_items,
)
from .records.dataset_info import DatasetEntry, entry_for
from .utils.logging import get_logger
from .utils.meter import ReadMeter, file_size
from .validate import _CLAIMING, CheckedRecord, Validator

__all__ = ["Step"]

#: Input files smaller than this are checked in one process (a worker's start costs ~0.2 s).

#: Records per batch a worker writes.
BATCH = 4096
_FRAME = struct.Struct(">Q")
#: Shared with the workers (inherited at fork): bytes read by A and B, records checked by A and B,
#: and the generation of the split that B must give up.
_SHARED: Any = None

logger = get_logger(__name__)


@dataclass
class Step:
    """Progress of a run: stats and problems of the next records (in input order), and the bar's place."""

    records: int = 0  # records counted (a whole-file problem is not one)
    images: int = 0
    videos: int = 0
    text_only: int = 0
    turns: int = 0
    audios: int = 0
    fetched: int = 0  # a record's own http(s) media fetched (allow_remote_media), and their bytes
    fetched_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    position: int = 0  # bytes of the input files read so far (all files)
    #: records checked so far, for the bar (workers may be ahead of the merge; it may go back a little).
    #: Inside this module: -1 for a step of merged records, else how many records the workers are ahead
    done: int = 0


@dataclass
class _Flagged:
    """A record with problems (or none), as a worker checked it, index relative to its start."""

    position: int | None  # its place in a pack
    offset: int | None  # the byte offset of its item
    generated: bool  # the id was made from the index
    id: str | None  # the id duplicates are looked for with (a record's, or the one a bad record claims)
    normalized: bool
    problems: tuple[Problem, ...]


@dataclass
class _Batch:
    stats: list[int]  # records, images, videos, text_only, turns, audios, fetched, fetched_bytes
    #: per record: its id (a clean record), None or its place in a pack (a clean record whose id is
    #: generated from its index), or a _Flagged (a record with problems, or none)
    entries: list[Any]
    indices: list[int]  # per record: its item's index (relative to the worker's start; -1: none)
    position: int  # bytes of the file read (from the file's start)


@dataclass(frozen=True)
class _Options:
    """A validator's options, for the worker processes (each makes its own Validator of them)."""

    image_folder: str | None
    video_folder: str | None
    allow_outside_root: bool
    deep: bool
    strict: bool
    check_media: bool
    check_readable: bool
    check_files: bool
    audio_folder: str | None = None
    task: str = "sft"
    entries: dict[str, DatasetEntry] | None = None
    #: allow_remote_media, max_remote_bytes, remote_timeout of the roots
    remote: tuple[bool, int, float] | None = None

    @classmethod
    def of(cls, v: Validator) -> _Options:
        r = v.roots
        return cls(
            r.image_folder,
            r.video_folder,
            r.allow_outside_root,
            v.deep,
            v.strict,
            v.check_media,
            v.check_readable,
            v.check_files,
            r.audio_folder,
            v.task,
            v.entries,
            (r.allow_remote_media, r.max_remote_bytes, r.remote_timeout),
        )

    def validator(self) -> Validator:
        roots = MediaRoots(
            self.image_folder, self.video_folder, self.allow_outside_root, audio_folder=self.audio_folder
        )
        if self.remote is not None:
            allow, max_bytes, timeout = self.remote
            roots = MediaRoots(
                self.image_folder,
                self.video_folder,
                self.allow_outside_root,
                audio_folder=self.audio_folder,
                allow_remote_media=allow,
                max_remote_bytes=max_bytes,
                remote_timeout=timeout,
            )
        return Validator(
            roots=roots,
            deep=self.deep,
            strict=self.strict,
            check_media=self.check_media,
            check_readable=self.check_readable,
            check_files=self.check_files,
            task=self.task,
            entries=self.entries,
        )


# ------------------------------------------------------------------------------------ checking a range


class _Range:
    """Checks the records of one file from ``start`` (an element boundary), in batches.

    ``stop``: the candidate offset where worker A stops when an element starts there
    (:attr:`split_index` is then that element's index); ``skip``: items before this index are read
    and skipped (the parent reading B's half again, as one process reads it).
    """

    def __init__(
        self,
        validator: Validator,
        file: str,
        stem: str,
        *,
        start: int = 0,
        stop: int | None = None,
        skip: int = 0,
        jsonl: bool = False,
    ) -> None:
        self.validator = validator
        self.file, self.stem = file, stem
        self.source = Path(file).name  # normalize's default, computed once
        self.start, self.stop, self.skip, self.jsonl = start, stop, skip, jsonl
        self.split_index: int | None = None
        self.failed = False  # a whole-file problem ended the stream
        self.position = start
        self._meter: ReadMeter | None = None
        self._fetched = (0, 0)  # the validator's fetches, as counted in the batches so far

    def _items(self) -> Iterator[RawItem]:
        stop = self.stop
        # read in this process: the bar follows the bytes read (of a .gz, compressed), asked per batch
        meter = self._meter = ReadMeter() if self.stop is None and not self.start else None
        items = iter_items(
            self.file, start_offset=self.start, start_index=self.skip, with_offsets=True, meter=meter
        )
        for item in items:
            if item.index is None:
                self.failed = True
            elif stop is not None:
                if item.offset is None:
                    stop = None  # a JSONL line that is not JSON: no offset to compare; read on
                elif item.offset >= stop:
                    if item.offset == stop or self.jsonl:
                        self.split_index = item.index
                        items.close()  # type: ignore[attr-defined]  # a generator
                        return
                    stop = None  # the candidate is not where an element starts: read on to the end
            if meter is None and item.offset is not None:
                self.position = item.offset
            yield item

    def batches(self) -> Iterator[_Batch]:
        v = self.validator
        media = v.media_checks()
        self._fetched = (media.fetched, media.fetched_bytes)  # a validator checks file after file
        batch = _Batch([0] * 8, [], [], self.position)
        stats, entries, indices = batch.stats, batch.entries, batch.indices
        file, source, stem = self.file, self.source, self.stem
        entry = entry_for(v.entries, file)
        forced = None if entry is None else "sharegpt"  # what records_from_items gives an entry's records
        for item in self._items():
            value = item.value
            if entry is not None and item.error is None:
                value = entry.apply(value)
            if item.error is None and value.__class__ is dict:  # most items: what records_from_items does
                pack = False
                results: Iterable[tuple[Record | None, list[Problem]]] = (
                    normalize(
                        value,
                        file=file,
                        index=item.index,  # type: ignore[arg-type]
                        source=source,
                        stem=stem,
                        source_layout=forced,
                    ),
                )
            else:
                pack = item.error is None and is_pack(value)
                results = records_from_items((item,), source=source, stem=stem, entry=entry)
            for k, (record, problems) in enumerate(results):
                checked = v.check_readability(v.check(record, problems, duplicate=False))
                if record is not None:
                    stats[0] += 1
                    stats[1] += len(record.images)
                    stats[2] += len(record.videos)
                    stats[3] += not record.images and not record.videos and not record.audios
                    stats[4] += len(record.conversations)
                    stats[5] += len(record.audios)
                elif checked.index is not None:
                    stats[0] += 1
                raw = value[k] if pack else value
                generated = raw.__class__ is dict and raw.get("id") is None
                position = k if pack else None
                indices.append(-1 if checked.index is None else checked.index)
                if checked.problems or record is None:
                    entries.append(self._flagged(checked, item, position, generated))
                elif generated:
                    entries.append(position)
                else:
                    entries.append(record.id)
            if len(entries) >= BATCH:
                batch.position = self.position = self._where()
                self._count_fetches(stats)
                yield batch
                batch = _Batch([0] * 8, [], [], self.position)
                stats, entries, indices = batch.stats, batch.entries, batch.indices
        if self.split_index is not None:
            assert self.stop is not None
            self.position = self.stop
        else:
            self.position = max(self.position, _file_end(self.file))
        batch.position = self.position
        self._count_fetches(stats)
        yield batch

    def _count_fetches(self, stats: list[int]) -> None:
        """The remote media the validator fetched since the last batch, into the batch's ``stats``."""
        media = self.validator.media_checks()
        stats[6], stats[7] = media.fetched - self._fetched[0], media.fetched_bytes - self._fetched[1]
        self._fetched = (media.fetched, media.fetched_bytes)

    def _where(self) -> int:
        """Bytes of the file read so far (a ``tell``: once per batch, not per record)."""
        return self._meter.position if self._meter is not None else self.position

    @staticmethod
    def _flagged(checked: CheckedRecord, item: RawItem, position: int | None, generated: bool) -> _Flagged:
        record = checked.record
        if record is not None:
            rid: str | None = record.id
        else:
            first = checked.problems[0] if checked.problems else None
            rid = first.id if first is not None and first.code in _CLAIMING else None
        return _Flagged(
            position,
            item.offset if checked.index is not None else None,
            generated and rid is not None,
            rid,
            record is not None,
            checked.problems,
        )


def _file_end(file: str) -> int:
    return file_size(file) or 0


# ------------------------------------------------------------------------------------------- workers


def _write(out: BinaryIO, batch: _Batch) -> None:
    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(data)))
    out.write(data)
    out.flush()


def _worker(task: tuple[_Options, str, str, int, int | None, bool, str, int, int]) -> tuple[int | None, bool]:
    """Check one half of a file in a worker process; batches go to the spill file ``out``."""
    options, file, stem, start, stop, jsonl, out, slot, generation = task
    shared = _SHARED
    checker = _Range(options.validator(), file, stem, start=start, stop=stop, jsonl=jsonl)
    with open(out, "ab") as f:
        for batch in checker.batches():
            _write(f, batch)
            if shared is not None:
                if shared[4] == generation:  # A found no boundary there: B's work is dropped
                    return None, True
                shared[slot] = batch.position - start
                shared[2 + slot] += len(batch.entries)
    return checker.split_index, checker.failed


class _Spill:
    """Reads the batches a worker writes, as they come."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "rb")

    def read(self) -> _Batch | None:
        at = self.f.tell()
        head = self.f.read(_FRAME.size)
        if len(head) == _FRAME.size:
            (n,) = _FRAME.unpack(head)
            body = self.f.read(n)
            if len(body) == n:
                batch: _Batch = pickle.loads(body)
                return batch
        self.f.seek(at)
        return None

    def close(self) -> None:
        self.f.close()
