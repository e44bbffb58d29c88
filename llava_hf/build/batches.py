"""Rows in batches whose media bytes are read straight into reusable buffers: the build's memory path.

A build moves gigabytes of media bytes, so how often each byte is copied, and into how much fresh
memory, is most of its cost (first-touch page faults of fresh memory cost as much CPU as the copy
itself on a VM). Here every media file is read once (``readv``) into a :class:`MediaArena`, one per
media column of a :class:`RowBatch`, and the batch's Arrow table wraps those buffers without a copy
(``pa.Array.from_buffers``); the arenas are reused batch after batch. The plain-row view
(:meth:`RowBatch.rows`, for ``datasets``' own writers and streaming) copies each value out.

:class:`Prefetch` opens the files of the records coming next and asks the kernel to read them ahead
(``posix_fadvise(WILLNEED)``) while the reads find them uncached: reads of a cold folder overlap without
reader threads, and a warm one costs no advice.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..jsontext import at_full_depth
from ..media.files import MediaReadError, media_size, open_media

__all__ = ["BATCH_MAX_BYTES", "BATCH_ROWS", "MediaArena", "Prefetch", "RowBatch", "metadata_json"]

#: Rows per batch, which is a Parquet row group of a build: small, so a reader can fetch one row
#: without reading much more.
BATCH_ROWS = 64
#: A batch ends early once its media hold this many bytes (videos), so memory stays bounded.
BATCH_MAX_BYTES = 256 << 20

_MAX_BINARY = 2**31 - 1  # Arrow ``binary`` uses 32-bit offsets (datasets' Image/Video storage type)
_MEDIA_COLUMNS = ("images", "videos", "audios", "video_frames")
#: ``preadv`` flag: read only what the page cache holds (Linux); tells a cached file from a cold one.
_PREADV = hasattr(os, "preadv")
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None) if _PREADV else None


def _read_at(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from ``offset`` (sequential reads where ``preadv`` is missing)."""
    if _PREADV:
        return os.preadv(fd, [view], offset)
    return os.readv(fd, [view])


#: ``metadata`` as JSON text, exactly: every float as Python writes it (the shortest text that reads
#: back the same float). datasets' ``Json.encode_example`` (pandas' ujson) keeps 10 significant
#: digits (0.123456789012345 -> 0.123456789, the largest float -> a text that reads as infinity).
#: Non-finite numbers never get here (the reader rejects them: ``invalid_number``).
metadata_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_EMPTY_JSON = metadata_json({})


