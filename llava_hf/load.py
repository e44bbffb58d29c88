"""``load_llava``: LLaVA JSON + media → a ``Dataset`` / ``IterableDataset`` in one call."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from .build.builder import LlavaBuilder
from .datasets_adapter import unwrap_generation_errors

__all__ = ["load_llava"]


def load_llava(
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    *,
    image_folder: str | os.PathLike[str] | None = None,
    video_folder: str | os.PathLike[str] | None = None,
    audio_folder: str | os.PathLike[str] | None = None,
    streaming: bool = False,
    num_proc: int | None = None,
    split: str | None = None,
    cache_dir: str | None = None,
    **config_kwargs: Any,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Build (or stream) LLaVA-format files with :class:`~llava_hf.LlavaBuilder`.

    Returns a ``Dataset`` (``IterableDataset`` with ``streaming=True``) when there is one split or
    ``split`` names one, else a ``DatasetDict`` (``IterableDatasetDict``). Streaming reads straight
    from the JSON and the media, with no conversion step, and yields the same rows as the built
    dataset. Other keyword arguments go to :class:`~llava_hf.LlavaConfig` (``on_error``, ``strict``,
    ``allow_outside_root``, ``deep``, ``format``, ``records_per_shard``, ``mixture``).

    Example::

        >>> ds = load_llava("llava_instruct_150k.json", image_folder="coco/train2017")
        >>> stream = load_llava({"train": "train.jsonl"}, image_folder="images", streaming=True)
    """
    builder = LlavaBuilder(
        cache_dir=cache_dir,
        data_files=data_files,
        image_folder=os.fspath(image_folder) if image_folder is not None else None,
        video_folder=os.fspath(video_folder) if video_folder is not None else None,
        audio_folder=os.fspath(audio_folder) if audio_folder is not None else None,
        **config_kwargs,
    )
    if streaming:
        result: Any = builder.as_streaming_dataset(split=split)
    else:
        with unwrap_generation_errors():
            builder.download_and_prepare(num_proc=num_proc)
        result = builder.as_dataset(split=split)
    if isinstance(result, (datasets.DatasetDict, datasets.IterableDatasetDict)) and len(result) == 1:
        return next(iter(result.values()))
    return result  # type: ignore[no-any-return,unused-ignore]
