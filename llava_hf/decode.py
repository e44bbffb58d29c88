"""Decode each image once per row, and videos with PyAV: :func:`decode_media`, the decode path for trainers.

Why this exists: datasets 5.2 decodes a ``List(Image())`` column in
``datasets.features.features.decode_nested_example`` (the ``List``/``LargeList`` branch): it decodes
the first non-null element to test whether decoding changes it, throws that result away, then decodes
the whole list again. Every single-image row is therefore decoded twice (a three-image row four
times). The upstream fix tests the schema instead of the data (``require_decoding(sub_schema)``):
docs/upstream/datasets-decode-once.patch.

:func:`decode_media` gives the same rows as datasets' own decoding (same PIL images, same pixels, same
``features``), with each media decoded exactly once, lazily, row by row. Videos are decoded by
:mod:`llava_hf.media.video` with PyAV into sampled frames (never with torchcodec, which datasets' own
``Video()`` decoding needs), and their times go in a ``video_timestamps`` column:

* :class:`datasets.IterableDataset` (streaming): media columns are read undecoded (``ds.decode(False)``,
  which costs nothing) and decoded in a lazy ``map`` whose declared ``features`` are the decoded ones,
  the same construction datasets' own ``IterableDataset.decode(num_threads=...)`` uses.
* :class:`datasets.Dataset`: no data is copied or cast; the dataset gets a Python format whose feature
  decoder decodes once (``ds.format["type"] == "llava_hf"``), so ``ds[i]``, iteration, ``ds.map``
  inputs and a torch ``DataLoader`` all see decoded rows while ``ds.features`` still says ``Image()``.

Streaming memory: the Parquet reader is swapped. datasets 5.2 streams a Parquet shard with
``Fragment.to_batches(batch_readahead=0, fragment_readahead=0)`` (``packaged_modules/parquet``), and
pyarrow's threaded scanner behind it still reads ahead of its consumer in Arrow's threads: when rows are
consumed slowly, as when each one's images are decoded (~2-3 ms a row), it buffers most of a shard
(measured with pyarrow 26: 380-440 MB of Arrow memory on 460 MB shards of 64-row groups; as much with a
2.5 ms sleep per row and no decoding at all; with ``use_threads=False``, which datasets does not pass,
it does not). pyarrow's default pre-buffering adds the row groups already
read of the file, kept until the file is done (apache/arrow#39808). Together they took a streaming
``decode_media`` to 1.3 GB of RSS. So for a stream whose source is datasets' ``Parquet`` builder (a
built folder or a Hub repo, also under ``split_dataset_by_node``, ``map``, ``shuffle``, ... and the chat
mapping's ``map``), :func:`decode_media` keeps the same shards (files, row groups), columns, example keys
and cast to the declared features, and only swaps the bottom ``ArrowExamplesIterable``'s
``generate_tables_fn`` for :class:`_ParquetTables`: ``pq.ParquetFile(pre_buffer=False,
buffer_size=READ_BUFFER_BYTES).iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False)``'s reader
(allocating from the system allocator, not Arrow's default pool: see ``_parquet.open_reader``), opened with
the builder's own opener (datasets' ``xopen`` when streaming: remote files, the Hub token). It reads a
row group only when its rows are asked for, in the consumer's thread: a few MB of Arrow memory instead
of hundreds. The swap works on datasets internals (``ArrowExamplesIterable.generate_tables_fn``, the
builder's ``config``, wrappers' ``ex_iterable``), checked at each step: when the structure is not the
expected one (another builder, several sources such as ``interleave_datasets``, a Parquet subclass) or
the builder was configured with options only datasets' reader honours (``filters``,
``fragment_scan_options``, ``on_bad_files``), the stream is left as datasets built it. The dataset
itself and datasets' global state are not modified.

Pillow's memory: when it first decodes, :func:`decode_media` lets Pillow keep up to
``IMAGE_BLOCKS_KEPT`` freed image buffers for reuse (``PIL.Image.core.set_blocks_max``), unless the
process already chose (``PILLOW_BLOCKS_MAX`` in the environment, or a non-zero value set before). With
Pillow's default of none, every decoded image's ~1 MB goes back to glibc, which trims its heap and
faults fresh pages in for the next image: 15-20% of a streaming run's time on the benchmark corpus.

torch: datasets imports torch (~190 MB of RSS) whenever an ``IterableDataset`` is created and torch is
installed (to subclass ``torch.utils.data.IterableDataset``), before :func:`decode_media` is called;
``USE_TORCH=0`` in the environment turns that off. A trainer imports torch anyway.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import datasets
import datasets.builder
import pyarrow as pa

# datasets has no public way to register a format type; _register_formatter is what it uses for its own.
from datasets.formatting import PythonFormatter, _register_formatter

# The streaming reader swap (see the module docstring) works on these datasets internals.
from datasets.iterable_dataset import ArrowExamplesIterable, _BaseExamplesIterable
from datasets.packaged_modules.parquet.parquet import Parquet
from datasets.table import table_cast

from .build.writer import leaf_indices, open_reader
from .errors import UsageError
from .media.audio import StoredAudios
from .media.video import TIMESTAMPS_COLUMN, StoredVideos, VideoSampling, output_features, video_columns
from .utils.logging import get_logger

__all__ = ["DECODE_FORMAT", "TIMESTAMPS_COLUMN", "decode_media"]

logger = get_logger(__name__)

#: The format type :func:`decode_media` sets on a :class:`datasets.Dataset`.
DECODE_FORMAT = "llava_hf"

#: Rows per Arrow batch of decode_media's Parquet reader, unless the dataset's config sets ``batch_size``.
READ_BATCH_ROWS = 16

#: Bytes per read of a column chunk (pyarrow's buffered stream): bounds memory whatever the row group size.
READ_BUFFER_BYTES = 1 << 20

DatasetT = TypeVar(
    "DatasetT", datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict
)

TokenPerRepoId = dict[str, str | bool | None] | None


def decode_media(
    ds: DatasetT,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    sampling_rate: int | None = None,
) -> DatasetT:
    """Return ``ds`` with every image decoded exactly once per row, and every video decoded with PyAV.

    Args:
        ds: a :class:`datasets.Dataset` or :class:`datasets.IterableDataset` with known features, as
            ``load_dataset`` gives for a llava-hf folder or Hub repo (streaming or not); a ``DatasetDict`` or
            ``IterableDatasetDict`` is decoded split by split. Every column
            whose feature decodes (``images``, ``videos``, ``metadata``'s ``Json``, ...) is decoded, once.
            ``ds`` must not carry a format (``with_format("torch")``, ``with_transform``): apply those after.
        num_frames: frames per video, at ``numpy.linspace(0, n - 1, num_frames, dtype=int)`` of its ``n``
            frames (LLaVA-NeXT's uniform rule), or all ``n`` when ``n < num_frames``. The default when
            neither ``num_frames`` nor ``fps`` is given: 8.
        fps: instead, one frame every ``1 / fps`` seconds of presentation time (Qwen-VL's rule): the frame
            on screen at ``0, 1/fps, 2/fps, ...`` seconds, each frame once.
        max_frames: with ``fps``, at most this many frames per video (default 768), evenly thinned.
        sampling_rate: the rate every audio file is resampled to (PyAV's ``AudioResampler``); by default
            each keeps its own.

    Returns:
        A dataset of the same kind, lazy (nothing is decoded or copied up front). Images are PIL images
        exactly as datasets gives them (``Image.decode_example``: EXIF orientation applied, the feature's
        ``mode`` honoured). ``features`` are the input's, so they keep saying ``List(Image())``.

        Decoding lets Pillow reuse the memory of freed images (up to ``IMAGE_BLOCKS_KEPT`` buffers,
        see the module docstring); ``PILLOW_BLOCKS_MAX`` in the environment overrides it.

        Each video is a ``numpy.ndarray`` of ``uint8``, shape ``(T, H, W, 3)`` (RGB): exactly the frames
        PyAV's own decoding of the file gives at the sampled positions (see :mod:`llava_hf.media.video`; only
        the sampled frames are held). Rows get a ``video_timestamps`` column beside ``videos``: for each
        video, the sampled frames' presentation times in seconds from its first frame (time-aware
        models such as Qwen2.5-VL need them). A streaming dataset declares it in its ``features``
        (``List(List(float64))``); a ``Dataset`` adds it to the rows it gives (its ``features`` and
        ``column_names`` are the stored ones). torchcodec is never used (datasets' own ``Video()``
        decoding needs it).

        Each audio file (``audios``) is ``{"array": numpy.ndarray (float32), "sampling_rate": int}``, decoded
        with PyAV (never torchcodec, which datasets' own ``Audio()`` decoding needs): shape ``(samples,)``
        for mono, ``(channels, samples)`` otherwise (see :mod:`llava_hf.media.audio`).

    Raises:
        UsageError: ``ds`` is not a Dataset/IterableDataset, its features are unknown, it has a format or
            a ``video_timestamps`` column already, or the sampling options are wrong.
        MediaDecodeError: (while iterating) a video or audio file PyAV cannot decode; names the record,
            column and path.

    Example::

        ds = decode_media(load_dataset("out/", split="train", streaming=True), num_frames=16)
        row = next(iter(ds))  # row["images"][0] is a PIL image, decoded once;
        # row["videos"][0] a (16, H, W, 3) uint8 array, row["video_timestamps"][0] its 16 times in seconds
    """
    sampling = VideoSampling.from_options(num_frames=num_frames, fps=fps, max_frames=max_frames)
    if sampling_rate is not None and (
        isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int) or sampling_rate < 1
    ):
        raise UsageError(
            f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}",
            hint="for example sampling_rate=16000 (Whisper's rate), or leave it out to keep each file's own",
        )
    if isinstance(ds, datasets.IterableDataset):
        return _decode_iterable(ds, sampling, sampling_rate)
    if isinstance(ds, datasets.Dataset):
        return _decode_dataset(ds, sampling, audio_rate=sampling_rate)
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: _decode_dataset(d, sampling, audio_rate=sampling_rate) for split, d in ds.items()}
        )
    if isinstance(ds, datasets.IterableDatasetDict):
        return datasets.IterableDatasetDict(
            {split: _decode_iterable(d, sampling, sampling_rate) for split, d in ds.items()}
        )
    raise UsageError(
        "decode_media takes a datasets.Dataset, IterableDataset, DatasetDict or IterableDatasetDict, "
        f"got {type(ds).__name__}",
        hint="load the data with datasets.load_dataset(...) or llava_hf.load_llava(...) first",
    )


# --- decoding, once ---------------------------------------------------------------------------------------


def _needs_decoding(feature: Any, media: bool = True) -> bool:
    """Whether a (nested) feature decodes, from the schema alone (like datasets' ``require_decoding``);
    with ``media=False``, images, videos and audio count as not decoding."""
    if isinstance(feature, dict):
        return any(_needs_decoding(f, media) for f in feature.values())
    if isinstance(feature, (list, tuple)):
        return _needs_decoding(feature[0], media)
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return _needs_decoding(feature.feature, media)
    if not media and isinstance(feature, (datasets.Image, datasets.Video, datasets.Audio)):
        return False
    return hasattr(feature, "decode_example") and bool(getattr(feature, "decode", True))


def _decode_value(
    feature: Any,
    value: Any,
    token_per_repo_id: TokenPerRepoId,
    videos: StoredVideos,
    audios: StoredAudios,
    rid: Any = None,
    column: str = "",
    position: int = 0,
) -> Any:
    """``decode_nested_example`` without the probe: each element is decoded once, or not at all."""
    if value is None:
        return None
    if isinstance(feature, dict):
        return {
            key: _decode_value(sub, value.get(key), token_per_repo_id, videos, audios, rid, column)
            for key, sub in feature.items()
        }
    if isinstance(feature, (list, tuple, datasets.List, datasets.LargeList)):
        sub = feature[0] if isinstance(feature, (list, tuple)) else feature.feature
        if not _needs_decoding(sub):
            return list(value)
        return [
            _decode_value(sub, item, token_per_repo_id, videos, audios, rid, column, i)
            for i, item in enumerate(value)
        ]
    if isinstance(feature, datasets.Video):  # with PyAV, never datasets' torchcodec decoding
        return videos.decode(value).frames if feature.decode else value
    if isinstance(feature, datasets.Audio):  # with PyAV, never datasets' torchcodec decoding
        if not feature.decode:
            return value
        return audios.decode(value, rid=rid, column=column or "audios", position=position)
    if hasattr(feature, "decode_example") and getattr(feature, "decode", True):
        return feature.decode_example(value, token_per_repo_id=token_per_repo_id)
    return value


class _FeaturesDecoder:
    """Drop-in for datasets' ``PythonFeaturesDecoder`` that decodes each value once, videos with PyAV."""

    def __init__(
        self,
        features: datasets.Features | None,
        token_per_repo_id: TokenPerRepoId = None,
        sampling: VideoSampling | None = None,
        media: bool = True,
        audio_rate: int | None = None,
    ) -> None:
        self.features = features
        self.token_per_repo_id = token_per_repo_id
        self._decoded = {name: f for name, f in (features or {}).items() if _needs_decoding(f, media)}
        self._video_columns = video_columns(features) if media else {}
        self._videos = StoredVideos(sampling or VideoSampling(), token_per_repo_id)
        self._audios = StoredAudios(audio_rate, token_per_repo_id)

    def decode_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in row.items():
            times = self._video_columns.get(name)
            if times is None:
                out[name] = self._decode(name, value, row.get("id"))
            else:
                out[name], out[times] = self._videos.column_value(
                    self._features_of(name), value, rid=row.get("id"), column=name
                )
        return out

    def decode_column(self, column: Iterable[Any], column_name: str) -> list[Any]:
        if column_name in self._video_columns:
            return [
                self._videos.column_value(self._features_of(column_name), value, column=column_name)[0]
                for value in column
            ]
        return [self._decode(column_name, value) for value in column]

    def decode_batch(self, batch: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        ids = list(batch["id"]) if "id" in batch else None
        for name, column in batch.items():
            times = self._video_columns.get(name)
            if times is None:
                out[name] = self.decode_column(column, name)
                continue
            pairs = [
                self._videos.column_value(
                    self._features_of(name), value, rid=None if ids is None else ids[i], column=name
                )
                for i, value in enumerate(column)
            ]
            out[name] = [frames for frames, _ in pairs]
            out[times] = [stamps for _, stamps in pairs]
        return out

    def _features_of(self, name: str) -> Any:
        return self.features[name] if self.features is not None else None

    def _decode(self, name: str, value: Any, rid: Any = None) -> Any:
        feature = self._decoded.get(name)
        if feature is None:
            return value
        if not _image_buffers_kept:
            _keep_image_buffers()
        return _decode_value(feature, value, self.token_per_repo_id, self._videos, self._audios, rid, name)


#: Freed image buffers Pillow keeps for reuse once decode_media decodes (Pillow's default keeps none).
IMAGE_BLOCKS_KEPT = 8

_image_buffers_kept = False


def _keep_image_buffers() -> None:
    """Let Pillow reuse the memory of freed images (``PIL.Image.core.set_blocks_max``), once per process.

    By default Pillow frees each image's pixel buffer, so a loop that decodes an image, converts it and
    drops it hands ~1 MB back to glibc per image, and glibc trims its heap and faults fresh pages in for
    the next one. Measured on the benchmark corpus, that was 15-20% of a streaming ``decode_media``'s time,
    all in the kernel; with 8 buffers kept it was gone, at the same peak RSS. The cache holds at most
    ``IMAGE_BLOCKS_KEPT`` buffers of at most Pillow's block size (16 MB). Left alone when the process
    chose a value: ``PILLOW_BLOCKS_MAX`` in the environment, or a non-zero ``set_blocks_max`` before.
    """
    global _image_buffers_kept
    _image_buffers_kept = True
    if "PILLOW_BLOCKS_MAX" in os.environ:
        return
    import PIL.Image

    if PIL.Image.core.get_blocks_max() == 0:
        PIL.Image.core.set_blocks_max(IMAGE_BLOCKS_KEPT)
        logger.debug("decode_media: Pillow keeps up to %d freed image buffers for reuse", IMAGE_BLOCKS_KEPT)


class _RowDecoder:
    """The picklable ``map`` function of the streaming path: one row in, a new decoded row out."""

    def __init__(
        self,
        features: datasets.Features,
        token_per_repo_id: TokenPerRepoId,
        sampling: VideoSampling,
        audio_rate: int | None = None,
    ) -> None:
        self._decoder = _FeaturesDecoder(features, token_per_repo_id, sampling, audio_rate=audio_rate)

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self._decoder.decode_row(row)


class _FormatMarker:
    """Stored in the Dataset's format kwargs. Unpickling it (in a DataLoader worker started with spawn or
    forkserver) imports this module, which registers the ``llava_hf`` format before any row is read."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FormatMarker)

    def __hash__(self) -> int:
        return hash(_FormatMarker)

    def __repr__(self) -> str:
        return "llava_hf.decode_media"


class _DecodeOnceFormatter(PythonFormatter):
    """datasets' Python formatter (rows, columns, batches, lazy rows) with the decode-once decoder.

    With a ``transform`` it works as datasets' ``with_transform`` formatter does (the transform takes and
    gives a batch), on rows decoded by this decoder; ``media=False`` leaves images and videos undecoded.
    """

    def __init__(
        self,
        features: datasets.Features | None = None,
        lazy: bool = False,
        token_per_repo_id: TokenPerRepoId = None,
        llava_hf: _FormatMarker | None = None,
        video_sampling: VideoSampling | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        media: bool = True,
        audio_rate: int | None = None,
    ) -> None:
        super().__init__(
            features=features, lazy=lazy and transform is None, token_per_repo_id=token_per_repo_id
        )
        self.python_features_decoder = _FeaturesDecoder(
            self.features, self.token_per_repo_id, video_sampling, media, audio_rate
        )
        self.transform = transform

    def format_row(self, pa_table: pa.Table) -> Mapping[str, Any]:
        if self.transform is None:
            return super().format_row(pa_table)
        return {key: values[0] for key, values in self.format_batch(pa_table).items()}

    def format_column(self, pa_table: pa.Table) -> list[Any]:
        if self.transform is None:
            return super().format_column(pa_table)
        return list(self.format_batch(pa_table)[pa_table.column_names[0]])

    def format_batch(self, pa_table: pa.Table) -> Mapping[str, Any]:
        batch = super().format_batch(pa_table)
        return batch if self.transform is None else self.transform(dict(batch))


_register_formatter(_DecodeOnceFormatter, DECODE_FORMAT)


# --- the two dataset kinds --------------------------------------------------------------------------------


def _checked_features(features: datasets.Features | None, what: str) -> datasets.Features:
    if features is None:
        raise UsageError(
            f"decode_media needs the dataset's features, but this {what} has none (Unknown features)",
            hint="cast it to the llava-hf schema first: ds = ds.cast(llava_hf.schema.features_for())",
        )
    taken = [times for times in video_columns(features).values() if times in features]
    if taken:
        raise UsageError(
            f"decode_media adds a {taken[0]!r} column (the sampled frames' times), but this {what} has one",
            hint=f"remove or rename it first: ds = ds.remove_columns({taken[0]!r})",
        )
    return features


def _decoded_columns(features: datasets.Features) -> list[str]:
    return [name for name, feature in features.items() if _needs_decoding(feature)]


def _check_unformatted(format_type: str | None, what: str) -> None:
    if format_type not in (None, "python"):
        raise UsageError(
            f"decode_media got a {what} formatted as {format_type!r}; it decodes rows for the Python format",
            hint="call decode_media(ds) first, then ds.with_format(...) / ds.with_transform(...)",
        )


# --- the streaming Parquet reader ---------------------------------------------------------------------------

#: The example key type of datasets' table generators (datasets >= 5); without it datasets' reader is kept.
_KEY: Any = getattr(datasets.builder, "Key", None)


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
                    yield _KEY(file_idx, batch_idx), table if schema is None else table_cast(table, schema)


def _lean_tables_fn(generate_tables_fn: Any) -> _ParquetTables | None:
    """Our reader for datasets' Parquet builder when it uses only options we honour; else None."""
    builder = getattr(generate_tables_fn, "__self__", None)
    method = getattr(generate_tables_fn, "__func__", None)
    if _KEY is None or not isinstance(builder, Parquet) or method is not Parquet._generate_tables:
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


def _lean_stream(ds: datasets.IterableDataset) -> datasets.IterableDataset:
    lean = _with_lean_reader(ds._ex_iterable)
    if lean is None:
        logger.debug("decode_media: not a plain datasets Parquet stream, datasets' reader kept")
        return ds
    return datasets.IterableDataset(
        ex_iterable=lean,
        info=ds.info.copy(),
        split=ds.split,
        formatting=ds._formatting,
        distributed=copy.deepcopy(ds._distributed),
        token_per_repo_id=ds._token_per_repo_id,
    )


def _decode_iterable(
    ds: datasets.IterableDataset, sampling: VideoSampling, audio_rate: int | None = None
) -> datasets.IterableDataset:
    formatting = getattr(ds, "_formatting", None)
    _check_unformatted(getattr(formatting, "format_type", None), "IterableDataset")
    features = _checked_features(ds.features, "IterableDataset")
    # decode(False) drops any decoding step already configured (e.g. load_dataset's threaded decoding of
    # remote data) and casts media to decode=False: an undecoded read that costs nothing.
    raw = _lean_stream(ds.decode(False))
    decoder = _RowDecoder(features, getattr(ds, "_token_per_repo_id", None), sampling, audio_rate)
    logger.debug("decode_media: streaming, decoding %s once per row", _decoded_columns(features))
    # Declaring the decoded features makes the mapped iterable "typed": datasets then yields our rows as
    # they are instead of encoding and decoding them again.
    return raw.map(decoder, features=output_features(features))


def _decode_dataset(
    ds: datasets.Dataset,
    sampling: VideoSampling,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    media: bool = True,
    audio_rate: int | None = None,
) -> datasets.Dataset:
    """``ds`` formatted to decode once (and then apply ``transform`` to each batch, as ``with_transform``)."""
    fmt = ds.format
    _check_unformatted(fmt["type"], "Dataset")
    features = _checked_features(ds.features, "Dataset")
    logger.debug("decode_media: Dataset, decoding %s once per row", _decoded_columns(features))
    columns = fmt["columns"]
    if columns is not None and set(columns) == set(ds.column_names):
        columns = None  # all columns: keep following the dataset's columns, as the default format does
    return ds.with_format(
        DECODE_FORMAT,
        columns=columns,
        output_all_columns=fmt["output_all_columns"],
        llava_hf=_FormatMarker(),
        video_sampling=sampling,
        transform=transform,
        media=media,
        audio_rate=audio_rate,
    )