class MediaArena:
    """The media bytes of one column of a batch, back to back in one buffer that is reused.

    ``read`` appends a file's bytes and returns a view of them (valid until the next ``read`` or
    ``clear``); ``mark``/``rollback`` drop what a rejected record appended.
    """

    def __init__(self, capacity: int = 0) -> None:
        # uninitialized memory (a bytearray is zero-filled: one more pass over fresh pages); only the
        # bytes that reads filled are ever used
        self._buf: memoryview = np.empty(capacity, dtype=np.uint8).data
        self._offsets: list[int] = [0]
        self._nowait = True  # ask the first read of a file for cached data only (see read)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def nbytes(self) -> int:
        return self._offsets[-1]

    def clear(self, *, release: bool = False) -> None:
        """Forget the values; ``release``: leave the buffer to the arrays that wrap it, take a new one."""
        del self._offsets[1:]
        if release:
            self._buf = np.empty(len(self._buf), dtype=np.uint8).data

    def mark(self) -> int:
        return len(self._offsets)

    def rollback(self, mark: int) -> None:
        del self._offsets[mark:]

    def view(self, k: int) -> memoryview:
        return self._buf[self._offsets[k] : self._offsets[k + 1]]

    def read(self, fd: int, full: str) -> tuple[memoryview, bool | None]:
        """Append the bytes of the open regular file ``fd`` (read until its end) and return them.

        Also says whether the page cache held the whole file (None when the system cannot tell): the
        first read asks for cached data only (``RWF_NOWAIT``), which costs nothing when it is cached.
        """
        start = end = self._offsets[-1]
        size = media_size(fd, full)
        self._reserve(end + size + 1, end)  # one byte more: a read that fills it shows the file grew
        cached: bool | None = None
        done = False  # a short read after the fstat size: the end of the file, no read of 0 bytes needed
        try:
            if _NOWAIT is not None and self._nowait:
                try:
                    n = os.preadv(fd, [self._buf[end:]], 0, _NOWAIT)
                except BlockingIOError:  # its first pages are not cached
                    cached = False
                except OSError as err:
                    if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    self._nowait = False  # this file system cannot tell: plain reads from now on
                else:
                    end += n
                    cached = n >= size  # a short read stops where the cached part ends
                    done = cached and end < len(self._buf)
            while not done:
                if end == len(self._buf):  # the file grew since fstat: read on to its end
                    self._reserve(end + (1 << 20), end)
                room = len(self._buf) - end
                n = _read_at(fd, self._buf[end:], end - start)
                end += n
                done = n == 0 or (n < room and end - start >= size)
        except OSError as err:
            raise MediaReadError(err.errno, err.strerror, full) from None
        if end > _MAX_BINARY:
            raise MediaReadError(0, "larger than 2 GiB, more than an Arrow binary value holds", full)
        self._offsets.append(end)
        return self._buf[start:end], cached

    def append(self, data: bytes) -> None:
        """Append bytes read some other way (a remote file)."""
        start = self._offsets[-1]
        self._reserve(start + len(data), start)
        self._buf[start : start + len(data)] = data
        self._offsets.append(start + len(data))

    def _reserve(self, size: int, used: int) -> None:
        """Room for ``size`` bytes, keeping the first ``used``."""
        if size > len(self._buf):  # a new buffer: Arrow may still hold a view of the old one
            grown = np.empty(max(size, 2 * len(self._buf), 1 << 20), dtype=np.uint8).data
            grown[:used] = self._buf[:used]
            self._buf = grown

    def to_arrow(self) -> pa.Array:
        """The values as an Arrow ``binary`` array over the buffer itself (no copy)."""
        offsets = np.asarray(self._offsets, dtype=np.int32)
        return pa.Array.from_buffers(
            pa.binary(), len(self), [None, pa.py_buffer(offsets), pa.py_buffer(self._buf)]
        )


