"""The one Parquet policy: how llava-hf writes shards of media rows, and reads them back.

:class:`ShardWriter` writes the row batches of original shards (``build_folder`` and
``LlavaBuilder.download_and_prepare(file_format="parquet")`` both use it, so they write the same bytes);
re-sharding before a push opens its files with :func:`open_writer` and the options the build chose. Media
bytes are stored as they are (no compression, no dictionary, no statistics: JPEG bytes do not shrink,
and min/max of image bytes help no reader), text columns are compressed, a row group is one batch. :func:`open_reader` is the reader of ``decode_media`` and the
dataset card: ``pq.ParquetFile``'s own, allocating from the system allocator.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

# pq.ParquetFile's engine, which (unlike ParquetFile) takes a memory pool; see open_reader.
from pyarrow.parquet.core import ParquetReader

__all__ = [
    "DATA_PAGE_BYTES",
    "HARD_LIMIT_FACTOR",
    "ShardPart",
    "ShardWriter",
    "leaf_index",
    "leaf_indices",
    "open_reader",
    "open_writer",
    "parse_shard_size",
    "uses_cdc",
    "writer_options",
]

#: Parquet data pages of about this size, cut between values (a write batch of one value each): a
#: media value is a page of its own, written with one ``write`` of its size (small writes cost the
#: kernel less: see benchmarks/bench_write_size.py), and a reader can fetch one image without reading
#: its neighbours' pages.
DATA_PAGE_BYTES = 64 << 10


def writer_options(
    schema: pa.Schema, *, content_defined_chunking: bool = False, page_index: bool = False
) -> dict[str, Any]:
    """Keyword arguments of ``pyarrow.parquet.ParquetWriter`` for rows of ``schema``.

    ``content_defined_chunking``: datasets' ``DEFAULT_CDC_OPTIONS`` (helps the Hub's Xet storage
    deduplicate re-uploads); ``page_index``: write Parquet's page index.
    """
    binary, other = _leaf_paths(schema)
    options: dict[str, Any] = {
        "compression": {**dict.fromkeys(other, "snappy"), **dict.fromkeys(binary, "none")},
        "use_dictionary": other,
        "write_statistics": other,
        "write_page_index": page_index,
        # Arrow checks the page size limit once per write batch (1024 values by default, which
        # made a row group's media one ~7 MB page): one value per batch cuts pages at any value
        "write_batch_size": 1,
        "data_page_size": DATA_PAGE_BYTES,
    }
    if content_defined_chunking:
        from datasets import config as ds_config

        options["use_content_defined_chunking"] = ds_config.DEFAULT_CDC_OPTIONS
    return options


def parse_shard_size(size: int | str) -> int:
    """``max_shard_size`` in bytes: an int, or a string with a unit as datasets reads it (``"500MB"``)."""
    from datasets.utils.py_utils import convert_file_size_to_int

    from ..errors import UsageError

    try:
        value = int(convert_file_size_to_int(size))
    except (ValueError, TypeError) as err:
        raise UsageError(
            f"max_shard_size={size!r} is not a size", hint="use bytes or a unit: 500MB, 2GB, 1GiB"
        ) from err
    if value <= 0:
        raise UsageError(
            f"max_shard_size={size!r} is not positive", hint="for example max_shard_size='500MB'"
        )
    return value


#: The key under which a file records its content-defined chunking options, as datasets' writer does.
_CDC_KEY = "content_defined_chunking"


def open_writer(
    where: Any, schema: pa.Schema, *, content_defined_chunking: bool = False, page_index: bool = False
) -> pq.ParquetWriter:
    """Open a Parquet writer for rows of ``schema``: the one place llava-hf creates one.

    Options come from :func:`writer_options`; with content-defined chunking the file records its
    options in its key-value metadata, as ``datasets``' own Parquet writer does. The caller writes one
    row group per table (``row_group_size=len(table)``) and closes the writer.
    """
    options = writer_options(schema, content_defined_chunking=content_defined_chunking, page_index=page_index)
    writer = pq.ParquetWriter(where, schema, **options)
    if content_defined_chunking:
        writer.add_key_value_metadata({_CDC_KEY: json.dumps(options["use_content_defined_chunking"])})
    return writer


#: A shard's file is cut when its rows reach this many times ``max_shard_size``: planning sizes the
#: shards (one file each), this only bounds a file whose estimate was far off.
HARD_LIMIT_FACTOR = 2


class ShardPart(NamedTuple):
    """A Parquet file written from a shard: its path, rows, their size in memory, and what ``stats`` counted."""

    path: str
    rows: int
    nbytes: int
    stats: Any


class _Batch(Protocol):
    image_sizes: Any

    def __len__(self) -> int: ...

    def to_table(self, schema: pa.Schema) -> pa.Table: ...


@dataclass(frozen=True)
class ShardWriter:
    """Writes the row batches of one original shard to Parquet: a row group per batch.

    ``max_bytes``: once a file holds this many bytes of rows, the next batch starts a new file (a hard
    limit, see :data:`HARD_LIMIT_FACTOR`; None: one file). ``stats``: makes a counter per file (with
    ``add(table, image_sizes)`` and ``finish()``), whose result is the part's ``stats``. Picklable.
    """

    schema: pa.Schema
    max_bytes: int | None = None
    content_defined_chunking: bool = False
    page_index: bool = False
    stats: Callable[[], Any] | None = None

    def write(
        self, batches: Iterable[_Batch], path_for: Callable[[int], str], *, fs: Any = None
    ) -> list[ShardPart]:
        """Write ``batches`` to ``path_for(0)``, and only when that file holds ``max_bytes`` of rows, on
        to ``path_for(1)``, ... ``fs``: an fsspec file system to open the paths with (default: local)."""
        parts: list[ShardPart] = []
        with contextlib.ExitStack() as stack:
            writer: pq.ParquetWriter | None = None
            path, rows, nbytes, counter = "", 0, 0, None

            def close() -> None:
                nonlocal writer, rows, nbytes, counter
                assert writer is not None
                writer.close()
                stack.close()
                parts.append(ShardPart(path, rows, nbytes, counter.finish() if counter is not None else None))
                writer, rows, nbytes, counter = None, 0, 0, None

            for batch in batches:
                table = batch.to_table(self.schema)
                if writer is None:
                    path = path_for(len(parts))
                    sink = stack.enter_context(fs.open(path, "wb")) if fs is not None else path
                    writer = stack.enter_context(
                        open_writer(
                            sink,
                            self.schema,
                            content_defined_chunking=self.content_defined_chunking,
                            page_index=self.page_index,
                        )
                    )
                    counter = self.stats() if self.stats is not None else None
                writer.write_table(table, row_group_size=len(batch))
                if counter is not None:
                    counter.add(table, batch.image_sizes)
                rows += table.num_rows
                nbytes += table.nbytes
                del table  # before the next batch refills the buffers it wraps
                if self.max_bytes is not None and nbytes >= self.max_bytes:
                    close()
            if writer is not None:
                close()
        return parts

    def write_empty(self, path: str, *, fs: Any = None) -> None:
        """Write a file with the schema and no rows."""
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(fs.open(path, "wb")) if fs is not None else path
            open_writer(
                sink,
                self.schema,
                content_defined_chunking=self.content_defined_chunking,
                page_index=self.page_index,
            ).close()


def uses_cdc(metadata: pq.FileMetaData) -> bool:
    """Whether a Parquet file was written with content-defined chunking (see :func:`open_writer`)."""
    return _CDC_KEY.encode() in (metadata.metadata or {})


def _leaf_paths(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """Parquet column paths of the schema's leaves, split into binary (media bytes) and the rest."""
    sink = io.BytesIO()
    pq.write_table(schema.empty_table(), sink)
    parquet_schema = pq.ParquetFile(io.BytesIO(sink.getvalue())).schema
    binary: list[str] = []
    other: list[str] = []
    for i in range(len(parquet_schema)):
        column = parquet_schema.column(i)
        (
            binary if column.physical_type == "BYTE_ARRAY" and column.logical_type.type == "NONE" else other
        ).append(column.path)
    return binary, other


