"""The one module where llava-hf adapts ``datasets``' internals; everything else uses its public API.

Checked on datasets 4.8.0 (the lowest version pyproject.toml allows: CI runs the tests that touch this
module on it too) and 5.2.0. (4.7 has ``Json``, which the schema needs, but cannot ``reshard()`` a
formatted stream.) Each adaptation names what it relies on:

- :class:`ShardedArrowBuilder` (:func:`prepare_parquet_job`): :class:`~llava_hf.LlavaBuilder`'s Parquet files. ``datasets``' own
  ``ParquetWriter`` embeds media with ``Image``/``Video.embed_storage``, which keeps only the basename of
  a path (``1.jpg`` for ``coco/train2017/1.jpg``); llava-hf's rows hold their bytes already, so each
  original shard is written by the one shard writer (:class:`~llava_hf.build.parquet.ShardWriter`), as
  ``build_folder`` writes it. Relies on ``DatasetBuilder._prepare_split_single``'s job protocol
  (``(job_id, done, content)``, ``content`` with 7 fields) and on
  the ``JJJJJ``/``SSSSS`` file name pattern that ``_prepare_split`` renames.
- :func:`table_key`: the key of ``_generate_tables`` (``datasets.builder.Key``).
- :func:`unwrap_generation_errors`: ``DatasetGenerationError`` wraps every error of generation, and its
  cause does not survive the trip from a worker process; llava-hf's own error is raised instead.
- :func:`register_format` / :data:`PythonFormatter`: ``datasets.formatting._register_formatter``, the
  only way to register a format type (what datasets uses for its own).
- :func:`undecoded_stream`: ``ds.decode(False)``, which since datasets 5 also drops a threaded decoding
  step set before (``decode(num_threads=...)``, what ``load_dataset`` does for remote data); before, the
  step stays (a ``map`` of ``_apply_async``) and is dropped here.
- :func:`lean_parquet_stream`: a stream of datasets' ``Parquet`` builder (a built folder or a Hub repo)
  reads each row group when its rows are asked for, in the consumer's thread, instead of ahead in
  Arrow's threads, which buffered most of a shard while rows were decoded slowly. It swaps the bottom
  ``ArrowExamplesIterable``'s ``generate_tables_fn`` (following wrappers' ``ex_iterable``), keeping the
  same files, row groups, columns, keys and cast; any other structure, or options only datasets' reader
  honours (``filters``, ``fragment_scan_options``, ``on_bad_files``), is left as datasets built it.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import datasets
import datasets.builder
import pyarrow as pa
from datasets.formatting import PythonFormatter, _register_formatter
from datasets.iterable_dataset import ArrowExamplesIterable, _BaseExamplesIterable
from datasets.packaged_modules.parquet.parquet import Parquet
from datasets.table import table_cast

from .errors import LlavaHFError
from .utils.logging import get_logger

__all__ = [
    "KEY",
    "READ_BATCH_ROWS",
    "READ_BUFFER_BYTES",
    "PythonFormatter",
    "ShardedArrowBuilder",
    "lean_parquet_stream",
    "prepare_parquet_job",
    "register_format",
    "table_key",
    "undecoded_stream",
    "unwrap_generation_errors",
]

logger = get_logger(__name__)

#: Rows per Arrow batch of the lean Parquet reader, unless the dataset's config sets ``batch_size``.
READ_BATCH_ROWS = 16

#: Bytes per read of a column chunk (pyarrow's buffered stream): bounds memory whatever the row group size.
READ_BUFFER_BYTES = 1 << 20


def register_format(formatter: type[PythonFormatter], name: str) -> None:
    """Register a format type, so ``ds.with_format(name, **kwargs)`` formats rows with ``formatter``."""
    _register_formatter(formatter, name)


def table_key(shard_idx: int, table_idx: int) -> Any:
    """The key of a table of ``_generate_tables``: original shard and table index within it."""
    return KEY(shard_idx, table_idx)


class unwrap_generation_errors(contextlib.AbstractContextManager[None]):
    """Re-raise llava-hf's own error when ``datasets`` wraps it in ``DatasetGenerationError``."""

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, datasets.exceptions.DatasetGenerationError):
            cause = exc.__cause__ or exc.__context__
            while cause is not None and not isinstance(cause, LlavaHFError):
                cause = cause.__cause__ or cause.__context__
            if cause is not None:
                raise cause from None