class RowBatch:
    """Rows of the llava-hf schema; the media bytes of ``images``/``videos``/``audios``/``video_frames`` live
    in the arenas.

    A row is a dict of the schema's columns where ``images``/``videos``/``audios`` hold the relative paths
    (``videos`` None for a video given as its frames) and ``video_frames`` one list of frame paths per
    video; the i-th path of the batch (in row order) names the i-th value of that column's arena.
    ``conversations`` holds ``(from, value)`` pairs (a record's turns as they are): the table is built
    from them without a dict per turn; :meth:`plain_rows` gives ``{"from", "value"}`` dicts.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.media = {column: MediaArena() for column in _MEDIA_COLUMNS}
        #: (width, height) of each image of the ``images`` arena, in order (the dataset card's sizes)
        self.image_sizes: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return sum([arena.nbytes for arena in self.media.values()])

    def clear(self, *, release: bool = False) -> None:
        """Empty the batch for refilling; ``release``: tables made from it stay valid (new media buffers)."""
        self.rows.clear()
        self.image_sizes.clear()
        for arena in self.media.values():
            arena.clear(release=release)

    def mark(self) -> tuple[int, ...]:
        return (*(arena.mark() for arena in self.media.values()), len(self.image_sizes))

    def rollback(self, mark: tuple[int, ...]) -> None:
        for arena, m in zip(self.media.values(), mark):
            arena.rollback(m)
        del self.image_sizes[mark[-1] :]

    def plain_rows(self) -> Iterator[dict[str, Any]]:
        """The rows with ``{"bytes", "path"}`` media values (the bytes copied out of the arenas)."""
        k = dict.fromkeys(_MEDIA_COLUMNS, 0)
        for row in self.rows:
            out = dict(row)
            if "conversations" in row:
                out["conversations"] = [
                    {"from": role, "value": value} for role, value in row["conversations"]
                ]
            for column in _MEDIA_COLUMNS:
                arena = self.media[column]

                def value(path: str | None, column: str = column, arena: MediaArena = arena) -> Any:
                    if path is None:  # a video given as its frames: its ``videos`` value is null
                        return None
                    k[column] += 1
                    return {"bytes": bytes(arena.view(k[column] - 1)), "path": path}

                if column == "video_frames":
                    out[column] = [[value(path) for path in frames] for frames in row[column]]
                else:
                    out[column] = [value(path) for path in row[column]]
            yield out

    def to_table(self, schema: pa.Schema) -> pa.Table:
        """The batch as an Arrow table of ``schema`` (``metadata`` encoded as ``Json`` stores it)."""
        columns: list[pa.Array] = []
        for field in schema:
            name = field.name
            if name in _MEDIA_COLUMNS:
                columns.append(self._media_column(name, field.type))
            elif name == "metadata":  # most records have no other key: "{}" is what Json stores for {}
                encoded = [
                    _EMPTY_JSON if r[name] == {} else at_full_depth(metadata_json, r[name]) for r in self.rows
                ]
                columns.append(pa.array(encoded, type=field.type))
            elif name == "conversations":
                columns.append(_pairs_to_arrow([r[name] for r in self.rows], field.type))
            else:
                columns.append(_to_arrow([r[name] for r in self.rows], field.type))
        return pa.Table.from_arrays(columns, schema=schema)

    def _media_column(self, name: str, type: pa.ListType) -> pa.Array:
        if name == "video_frames":  # a list of frame lists per row: the frames are the inner lists' values
            inner = type.value_type
            lists = [frames for row in self.rows for frames in row[name]]
            frames = self._media_values([path for paths in lists for path in paths], name, inner.value_type)
            values = pa.ListArray.from_arrays(_offsets(map(len, lists)), frames, type=inner)
        else:
            values = self._media_values(
                [path for row in self.rows for path in row[name]], name, type.value_type
            )
        return pa.ListArray.from_arrays(_offsets(len(row[name]) for row in self.rows), values, type=type)

    def _media_values(self, paths: list[str | None], name: str, struct_type: pa.StructType) -> pa.Array:
        """``{bytes, path}`` structs of the arena's values, in order; a None path is a null value."""
        data = self.media[name].to_arrow()
        if None in paths:  # null entries take no arena value: spread the values over the others
            positions = [k for k, path in enumerate(paths) if path is not None]
            data = data.take(pa.array(_spread(positions, len(paths)), type=pa.int64()))
        return pa.StructArray.from_arrays(
            [data, pa.array(paths, type=struct_type.field("path").type)],
            fields=list(struct_type),
            mask=pa.array([path is None for path in paths]) if None in paths else None,
        )


def _spread(positions: list[int], n: int) -> list[int | None]:
    """For ``n`` slots of which ``positions`` hold values: each slot's value index, None elsewhere."""
    out: list[int | None] = [None] * n
    for k, position in enumerate(positions):
        out[position] = k
    return out


def _pairs_to_arrow(values: Sequence[Sequence[tuple[str, str]]], type: pa.ListType) -> pa.Array:
    """A ``list<struct<a, b>>`` column from rows of ``(a, b)`` pairs (no null at any level)."""
    first, second = type.value_type
    pairs = [pair for v in values for pair in v]
    items = pa.StructArray.from_arrays(
        [pa.array([p[0] for p in pairs], type=first.type), pa.array([p[1] for p in pairs], type=second.type)],
        fields=[first, second],
    )
    return pa.ListArray.from_arrays(_offsets(map(len, values)), items, type=type)


