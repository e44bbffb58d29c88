"""Decode each image once per row, and videos with PyAV: :func:`decode_media`, the decode path for trainers.

datasets decodes a ``List(Image())`` column's first element twice (it decodes it to test whether
decoding changes it, then decodes the whole list; the upstream fix is docs/upstream/). :func:`decode_media`
gives the same rows as datasets' own decoding (same PIL images, same pixels, same ``features``), with
each media decoded exactly once, lazily, row by row. Videos are decoded by :mod:`llava_hf.media.video`
with PyAV into sampled frames (never with torchcodec, which datasets' own ``Video()`` decoding needs),
and their times go in a ``video_timestamps`` column:

* :class:`datasets.IterableDataset` (streaming): media columns are read undecoded (``ds.decode(False)``)
  and decoded in a lazy ``map`` whose declared ``features`` are the decoded ones; a stream of datasets'
  Parquet builder reads a row group only when its rows are asked for
  (:func:`llava_hf.datasets_adapter.lean_parquet_stream`), so memory stays bounded.
* :class:`datasets.Dataset`: no data is copied or cast; the dataset gets a Python format whose feature
  decoder decodes once (``ds.format["type"] == "llava_hf"``), so ``ds[i]``, iteration, ``ds.map``
  inputs and a torch ``DataLoader`` all see decoded rows while ``ds.features`` still says ``Image()``.

When it first decodes, :func:`decode_media` lets Pillow keep up to ``IMAGE_BLOCKS_KEPT`` freed image
buffers for reuse (``PIL.Image.core.set_blocks_max``), unless the process already chose
(``PILLOW_BLOCKS_MAX`` in the environment, or a non-zero value set before): without it every decoded
image's memory goes back to the system and is faulted in afresh for the next one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import datasets
import pyarrow as pa

from .datasets_adapter import PythonFormatter, lean_parquet_stream, register_format, undecoded_stream
from .errors import UsageError
from .media.audio import StoredAudios
from .media.video import (
    FRAMES_COLUMN,
    TIMESTAMPS_COLUMN,
    StoredVideos,
    VideoSampling,
    output_features,
    video_columns,
)
from .schema import features_for
from .utils.logging import get_logger

__all__ = ["DECODE_FORMAT", "TIMESTAMPS_COLUMN", "BatchDecoder", "decode_media"]

logger = get_logger(__name__)

#: The format type :func:`decode_media` sets on a :class:`datasets.Dataset`.
DECODE_FORMAT = "llava_hf"

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

        A video given as its frames (``videos[i]`` null, its frames in ``video_frames[i]``) becomes the same
        ``(T, H, W, 3)`` array in ``videos[i]``: ``num_frames`` by the linspace rule over its frames; with
        ``fps`` every frame (the frames carry no times), at most ``max_frames``; its timestamps are None,
        and ``video_frames`` is left undecoded (``{"bytes", "path"}``). Decoding the ``videos`` column alone
        (``ds["videos"]``) has no frames to read: such a video stays None there.

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
    _check_sampling_rate(sampling_rate)
    if isinstance(ds, datasets.IterableDataset):
        return _decode_iterable(ds, sampling, sampling_rate)
    if isinstance(ds, datasets.Dataset):
        return decode_with_transform(ds, sampling, audio_rate=sampling_rate)
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: decode_with_transform(d, sampling, audio_rate=sampling_rate) for split, d in ds.items()}
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


class BatchDecoder:
    """Decodes the media columns of batches of llava-hf rows, each media once, as :func:`decode_media` does.

    For pipelines outside ``datasets`` (``llava_hf.ray.decode_media``). A batch maps each column's name to its
    values, media as stored (``{"bytes", "path"}``); the result has the same columns with ``images`` as PIL
    images, ``videos`` as ``(T, H, W, 3)`` ``uint8`` arrays plus a ``video_timestamps`` column, and ``audios``
    as ``{"array", "sampling_rate"}``; other columns are returned as they came. The options are
    :func:`decode_media`'s.
    """

    def __init__(
        self,
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        sampling_rate: int | None = None,
    ) -> None:
        sampling = VideoSampling.from_options(num_frames=num_frames, fps=fps, max_frames=max_frames)
        _check_sampling_rate(sampling_rate)
        stored = features_for("conversations")
        media = datasets.Features({name: stored[name] for name in ("images", "videos", "audios")})
        self._decoder = _FeaturesDecoder(media, None, sampling, audio_rate=sampling_rate)

    def __call__(self, batch: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
        return self._decoder.decode_batch(batch)


def _check_sampling_rate(sampling_rate: int | None) -> None:
    if sampling_rate is not None and (
        isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int) or sampling_rate < 1
    ):
        raise UsageError(
            f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}",
            hint="for example sampling_rate=16000 (Whisper's rate), or leave it out to keep each file's own",
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
        self._decoded = {
            name: f
            for name, f in (features or {}).items()
            if _needs_decoding(f, media) and name != FRAMES_COLUMN  # the frames are decoded in ``videos``
        }
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
                    self._features_of(name),
                    value,
                    rid=row.get("id"),
                    column=name,
                    frames=row.get(FRAMES_COLUMN),
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
        frames = list(batch[FRAMES_COLUMN]) if FRAMES_COLUMN in batch else None
        for name, column in batch.items():
            times = self._video_columns.get(name)
            if times is None:
                out[name] = self.decode_column(column, name)
                continue
            pairs = [
                self._videos.column_value(
                    self._features_of(name),
                    value,
                    rid=None if ids is None else ids[i],
                    column=name,
                    frames=None if frames is None or name != "videos" else frames[i],
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


register_format(_DecodeOnceFormatter, DECODE_FORMAT)


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


def _decode_iterable(
    ds: datasets.IterableDataset, sampling: VideoSampling, audio_rate: int | None = None
) -> datasets.IterableDataset:
    formatting = getattr(ds, "_formatting", None)
    _check_unformatted(getattr(formatting, "format_type", None), "IterableDataset")
    features = _checked_features(ds.features, "IterableDataset")
    # decode(False) drops any decoding step already configured (e.g. load_dataset's threaded decoding of
    # remote data) and casts media to decode=False: an undecoded read that costs nothing.
    raw = lean_parquet_stream(undecoded_stream(ds))
    decoder = _RowDecoder(features, getattr(ds, "_token_per_repo_id", None), sampling, audio_rate)
    logger.debug("decode_media: streaming, decoding %s once per row", _decoded_columns(features))
    # Declaring the decoded features makes the mapped iterable "typed": datasets then yields our rows as
    # they are instead of encoding and decoding them again.
    return raw.map(decoder, features=output_features(features))


def decode_with_transform(
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
