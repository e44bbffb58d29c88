"""How llava-hf writes media rows to Parquet, and reads them back.

``build_folder``, ``LlavaBuilder.download_and_prepare(file_format="parquet")`` and re-sharding before a
push all write rows of the llava-hf schema; these options store media bytes as they are (no
compression, no dictionary, no statistics: JPEG bytes do not shrink, and min/max of image bytes help
no reader) and compress the text columns. :func:`open_reader` is the reader of ``decode_media`` and the
dataset card: ``pq.ParquetFile``'s own, allocating from the system allocator.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# pq.ParquetFile's engine, which (unlike ParquetFile) takes a memory pool; see open_reader.
from pyarrow.parquet.core import ParquetReader

__all__ = [
    "DATA_PAGE_BYTES",
    "arrow_stream_to_parquet",
    "leaf_index",
    "leaf_indices",
    "open_reader",
    "open_writer",
    "parse_shard_size",
    "uses_cdc",
    "writer_options",
]

#: Parquet data pages of about this size, cut between values (a write batch of one value each): a
#: media value is a page of its own, written with one ``write`` of its size. On the VMs measured
#: (benchmarks/bench_write_size.py), 512 KB-2 MB writes (Arrow's ~1 MB default pages) cost the kernel
#: 4-6x what 64-160 KB writes cost; that was the largest part of a build's CPU. A reader can also
#: fetch one image without reading its neighbours' pages.
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


def arrow_stream_to_parquet(fs: Any, path: str, *, content_defined_chunking: bool, page_index: bool) -> None:
    """Rewrite, in place, an Arrow IPC stream file (as ``datasets``' ``ArrowWriter`` writes) as Parquet.

    A row group per record batch; the schema's metadata (datasets' ``huggingface`` features) is kept,
    and CDC options are recorded as ``datasets``' own Parquet writer records them. ``fs`` is the
    fsspec file system holding ``path``; the Parquet file is written beside it, then moved over it.
    """
    tmp = f"{path}.parquet-tmp"
    try:
        with fs.open(path, "rb") as src, pa.ipc.open_stream(src) as reader:
            schema = reader.schema
            with (
                fs.open(tmp, "wb") as dst,
                open_writer(
                    dst, schema, content_defined_chunking=content_defined_chunking, page_index=page_index
                ) as writer,
            ):
                for batch in reader:
                    writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    fs.mv(tmp, path)


# ParquetFile (pyarrow >= 19) opens its reader with Arrow extension types on; older versions cannot.
_PARQUET_FILE_DEFAULTS: dict[str, Any] = (
    {"arrow_extensions_enabled": True}
    if "arrow_extensions_enabled" in inspect.signature(pq.ParquetFile.__init__).parameters
    else {}
)


def open_reader(source: Any, *, buffer_size: int) -> ParquetReader:
    """``pq.ParquetFile(source, pre_buffer=False, buffer_size=buffer_size)``'s reader, allocating from
    the system allocator instead of Arrow's default pool. The caller closes it.

    ``ParquetFile`` always reads into Arrow's default pool (mimalloc in pyarrow's wheels), which hands
    freed memory back to the kernel between reads: each batch of media bytes was faulted in afresh.
    With the system allocator the memory is reused. Streaming 2,000 rows through ``decode_media``
    without torch: 52k page faults instead of 185k, a fifth of the system time, 40 MB less RSS; the
    card's reads after a 20k build: ~0.1 s less CPU. Same options as ``ParquetFile`` otherwise.
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