def _offsets(lengths: Iterable[int]) -> pa.Array:
    """The ``int32`` offsets of a list column whose lists have these lengths."""
    return pa.array(itertools.accumulate(lengths, initial=0), type=pa.int32())


def _to_arrow(values: list[Any], type: pa.DataType) -> pa.Array:
    """``pa.array(values, type=type)``, with lists and structs built column by column.

    Arrow converts a Python dict per struct value (a turn of a conversation) about ten times slower
    than a flat list of strings; here every leaf is one flat list. None is a null at any level.
    """
    if pa.types.is_list(type):
        mask = [v is None for v in values]
        lists = [() if v is None else v for v in values]
        flat = [item for v in lists for item in v]
        items = _to_arrow(flat, type.value_type) if flat else _empty(type.value_type)
        return pa.ListArray.from_arrays(
            _offsets(map(len, lists)), items, type=type, mask=pa.array(mask) if any(mask) else None
        )
    if pa.types.is_struct(type):
        mask = [v is None for v in values]
        dicts = [{} if v is None else v for v in values]
        children = [_to_arrow([d.get(f.name) for d in dicts], f.type) for f in type]
        return pa.StructArray.from_arrays(
            children, fields=list(type), mask=pa.array(mask) if any(mask) else None
        )
    return pa.array(values, type=type)


@functools.lru_cache(maxsize=64)
def _empty(type: pa.DataType) -> pa.Array:
    """An empty array of ``type`` (the values of a column of empty lists: most rows have no video)."""
    return pa.array([], type=type)


_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


class Prefetch:
    """Open files ahead of use and ask the kernel to read them in the background, while they are cold.

    ``ahead(paths)`` opens each local path (failures are left for the reader to judge) and calls
    ``posix_fadvise(WILLNEED)``; ``take(path)`` hands over the open descriptor, or None. A context
    manager: descriptors not taken are closed at the end.

    On a warm page cache the advice is pure overhead (a page-cache walk per file, about a tenth of a
    build's CPU), so it is given only once the reads find the data uncached: the reader reports
    whether the page cache held each file (:meth:`MediaArena.read`) to ``observe``, and ``probe // 8``
    uncached files within a run of ``probe`` reads turn read-ahead on for the next ``window`` files.
    Files read ahead in time are cached when read, so the advice lapses after ``window`` files; on a
    cold folder the reads that follow find uncached data again, which turns it back on. Where the
    system cannot tell (``None``), every read counts as uncached: read-ahead stays on.
    """

    def __init__(self, limit: int = 512, *, window: int = 256, probe: int = 64) -> None:
        self._fds: dict[str, int] = {}
        self._limit = limit
        self._window = window
        self._probe = probe
        self._budget = 0  # files still to read ahead before the advice lapses
        self._reads = self._uncached = 0

    @property
    def active(self) -> bool:
        return self._budget > 0

    def observe(self, cached: bool | None) -> None:
        """Whether the page cache held a file just read; enough uncached ones turn read-ahead on."""
        self._reads += 1
        self._uncached += cached is not True
        if self._uncached * 8 >= self._probe:
            self._budget = self._window
        elif self._reads < self._probe:
            return
        self._reads = self._uncached = 0

    def ahead(self, paths: Iterable[str]) -> None:
        for path in paths:
            if self._budget <= 0:
                return
            if len(self._fds) >= self._limit or path in self._fds or "://" in path:
                continue
            try:
                fd = open_media(path)
            except MediaReadError:
                continue
            self._budget -= 1
            self._fds[path] = fd
            if _WILLNEED is not None:
                try:
                    os.posix_fadvise(fd, 0, 0, _WILLNEED)
                except OSError:
                    pass  # not a regular file, or a file system without readahead: the reader decides

    def take(self, path: str) -> int | None:
        return self._fds.pop(path, None)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
