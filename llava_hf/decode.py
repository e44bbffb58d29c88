"""Decode each image once per row: :func:`decode_media`, the decode path for trainers.

Why this exists: datasets 5.2 decodes a ``List(Image())`` column in
``datasets.features.features.decode_nested_example`` (the ``List``/``LargeList`` branch): it decodes
the first non-null element to test whether decoding changes it, throws that result away, then decodes
the whole list again. Every single-image row is therefore decoded twice (a three-image row four
times), which halves streaming throughput for typical LLaVA data. The one-line upstream fix is to
test the schema instead of the data (``if require_decoding(sub_schema):``).

:func:`decode_media` gives the same rows as datasets' own decoding (same PIL images, same pixels, same
``features``), with each media decoded exactly once, lazily, row by row:

* :class:`datasets.IterableDataset` (streaming): media columns are read undecoded (``ds.decode(False)``,
  which costs nothing) and decoded in a lazy ``map`` whose declared ``features`` are the decoded ones,
  the same construction datasets' own ``IterableDataset.decode(num_threads=...)`` uses.
* :class:`datasets.Dataset`: no data is copied or cast; the dataset gets a Python format whose feature
  decoder decodes once (``ds.format["type"] == "llava_hf"``), so ``ds[i]``, iteration, ``ds.map``
  inputs and a torch ``DataLoader`` all see decoded rows while ``ds.features`` still says ``Image()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import datasets

# datasets has no public way to register a format type; _register_formatter is what it uses for its own.
from datasets.formatting import PythonFormatter, _register_formatter

from ._logging import get_logger
from .errors import UsageError

__all__ = ["DECODE_FORMAT", "decode_media"]

logger = get_logger(__name__)

#: The format type :func:`decode_media` sets on a :class:`datasets.Dataset`.
DECODE_FORMAT = "llava_hf"

DatasetT = TypeVar(
    "DatasetT", datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict
)

TokenPerRepoId = dict[str, str | bool | None] | None


def decode_media(ds: DatasetT) -> DatasetT:
    """Return ``ds`` with every image (and video) decoded exactly once per row.

    Args:
        ds: a :class:`datasets.Dataset` or :class:`datasets.IterableDataset` with known features, as
            ``load_dataset`` gives for a llava-hf folder or Hub repo (streaming or not); a ``DatasetDict`` or
            ``IterableDatasetDict`` is decoded split by split. Every column
            whose feature decodes (``images``, ``videos``, ``metadata``'s ``Json``, ...) is decoded as
            datasets would decode it, but once. ``ds`` must not carry a format (``with_format("torch")``,
            ``with_transform``): apply those after.

    Returns:
        A dataset of the same kind, lazy (nothing is decoded or copied up front). Images are PIL images
        exactly as datasets gives them (``Image.decode_example``: EXIF orientation applied, the feature's
        ``mode`` honoured). ``features`` are the input's, so they keep saying ``List(Image())``.

        Videos are decoded (to torchcodec ``VideoDecoder`` objects, as datasets does) only when
        torchcodec is installed. Without it they are left undecoded as ``{"bytes", "path"}`` dicts, and
        the returned ``features`` say so (``List(Video(decode=False))``): iterating still works, where
        datasets' default decoding would raise for lack of torchcodec.

    Raises:
        UsageError: ``ds`` is not a Dataset/IterableDataset, its features are unknown, or it has a format.

    Example::

        ds = decode_media(load_dataset("out/", split="train", streaming=True))
        row = next(iter(ds))  # row["images"][0] is a PIL image, decoded once
    """
    if isinstance(ds, datasets.IterableDataset):
        return _decode_iterable(ds)
    if isinstance(ds, datasets.Dataset):
        return _decode_dataset(ds)
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({split: _decode_dataset(d) for split, d in ds.items()})
    if isinstance(ds, datasets.IterableDatasetDict):
        return datasets.IterableDatasetDict({split: _decode_iterable(d) for split, d in ds.items()})
    raise UsageError(
        "decode_media takes a datasets.Dataset, IterableDataset, DatasetDict or IterableDatasetDict, "
        f"got {type(ds).__name__}",
        hint="load the data with datasets.load_dataset(...) or llava_hf.load_llava(...) first",
    )


# --- decoding, once ---------------------------------------------------------------------------------------


def _needs_decoding(feature: Any) -> bool:
    """Whether a (nested) feature decodes, from the schema alone (like datasets' ``require_decoding``)."""
    if isinstance(feature, dict):
        return any(_needs_decoding(f) for f in feature.values())
    if isinstance(feature, (list, tuple)):
        return _needs_decoding(feature[0])
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return _needs_decoding(feature.feature)
    return hasattr(feature, "decode_example") and bool(getattr(feature, "decode", True))


def _decode_value(feature: Any, value: Any, token_per_repo_id: TokenPerRepoId) -> Any:
    """``decode_nested_example`` without the probe: each element is decoded once, or not at all."""
    if value is None:
        return None
    if isinstance(feature, dict):
        return {key: _decode_value(sub, value.get(key), token_per_repo_id) for key, sub in feature.items()}
    if isinstance(feature, (list, tuple, datasets.List, datasets.LargeList)):
        sub = feature[0] if isinstance(feature, (list, tuple)) else feature.feature
        if not _needs_decoding(sub):
            return list(value)
        return [_decode_value(sub, item, token_per_repo_id) for item in value]
    if hasattr(feature, "decode_example") and getattr(feature, "decode", True):
        return feature.decode_example(value, token_per_repo_id=token_per_repo_id)
    return value


class _FeaturesDecoder:
    """Drop-in for datasets' ``PythonFeaturesDecoder`` that decodes each value once."""

    def __init__(self, features: datasets.Features | None, token_per_repo_id: TokenPerRepoId = None) -> None:
        self.features = features
        self.token_per_repo_id = token_per_repo_id
        self._decoded = {name: f for name, f in (features or {}).items() if _needs_decoding(f)}

    def decode_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self._decode(name, value) for name, value in row.items()}

    def decode_column(self, column: Iterable[Any], column_name: str) -> list[Any]:
        return [self._decode(column_name, value) for value in column]

    def decode_batch(self, batch: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
        return {name: self.decode_column(column, name) for name, column in batch.items()}

    def _decode(self, name: str, value: Any) -> Any:
        feature = self._decoded.get(name)
        return value if feature is None else _decode_value(feature, value, self.token_per_repo_id)


class _RowDecoder:
    """The picklable ``map`` function of the streaming path: one row in, a new decoded row out."""

    def __init__(self, features: datasets.Features, token_per_repo_id: TokenPerRepoId = None) -> None:
        self._decoder = _FeaturesDecoder(features, token_per_repo_id)

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
    """datasets' Python formatter (rows, columns, batches, lazy rows) with the decode-once decoder."""

    def __init__(
        self,
        features: datasets.Features | None = None,
        lazy: bool = False,
        token_per_repo_id: TokenPerRepoId = None,
        llava_hf: _FormatMarker | None = None,
    ) -> None:
        super().__init__(features=features, lazy=lazy, token_per_repo_id=token_per_repo_id)
        self.python_features_decoder = _FeaturesDecoder(self.features, self.token_per_repo_id)


_register_formatter(_DecodeOnceFormatter, DECODE_FORMAT)


# --- the two dataset kinds --------------------------------------------------------------------------------


def _torchcodec_available() -> bool:
    return bool(datasets.config.TORCHCODEC_AVAILABLE)


def _without_video_decoding(feature: Any) -> Any:
    """A copy of ``feature`` where every ``Video`` is ``Video(decode=False)``."""
    if isinstance(feature, dict):
        return {key: _without_video_decoding(sub) for key, sub in feature.items()}
    if isinstance(feature, list):
        return [_without_video_decoding(feature[0])]
    if isinstance(feature, datasets.List):
        return datasets.List(_without_video_decoding(feature.feature), length=feature.length)
    if isinstance(feature, datasets.LargeList):
        return datasets.LargeList(_without_video_decoding(feature.feature))
    if isinstance(feature, datasets.Video) and feature.decode:
        return dataclasses.replace(feature, decode=False)
    return feature


def _output_features(features: datasets.Features | None, what: str) -> datasets.Features:
    if features is None:
        raise UsageError(
            f"decode_media needs the dataset's features, but this {what} has none (Unknown features)",
            hint="cast it to the llava-hf schema first: ds = ds.cast(llava_hf.schema.features_for())",
        )
    if _torchcodec_available():
        return features.copy()
    return datasets.Features({name: _without_video_decoding(f) for name, f in features.items()})


def _decoded_columns(features: datasets.Features) -> list[str]:
    return [name for name, feature in features.items() if _needs_decoding(feature)]


def _check_unformatted(format_type: str | None, what: str) -> None:
    if format_type not in (None, "python"):
        raise UsageError(
            f"decode_media got a {what} formatted as {format_type!r}; it decodes rows for the Python format",
            hint="call decode_media(ds) first, then ds.with_format(...) / ds.with_transform(...)",
        )


def _decode_iterable(ds: datasets.IterableDataset) -> datasets.IterableDataset:
    formatting = getattr(ds, "_formatting", None)
    _check_unformatted(getattr(formatting, "format_type", None), "IterableDataset")
    features = _output_features(ds.features, "IterableDataset")
    # decode(False) drops any decoding step already configured (e.g. load_dataset's threaded decoding of
    # remote data) and casts media to decode=False: an undecoded read that costs nothing.
    raw = ds.decode(False)
    decoder = _RowDecoder(features, getattr(ds, "_token_per_repo_id", None))
    logger.debug("decode_media: streaming, decoding %s once per row", _decoded_columns(features))
    # Declaring the decoded features makes the mapped iterable "typed": datasets then yields our rows as
    # they are instead of encoding and decoding them again.
    return raw.map(decoder, features=features)


def _decode_dataset(ds: datasets.Dataset) -> datasets.Dataset:
    fmt = ds.format
    _check_unformatted(fmt["type"], "Dataset")
    features = _output_features(ds.features, "Dataset")
    if features != ds.features:
        # Only decode flags change, so the Arrow data is shared as is (Dataset.cast would rewrite it all).
        info = ds.info.copy()
        info.features = features
        base_fingerprint = getattr(ds, "_fingerprint", None) or ""
        fingerprint = hashlib.sha256(f"{base_fingerprint}:llava_hf.decode_media".encode()).hexdigest()[:16]
        ds = datasets.Dataset(
            ds.data,
            info=info,
            split=ds.split,
            indices_table=getattr(ds, "_indices", None),
            fingerprint=fingerprint,
        )
    logger.debug("decode_media: Dataset, decoding %s once per row", _decoded_columns(features))
    columns = fmt["columns"]
    if columns is not None and set(columns) == set(ds.column_names):
        columns = None  # all columns: keep following the dataset's columns, as the default format does
    return ds.with_format(
        DECODE_FORMAT,
        columns=columns,
        output_all_columns=fmt["output_all_columns"],
        llava_hf=_FormatMarker(),
    )
