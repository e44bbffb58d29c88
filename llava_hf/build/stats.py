"""The numbers of a dataset card, counted from a built folder's Parquet files or while a build writes them.

:func:`llava_hf.make_card` on a folder reads the numbers back (:func:`add_batch` over its text and list
columns, image sizes from the headers of a bounded sample of row groups). A build counts the same
numbers from the tables it writes (:class:`StatsCollector`, one per Parquet file): the text columns are
not read again, and the image sizes are those its image check read from every header. Both ways give
the same card, which a test checks, so a folder's card does not change when it is regenerated.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CardStats",
    "FileStats",
    "StatsCollector",
    "add_batch",
    "merge_files",
    "sample_image_sizes",
    "text_column",
]

#: At most this many image sizes are reported: the first images of at most SAMPLE_GROUPS row groups
#: spread over the dataset (reading a row group's media back costs ~1 ms).
IMAGE_SAMPLE = 256
SAMPLE_GROUPS = 16
#: Rows a build counts at a time (counting per 64-row table cost more than reading the files back).
_COUNT_ROWS = 4096

Size = tuple[int, int]
_Group = TypeVar("_Group")


@dataclass
class CardStats:
    samples: int = 0
    images: int = 0
    videos: int = 0
    rows_with_images: int = 0
    rows_with_videos: int = 0
    multi_image_rows: int = 0
    text_only: int = 0
    turns: list[np.ndarray] = field(default_factory=list)
    chars: list[np.ndarray] = field(default_factory=list)
    durations: list[np.ndarray] = field(default_factory=list)
    sizes: list[Size] = field(default_factory=list)
    unreadable_images: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    audios: int = 0
    rows_with_audios: int = 0
    audio_durations: list[np.ndarray] = field(default_factory=list)
    #: videos given as their frames (counted in ``videos`` too), and their frames
    frame_videos: int = 0
    frames: int = 0

    def merge(self, other: CardStats) -> None:
        """Add the counts of the rows that follow this one's (sources keep the order first seen).
        Image sizes are not merged: they are a sample of the whole (:func:`sample_image_sizes`)."""
        self.samples += other.samples
        self.images += other.images
        self.videos += other.videos
        self.rows_with_images += other.rows_with_images
        self.rows_with_videos += other.rows_with_videos
        self.multi_image_rows += other.multi_image_rows
        self.text_only += other.text_only
        self.turns.extend(other.turns)
        self.chars.extend(other.chars)
        self.durations.extend(other.durations)
        self.sources.update(other.sources)
        self.audios += other.audios
        self.rows_with_audios += other.rows_with_audios
        self.audio_durations.extend(other.audio_durations)
        self.frame_videos += other.frame_videos
        self.frames += other.frames


def text_column(names: Sequence[str]) -> str:
    """The column whose turns the card counts: ``messages`` in that format, else ``conversations``."""
    return "messages" if "messages" in names else "conversations"


def _list_lengths(array: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _chars_per_row(array: pa.Array, n: int) -> np.ndarray:
    """Characters of every text in a list<struct> column (conversations or messages), per row."""
    values = pc.list_flatten(array)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
    if pa.types.is_struct(values.type) and values.type.get_field_index("value") >= 0:  # conversations
        texts = values.field("value")
    else:  # messages: content is a list of {type, text}
        content = values.field("content")
        texts = pc.list_flatten(content).field("text")
        parents = parents[pc.list_parent_indices(content).to_numpy(zero_copy_only=False)]
    lengths = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=lengths, minlength=n).astype(np.int64)


def add_batch(stats: CardStats, batch: pa.RecordBatch, text_column: str) -> None:
    """Count the rows of ``batch`` (of the columns it has: text, ``source``, media lists, ``video_frames``,
    ``video_info``, ``audio_info``)."""
    n = batch.num_rows
    stats.samples += n
    names = batch.schema.names
    zeros = np.zeros(n, dtype=np.int64)
    n_images = _list_lengths(batch["images"]) if "images" in names else zeros
    n_videos = _list_lengths(batch["videos"]) if "videos" in names else zeros
    stats.images += int(n_images.sum())
    stats.videos += int(n_videos.sum())
    stats.rows_with_images += int((n_images > 0).sum())
    stats.rows_with_videos += int((n_videos > 0).sum())
    stats.multi_image_rows += int((n_images > 1).sum())
    n_audios = _list_lengths(batch["audios"]) if "audios" in names else zeros
    stats.audios += int(n_audios.sum())
    stats.rows_with_audios += int((n_audios > 0).sum())
    stats.text_only += int(((n_images == 0) & (n_videos == 0) & (n_audios == 0)).sum())
    if "video_frames" in names:  # one list of frames per video: empty for a video file
        frames = _list_lengths(pc.list_flatten(batch["video_frames"]))
        stats.frame_videos += int((frames > 0).sum())
        stats.frames += int(frames.sum())
    if text_column in names:
        stats.turns.append(_list_lengths(batch[text_column]))
        stats.chars.append(_chars_per_row(batch[text_column], n))
    if "video_info" in names:
        d = pc.list_flatten(batch["video_info"]).field("duration").drop_null()
        stats.durations.append(d.to_numpy(zero_copy_only=False).astype(np.float64))
    if "audio_info" in names:
        d = pc.list_flatten(batch["audio_info"]).field("duration").drop_null()
        stats.audio_durations.append(d.to_numpy(zero_copy_only=False).astype(np.float64))
    if "source" in names:
        counts = pc.value_counts(batch["source"])
        values, numbers = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        stats.sources.update({str(k): int(v) for k, v in zip(values, numbers, strict=True)})


def sample_image_sizes(
    stats: CardStats, groups: Sequence[_Group], first_sizes: Callable[[_Group, int], Iterable[Size | None]]
) -> None:
    """Add the sizes of up to IMAGE_SAMPLE images: the first ones of up to SAMPLE_GROUPS evenly spaced
    row groups. ``first_sizes(group, k)`` gives the sizes of a group's first ``k`` images (None: one
    Pillow cannot open)."""
    if not groups:
        return
    picks = sorted({round(i * (len(groups) - 1) / max(SAMPLE_GROUPS - 1, 1)) for i in range(SAMPLE_GROUPS)})
    per_group = math.ceil(IMAGE_SAMPLE / len(picks))
    for index in picks:
        room = min(per_group, IMAGE_SAMPLE - len(stats.sizes) - stats.unreadable_images)
        if room <= 0:
            return
        for size in first_sizes(groups[index], room):
            if size is None:
                stats.unreadable_images += 1
            else:
                stats.sizes.append(size)


@dataclass
class FileStats:
    """What a build counted for one Parquet file: its rows, and the first image sizes of each row group."""

    stats: CardStats
    group_sizes: list[list[Size]]


def merge_files(files: Sequence[FileStats]) -> CardStats:
    """The card's numbers of a folder, from its files' counts in the folder's order."""
    total = CardStats()
    for part in files:
        total.merge(part.stats)
    if total.images:
        groups = [sizes for part in files for sizes in part.group_sizes]
        sample_image_sizes(total, groups, lambda sizes, k: sizes[:k])
    return total


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array, without a copy when it is one chunk (a build's tables are)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _list_column(column: pa.ChunkedArray, child: str) -> pa.Array:
    """A ``list<struct>`` column as a list of one of its fields, without copying or holding the other
    fields (a media column's bytes: ``combine_chunks`` would copy them all)."""
    lists = [pa.ListArray.from_arrays(chunk.offsets, chunk.values.field(child)) for chunk in column.chunks]
    return lists[0] if len(lists) == 1 else pa.concat_arrays(lists)


def _nested_list_column(column: pa.ChunkedArray, child: str) -> pa.Array:
    """A ``list<list<struct>>`` column as lists of lists of one field (see :func:`_list_column`)."""
    lists = [
        pa.ListArray.from_arrays(
            chunk.offsets, pa.ListArray.from_arrays(chunk.values.offsets, chunk.values.values.field(child))
        )
        for chunk in column.chunks
    ]
    return lists[0] if len(lists) == 1 else pa.concat_arrays(lists)


class StatsCollector:
    """Counts the rows of the tables written to one Parquet file, as :func:`add_batch` counts them."""

    def __init__(self, text_column: str) -> None:
        self._text_column = text_column
        self._stats = CardStats()
        self._group_sizes: list[list[Size]] = []
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def add(self, table: pa.Table, image_sizes: Sequence[Size]) -> None:
        """Count a row group; ``image_sizes``: the sizes of its images, in order.

        The media columns are not kept (their bytes live in buffers the next batch refills).
        """
        self._group_sizes.append(list(image_sizes[:IMAGE_SAMPLE]))
        columns: dict[str, pa.Array] = {}
        for name in (self._text_column, "source", "video_info", "audio_info"):
            if name in table.column_names:
                columns[name] = _one_array(table.column(name))
        for name in ("images", "videos", "audios"):
            if name in table.column_names:
                columns[name] = _list_column(table.column(name), "path")
        if "video_frames" in table.column_names:  # lists of frame lists: the frames' paths
            columns["video_frames"] = _nested_list_column(table.column("video_frames"), "path")
        self._pending.append(pa.RecordBatch.from_pydict(columns))
        self._rows += table.num_rows
        if self._rows >= _COUNT_ROWS:
            self._count()

    def _count(self) -> None:
        if self._pending:
            batch = pa.Table.from_batches(self._pending).combine_chunks().to_batches()[0]
            add_batch(self._stats, batch, self._text_column)
        self._pending, self._rows = [], 0

    def finish(self) -> FileStats:
        self._count()
        return FileStats(self._stats, self._group_sizes)