class ShardedArrowBuilder(datasets.ArrowBasedBuilder):
    """An ``ArrowBasedBuilder`` whose Parquet files are written one original shard each by a writer of its
    own (``parquet_shard_writer``) from ``shard_batches(shard, gen_kwargs)``, and whose errors of
    generation are raised as llava-hf's own; the ``shards`` gen_kwarg lists a split's original shards."""

    def parquet_shard_writer(self, max_shard_size: int | str | None) -> Any:
        raise NotImplementedError

    def shard_batches(self, shard: Any, gen_kwargs: dict[str, Any]) -> Iterable[Any]:
        raise NotImplementedError

    def _prepare_split_single(
        self, gen_kwargs: dict[str, Any], fpath: str, file_format: str, max_shard_size: int, job_id: int
    ) -> Iterator[tuple[int, bool, Any]]:
        with unwrap_generation_errors():
            if file_format != "parquet":
                yield from super()._prepare_split_single(
                    gen_kwargs=gen_kwargs,
                    fpath=fpath,
                    file_format=file_format,
                    max_shard_size=max_shard_size,
                    job_id=job_id,
                )
                return
            yield from prepare_parquet_job(
                self,
                list(gen_kwargs["shards"]),
                lambda shard: self.shard_batches(shard, gen_kwargs),
                self.parquet_shard_writer(max_shard_size),
                fpath,
                job_id,
            )


def prepare_parquet_job(
    builder: datasets.DatasetBuilder,
    shards: Sequence[Any],
    shard_batches: Callable[[Any], Iterable[Any]],
    writer: Any,
    fpath: str,
    job_id: int,
) -> Iterator[tuple[int, bool, Any]]:
    """One job of ``download_and_prepare(file_format="parquet")``: each original shard in ``shards``
    written by ``writer`` (a :class:`~llava_hf.build.parquet.ShardWriter`) from ``shard_batches(shard)`` to files of its own, in datasets' job protocol."""
    fs = builder._fs  # the output's file system (datasets' storage_options)

    def path(i: int) -> str:
        return fpath.replace("SSSSS", f"{i:05d}").replace("JJJJJ", f"{job_id:05d}")

    lengths: list[int] = []
    original_lengths: list[int] = []
    total_rows = total_bytes = 0
    for shard in shards:
        first = len(lengths)
        parts = writer.write(shard_batches(shard), lambda i, first=first: path(first + i), fs=fs)
        for part in parts:
            lengths.append(part.rows)
            total_rows += part.rows
            total_bytes += part.nbytes
            yield job_id, False, part.rows
        original_lengths.append(sum(part.rows for part in parts))
    if not lengths:  # every record rejected: datasets still renames one file per job
        writer.write_empty(path(0), fs=fs)
        lengths.append(0)
    features = builder.info.features
    yield (
        job_id,
        True,
        (total_rows, total_bytes, features, len(lengths), lengths, len(shards), original_lengths),
    )


#: The example key type of datasets' table generators.
KEY: Any = datasets.builder.Key


class _ParquetTables:
    """datasets' ``Parquet._generate_tables`` with pyarrow's synchronous reader, for the same shards.

    Same files, row groups, columns, keys and cast; the difference is only how the bytes are read:
    ``pq.ParquetFile(pre_buffer=False).iter_batches(use_threads=False)``'s reader reads a row group when
    its rows are asked for, where datasets' ``Fragment.to_batches`` reads ahead in Arrow's threads. Picklable (it
    holds the builder, as datasets' bound method does), so DataLoader workers get it too.
    """

    def __init__(self, builder: Parquet) -> None:
        self.builder = builder

    def __call__(
        self, files: Sequence[str], row_groups_list: Sequence[Sequence[int] | None]
    ) -> Iterator[tuple[Any, pa.Table]]:
        from .build.parquet import leaf_indices, open_reader  # (llava_hf.build imports this module)

        config = self.builder.config
        features = self.builder.info.features
        schema = features.arrow_schema if features is not None else None  # once, not per batch
        # The builder's own opener: datasets makes it ``xopen`` (remote files, the Hub token) when streaming.
        opener = Parquet._generate_tables.__globals__.get("open", builtins.open)
        for file_idx, (file, row_groups) in enumerate(zip(files, row_groups_list)):
            # a local file is read by Arrow itself; a remote one through the builder's opener (whose
            # Python file object Arrow reads through Python calls, a copy each)
            local = isinstance(file, str) and "://" not in file and "::" not in file
            with (
                contextlib.nullcontext(file) if local else opener(file, "rb") as f,
                contextlib.closing(open_reader(f, buffer_size=READ_BUFFER_BYTES)) as reader,
            ):
                groups = list(range(reader.num_row_groups) if row_groups is None else row_groups)
                if not groups:
                    continue
                columns = None if config.columns is None else leaf_indices(reader, config.columns)
                batches = reader.iter_batches(
                    config.batch_size or READ_BATCH_ROWS,
                    row_groups=groups,
                    column_indices=columns,
                    use_threads=False,
                )
                for batch_idx, batch in enumerate(batches):
                    table = pa.Table.from_batches([batch])
                    yield KEY(file_idx, batch_idx), table if schema is None else table_cast(table, schema)


