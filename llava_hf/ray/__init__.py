"""LLaVA-format data on Ray Data (the ``[ray]`` extra): read records into a ``ray.data.Dataset``, decode media.

::

    import ray
    from llava_hf.ray import decode_media, read_llava

    ds = read_llava("llava_v1_5_mix665k.json", image_folder="data/")  # one read task per planned shard
    ds = ds.filter(lambda row: len(row["images"]) > 0)                 # any Ray step
    ds = decode_media(ds)                                              # images/videos/audio decoded once

    built = ray.data.read_parquet("out/data")  # a built folder
    hub = ray.data.read_parquet("hf://datasets/org/name/data", filesystem=huggingface_hub.HfFileSystem())

The rows are those ``llava-hf build`` writes (:mod:`llava_hf.schema`: media bytes and relative paths), from the
same planning and the same per-shard core. ``llava-hf build --engine ray`` writes a folder with them.
Importing :mod:`llava_hf` never imports ray; importing this module without ray installed raises an
``ImportError`` that names the extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..build.config import LlavaConfig
from ..build.folder import RECORDS_PER_FILE_CAP
from ..build.parquet import parse_shard_size
from ..build.ray_engine import LlavaDatasource, ray
from ..decode import BatchDecoder
from ..problems import OnError
from ..schema import OutputFormat

__all__ = ["decode_media", "read_llava"]


def read_llava(
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None,
    *,
    image_folder: str | None = None,
    video_folder: str | None = None,
    audio_folder: str | None = None,
    on_error: OnError = "raise",
    strict: bool = False,
    allow_outside_root: bool = False,
    deep: bool = False,
    format: OutputFormat = "conversations",
    records_per_shard: int | None = None,
    max_shard_size: int | str = "500MB",
    mixture: Any = None,
    split: str = "train",
) -> Any:
    """LLaVA-format files (or a ``mixture``, as ``build_folder`` takes it) as a ``ray.data.Dataset``.

    Each read task is one original shard as ``llava-hf build`` plans it (``max_shard_size``,
    ``records_per_shard``); its blocks are Arrow tables of the one schema (:mod:`llava_hf.schema`), media as
    ``{"bytes", "path"}``. Options are :func:`llava_hf.build_folder`'s; records are validated on the way:
    ``on_error="raise"`` fails the read at the first bad record (its file, index, id and field),
    ``"skip"`` drops bad records (each task logs how many). ``split``: the split read when ``data_files``
    maps several.
    """
    config = LlavaConfig(
        data_files=data_files,
        image_folder=image_folder,
        video_folder=video_folder,
        audio_folder=audio_folder,
        on_error=on_error,
        strict=strict,
        allow_outside_root=allow_outside_root,
        deep=deep,
        format=format,
        mixture=mixture,
        max_shard_size=parse_shard_size(max_shard_size),
        records_per_shard=RECORDS_PER_FILE_CAP if records_per_shard is None else records_per_shard,
    )
    return ray.data.read_datasource(LlavaDatasource(config, split=split))


def decode_media(
    ds: Any,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    sampling_rate: int | None = None,
) -> Any:
    """``ds`` (rows of the llava-hf schema) with its media decoded, each once per row, as a ``map_batches`` step.

    Images become ``uint8`` arrays ``(H, W, C)`` of the pixels :func:`llava_hf.decode_media` gives (PIL's
    decoding, EXIF orientation applied); videos ``(T, H, W, 3)`` arrays with a ``video_timestamps`` column;
    audios ``{"array", "sampling_rate"}``. Options are :func:`llava_hf.decode_media`'s.
    """
    options: dict[str, Any] = {
        "num_frames": num_frames,
        "fps": fps,
        "max_frames": max_frames,
        "sampling_rate": sampling_rate,
    }
    BatchDecoder(**options)  # bad options fail here, not in a worker
    return ds.map_batches(_decode_batch, fn_kwargs={"options": options}, batch_format="pyarrow")


#: A worker's decoders, by their options (each keeps what it reuses between batches).
_decoders: dict[tuple[tuple[str, Any], ...], BatchDecoder] = {}


def _decode_batch(table: Any, options: dict[str, Any]) -> dict[str, Any]:
    key = tuple(sorted(options.items()))
    decoder = _decoders.get(key)
    if decoder is None:
        decoder = _decoders[key] = BatchDecoder(**options)
    decoded = decoder(table.to_pydict())
    if "images" in decoded:
        decoded["images"] = [[np.asarray(image) for image in images] for images in decoded["images"]]
    return {name: _object_column(values) for name, values in decoded.items()}


def _object_column(values: list[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column