# ParquetFile (pyarrow >= 19) opens its reader with Arrow extension types on; older versions cannot.
_PARQUET_FILE_DEFAULTS: dict[str, Any] = (
    {"arrow_extensions_enabled": True}
    if "arrow_extensions_enabled" in inspect.signature(pq.ParquetFile.__init__).parameters
    else {}
)


def open_reader(source: Any, *, buffer_size: int) -> ParquetReader:
    """``pq.ParquetFile(source, pre_buffer=False, buffer_size=buffer_size)``'s reader, allocating from
    the system allocator instead of Arrow's default pool. The caller closes it.

    ``ParquetFile`` always reads into Arrow's default pool, which hands freed memory back to the kernel
    between reads, so each batch of media bytes would be faulted in afresh; with the system allocator the
    memory is reused. Same options as ``ParquetFile`` otherwise.
    """
    reader = ParquetReader(memory_pool=pa.system_memory_pool())
    reader.open(source, buffer_size=buffer_size, pre_buffer=False, **_PARQUET_FILE_DEFAULTS)
    return reader


def leaf_indices(reader: ParquetReader, columns: Iterable[str]) -> list[int]:
    """The Parquet leaf columns of the named top-level columns (absent names have none), as
    ``ParquetReader.iter_batches`` takes them."""
    wanted = set(columns)
    return [i for i, path in enumerate(reader.column_paths) if path[0] in wanted]


def leaf_index(reader: ParquetReader, column: str, leaf: str) -> int | None:
    """The leaf column of ``column``'s list-element field ``leaf`` (``images.list.element.bytes``), or
    None when the file has none."""
    for i, parts in enumerate(reader.column_paths):
        if len(parts) > 1 and parts[0] == column and parts[-1] == leaf:
            return i
    return None