def _lean_tables_fn(generate_tables_fn: Any) -> _ParquetTables | None:
    """Our reader for datasets' Parquet builder when it uses only options we honour; else None."""
    builder = getattr(generate_tables_fn, "__self__", None)
    method = getattr(generate_tables_fn, "__func__", None)
    if not isinstance(builder, Parquet) or method is not Parquet._generate_tables:
        return None  # another builder, or a Parquet subclass that reads differently
    config = builder.config
    if (
        getattr(config, "filters", None) is not None
        or getattr(config, "fragment_scan_options", None) is not None
        or getattr(config, "on_bad_files", "error") != "error"
    ):
        return None  # options of datasets' reader: keep it, as asked for
    return _ParquetTables(builder)


def _with_lean_reader(ex_iterable: _BaseExamplesIterable) -> _BaseExamplesIterable | None:
    """A copy of the iterable chain whose datasets Parquet source reads with :class:`_ParquetTables`.

    Follows single-source wrappers (``map``, ``shuffle``, ``skip``, ... store theirs as ``ex_iterable``)
    down to an :class:`ArrowExamplesIterable`; None when the chain is anything else (several sources,
    another reader), and the stream is then left as it is.
    """
    if isinstance(ex_iterable, ArrowExamplesIterable):
        tables_fn = _lean_tables_fn(getattr(ex_iterable, "generate_tables_fn", None))
        if tables_fn is None:
            return None
        lean = copy.copy(ex_iterable)
        lean.generate_tables_fn = tables_fn
        return lean
    source = getattr(ex_iterable, "ex_iterable", None)
    if not isinstance(source, _BaseExamplesIterable):
        return None
    lean_source = _with_lean_reader(source)
    if lean_source is None:
        return None
    wrapper = copy.copy(ex_iterable)
    wrapper.ex_iterable = lean_source
    return wrapper


def undecoded_stream(ds: datasets.IterableDataset) -> datasets.IterableDataset:
    """``ds`` read without any decoding: media as ``{"bytes", "path"}``, JSON as stored."""
    raw = ds.decode(False)
    ex_iterable = raw._ex_iterable
    function = getattr(ex_iterable, "function", None)
    inner = getattr(function, "func", None)
    if getattr(inner, "__name__", "") != "_apply_async" or not hasattr(ex_iterable, "ex_iterable"):
        return raw
    return _with_source(raw, ex_iterable.ex_iterable)  # the threaded decoding's source


def _with_source(ds: datasets.IterableDataset, ex_iterable: Any) -> datasets.IterableDataset:
    return datasets.IterableDataset(
        ex_iterable=ex_iterable,
        info=ds.info.copy(),
        split=ds.split,
        formatting=ds._formatting,
        distributed=copy.deepcopy(ds._distributed),
        token_per_repo_id=ds._token_per_repo_id,
    )


def lean_parquet_stream(ds: datasets.IterableDataset) -> datasets.IterableDataset:
    lean = _with_lean_reader(ds._ex_iterable)  # datasets internal
    if lean is None:
        logger.debug("decode_media: not a plain datasets Parquet stream, datasets' reader kept")
        return ds
    return _with_source(ds, lean)
