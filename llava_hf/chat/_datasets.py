"""Map a whole llava-hf dataset (``Dataset`` or streaming ``IterableDataset``) to chat messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import datasets

from ..errors import UsageError
from ._mapping import MessagesFormat, _check_format, _role_map, _to_messages_row, from_messages, to_messages

if TYPE_CHECKING:
    from ..media.video import VideoSampling

__all__ = ["as_messages"]

DatasetT = TypeVar("DatasetT", datasets.Dataset, datasets.IterableDataset)


def _messages_from_arrow(batch: Any, roles: Mapping[str, str], messages_type: Any) -> Any:
    """The Arrow batch with ``messages`` in place of ``conversations``; media counts come from the
    list lengths, so nothing is decoded and the media bytes pass through untouched."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..schema import stored_messages

    def lengths(column: str) -> list[int]:
        if column not in batch.column_names:
            return [0] * batch.num_rows
        return [n or 0 for n in pc.list_value_length(batch.column(column)).to_pylist()]

    ids = batch.column("id").to_pylist() if "id" in batch.column_names else [None] * batch.num_rows
    conversations = batch.column("conversations").to_pylist()
    n_images, n_videos, n_audios = lengths("images"), lengths("videos"), lengths("audios")
    messages = []
    for rid, conv, ni, nv, na in zip(ids, conversations, n_images, n_videos, n_audios):
        row = {"id": rid, "conversations": conv, "images": [None] * ni, "videos": [None] * nv}
        if "audios" in batch.column_names:
            row["audios"] = [None] * na
        messages.append(stored_messages(_to_messages_row(row, roles, "trl")["messages"]))
    table = batch.drop_columns(["conversations"])
    return table.append_column("messages", pa.array(messages, type=messages_type))


def _undecoded(feature: Any) -> Any:
    """The same feature with Image/Video/Audio decoding off (at any list depth)."""
    if isinstance(feature, (datasets.Image, datasets.Video, datasets.Audio)):
        return (
            datasets.Image(mode=feature.mode, decode=False)
            if isinstance(feature, datasets.Image)
            else type(feature)(decode=False)
        )
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature), length=feature.length)
    return feature


def as_messages(
    ds: DatasetT,
    *,
    format: MessagesFormat = "trl",
    roles: Mapping[str, str] | None = None,
    decode: bool = True,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> DatasetT:
    """A llava-hf dataset with ``messages`` instead of ``conversations``, ready for a trainer.

    * ``IterableDataset`` (streaming): a lazy ``map``; with ``decode`` the media are decoded once
      per row first (:func:`llava_hf.decode_media`).
    * ``Dataset``, ``format="trl"``: one ``map`` over Arrow batches that never decodes or re-encodes
      media (the stored bytes and paths are kept as they are); the ``messages`` column gets the
      stored schema's type (``features_for("messages")``); with ``decode`` the result decodes once
      per row, without it media stay ``{"bytes", "path"}`` dicts (``Image(decode=False)``).
    * ``Dataset``, ``format="processor"``: a transform on access, as ``with_transform`` (media objects go
      into their parts; decoded by :func:`llava_hf.decode_media`, once).

    Videos are decoded with PyAV (never torchcodec) into ``(T, H, W, 3)`` ``uint8`` arrays of sampled
    frames, with a ``video_timestamps`` column; ``num_frames``, ``fps`` and ``max_frames`` choose the
    frames as in :func:`llava_hf.decode_media` (default 8 per video). ``"processor"`` video parts hold
    the frames, their ``timestamps`` and transformers' ``video_metadata`` (see :func:`to_messages`).

    Every other column (``id``, ``images``, ``videos``, ``video_info``, ``source``, ``metadata``) is
    carried through with its feature. A dataset built with ``--format messages`` is already in
    TRL's layout: it is only decoded (or, for ``"processor"``, its parts filled).
    """
    _check_format(format)
    role_map = _role_map(roles)
    if not isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        raise UsageError(
            f"as_messages takes a datasets.Dataset or IterableDataset, got {type(ds).__name__}",
            hint="for a DatasetDict, apply it per split",
        )
    from ..media.video import VideoSampling

    sampling = VideoSampling.from_options(num_frames=num_frames, fps=fps, max_frames=max_frames)
    columns = ds.column_names or []
    if "conversations" not in columns and "messages" in columns:
        return _already_messages(ds, format, roles, decode, sampling)
    if isinstance(ds, datasets.IterableDataset):
        source = _decoded(ds, sampling) if decode else ds.decode(False)
        return source.map(
            partial(to_messages, roles=role_map, format=format), remove_columns=["conversations"]
        )
    if format == "processor":
        return _transformed(ds, partial(to_messages, roles=role_map, format="processor"), decode, sampling)

    from ..schema import features_for

    features = datasets.Features(
        {name: feature for name, feature in ds.features.items() if name != "conversations"}
    )
    features["messages"] = features_for("messages")["messages"]
    if not decode:
        features = datasets.Features({name: _undecoded(feature) for name, feature in features.items()})
    mapped = ds.with_format("arrow").map(
        _messages_from_arrow,
        batched=True,
        fn_kwargs={"roles": role_map, "messages_type": features.arrow_schema.field("messages").type},
        remove_columns=["conversations"],
        features=features,
        desc="conversations -> messages",
    )
    mapped = mapped.with_format(None)
    return _decoded(mapped, sampling) if decode else mapped


def _decoded(ds: DatasetT, sampling: VideoSampling) -> DatasetT:
    from ..decode import decode_media

    if ds.features is None:
        return ds
    return decode_media(
        ds,
        num_frames=sampling.num_frames,
        fps=sampling.fps,
        max_frames=sampling.max_frames if sampling.fps else None,
    )


def _transformed(
    ds: datasets.Dataset, transform: Callable[[Any], Any], decode: bool, sampling: VideoSampling
) -> datasets.Dataset:
    """``ds.with_transform(transform)``, with rows decoded by decode_media's decoder (``decode=False``:
    images and videos left as ``{"bytes", "path"}``), never by datasets' own (videos need torchcodec)."""
    from ..decode import decode_with_transform

    if ds.features is None:  # pragma: no cover - a Dataset always has features
        return ds.with_transform(transform)
    return decode_with_transform(ds, sampling, transform=transform, media=decode)


def _to_processor_format(example: Mapping[str, Any], roles: Mapping[str, str] | None) -> dict[str, Any]:
    return to_messages(from_messages(example, roles=roles), roles=roles, format="processor")


def _already_messages(
    ds: DatasetT,
    format: MessagesFormat,
    roles: Mapping[str, str] | None,
    decode: bool,
    sampling: VideoSampling,
) -> DatasetT:
    """A ``--format messages`` dataset is TRL's layout already: decode once, or fill the parts."""
    if format == "trl":
        if decode:
            return _decoded(ds, sampling)
        if isinstance(ds, datasets.IterableDataset):
            return ds.decode(False)
        return ds.cast(datasets.Features({name: _undecoded(f) for name, f in ds.features.items()}))
    fill = partial(_to_processor_format, roles=roles)
    if isinstance(ds, datasets.IterableDataset):
        return (_decoded(ds, sampling) if decode else ds.decode(False)).map(fill, batched=False)
    return _transformed(ds, fill, decode, sampling)
