"""Planning: one quick pass over every input finds the original shards and the records reusing an id.

Big inputs are split into *original shards* (byte ranges of a JSON array or JSONL file, or record
ranges of a gzip file), so work scales with processes and a ``DataLoader``'s workers each stream their
own part. A shard holds at most ``records_per_shard`` records and (with ``max_shard_size``) ends before
the record that would take an estimate of its output bytes past that size. A record's
``duplicate_id`` verdict depends only on the records before it, so it is the same whichever shard or
process reads it.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

from ..jsontext import at_full_depth
from ..media.files import MediaRoots
from ..media.sizes import MediaSizes
from ..records import (
    RawItem,
    file_kind,
    id_stems,
    is_pack,
    iter_items,
    record_id,
)
from ..utils.meter import ReadMeter
from .config import LlavaConfig, ShardSpec

__all__ = ["PlannedShard", "count_in", "input_splits", "iter_plan", "plan_splits"]


@dataclass(frozen=True)
class PlannedShard:
    """One original shard as planning found it.

    ``duplicates`` holds this shard's records that reuse an id of an earlier record (keys
    ``(file_key, index, position)``). With ``items`` (:func:`iter_plan` with ``stream=True``) the
    shard's items come from planning's own pass: each is judged as it passes, so ``duplicates``
    fills as ``items`` is read, and ``spec.stop_index`` is not known. ``input_bytes``: how much of
    the input file planning read for this shard (without ``items``; with a ``meter``), for progress.
    """

    split: str
    spec: ShardSpec
    duplicates: AbstractSet[tuple[str, int, int]]
    items: Iterator[RawItem] | None = None
    input_bytes: int = 0


def plan_splits(config: LlavaConfig) -> dict[str, tuple[list[ShardSpec], frozenset[tuple[str, int, int]]]]:
    """Per split: its original shards, and the records that reuse an id of an earlier record.

    One quick pass over every input (the JSON is parsed, nothing else is read) finds shard
    boundaries and duplicate ids, so that a record is judged the same whichever shard or process
    reads it: ``duplicate_id`` is reported on the second and later records that reuse an id.
    """
    plan: dict[str, tuple[list[ShardSpec], set[tuple[str, int, int]]]] = {
        split: ([], set()) for split in input_splits(config)
    }
    for planned in iter_plan(config):
        shards, duplicates = plan[planned.split]
        shards.append(planned.spec)
        duplicates |= planned.duplicates
    return {split: (shards, frozenset(duplicates)) for split, (shards, duplicates) in plan.items()}


def iter_plan(
    config: LlavaConfig, *, stream: bool = False, meter: ReadMeter | None = None
) -> Iterator[PlannedShard]:
    """The shards of :func:`plan_splits`, split after split, each as soon as the pass has read it.

    A record's ``duplicate_id`` verdict depends only on the records before it, so a shard's verdicts
    are final once the pass has read it: a build can start on it while the pass reads on.
    ``stream=True`` yields each shard before reading it, with its items as an iterator of the pass
    itself (read it before asking for the next shard): a build in the same process reads the JSON
    once, and holds no more of it than the record at hand. Where a shard ends depends only on the
    data, never on ``stream``. ``meter`` follows how far the pass has read its input files.
    """
    splits = input_splits(config)
    for specs in splits.values():
        for spec in specs:
            file_kind(spec.file)  # unsupported extensions fail here, before any work
    sizes = MediaSizes(config.allow_outside_root) if config.max_shard_size is not None else None
    for split, specs in splits.items():
        seen: set[tuple[str, str]] = set()  # ids are unique per split
        for spec in specs:
            yield from _plan_file(config, split, _FileScan(config, spec, seen, sizes, meter), stream)


def input_splits(config: LlavaConfig) -> dict[str, list[ShardSpec]]:
    """Per split, in order: a shard spec per input file (or mixture source), not yet divided."""
    splits: dict[str, list[ShardSpec]] = {}
    if config.mixture is not None:
        splits["train"] = []
        for src in config.mixture.sources:
            indices = config.mixture.indices_of(src.name)
            if len(indices):
                splits["train"].append(
                    ShardSpec(
                        src.json_path,
                        src.name,
                        image_folder=src.image_folder
                        if src.image_folder is not None
                        else config.image_folder,
                        video_folder=src.video_folder
                        if src.video_folder is not None
                        else config.video_folder,
                        audio_folder=src.audio_folder
                        if src.audio_folder is not None
                        else config.audio_folder,
                        selection=indices,
                    )
                )
    else:
        assert config.data_files is not None
        for split, files in config.data_files.items():
            stems = id_stems(str(f) for f in files)
            splits[str(split)] = [
                ShardSpec(
                    str(f),
                    os.path.basename(str(f)),
                    image_folder=config.image_folder,
                    video_folder=config.video_folder,
                    audio_folder=config.audio_folder,
                    id_stem=stems[str(f)],
                )
                for f in files
            ]
    return splits


def _plan_file(cfg: LlavaConfig, split: str, scan: _FileScan, stream: bool) -> Iterator[PlannedShard]:
    """The shards of one input file, cut where :meth:`_FileScan.shard_items` ends them."""
    spec, meter = scan.spec, scan.meter
    selection = spec.selection
    read = meter.position if meter is not None else 0
    while True:
        start, offset, start_sample = scan.start, scan.offset, scan.sample
        duplicates: set[tuple[str, int, int]] = set()
        items = scan.shard_items(duplicates)
        lo = bisect.bisect_left(selection, start_sample) if selection is not None else 0
        if stream:
            shard = replace(spec, start_index=start, start_offset=offset, start_sample=start_sample)
            if selection is not None:  # where the shard ends is not known yet: the selection from here
                shard = replace(shard, selection=selection[lo:])
            yield PlannedShard(split, shard, duplicates, items)
        for _ in items:  # what the build did not read (or all of it, when not streaming)
            pass
        before, read = read, meter.position if meter is not None else 0
        if not stream:
            stop = scan.start if not scan.done else None
            part = None
            if selection is not None:
                hi = bisect.bisect_left(selection, scan.sample) if not scan.done else len(selection)
                part = selection[lo:hi]
            if part is None or len(part):
                shard = replace(
                    spec,
                    start_index=start,
                    stop_index=stop,
                    start_offset=offset,
                    selection=part,
                    start_sample=start_sample,
                )
                yield PlannedShard(split, shard, frozenset(duplicates), input_bytes=read - before)
        if scan.done:
            return


class _FileScan:
    """Planning's pass over one file, shard by shard: boundaries, and the records reusing an id."""

    def __init__(
        self,
        cfg: LlavaConfig,
        spec: ShardSpec,
        seen: set[tuple[str, str]],
        sizes: MediaSizes | None = None,
        meter: ReadMeter | None = None,
    ) -> None:
        self.cfg, self.spec, self.seen, self.meter = cfg, spec, seen, meter
        self.seekable = not spec.file.lower().endswith(".gz")
        # offsets also in a .gz file (of its uncompressed text): they measure a record's JSON text
        self._items = iter_items(spec.file, with_offsets=True, meter=meter)
        self._next: tuple[RawItem, int] | None = None  # the next shard's first item (read) and its estimate
        self._ahead: RawItem | None = None  # the item after the one being measured (read to measure it)
        # the next shard's first item index and byte offset; the position of the next sample (a
        # packed item holds several, and a mixture's selection counts samples, as count_records does)
        self.start = self.offset = self.sample = 0
        self.done = False
        # the estimate of a shard's output bytes (max_shard_size): media sizes, read once per path
        self.sizes = sizes if cfg.max_shard_size is not None else None
        roots = MediaRoots(
            spec.image_folder, spec.video_folder, cfg.allow_outside_root, audio_folder=spec.audio_folder
        )
        self.prefixes = (
            MediaSizes.prefix(roots.root_for("image", spec.file)),
            MediaSizes.prefix(roots.root_for("video", spec.file)),
            MediaSizes.prefix(roots.root_for("audio", spec.file)),
        )

    def shard_items(self, duplicates: set[tuple[str, int, int]]) -> Iterator[RawItem]:
        """The items of the shard that starts here, each judged as it passes (into ``duplicates``).

        The shard ends before the item that would make it more than ``records_per_shard`` items, or
        take its estimated output bytes past ``max_shard_size`` (see :meth:`_estimate`); its first
        item is always its own, however big.
        """
        every, limit = self.cfg.records_per_shard, self.cfg.max_shard_size
        total = 0
        while True:
            if self._next is not None:
                (item, estimate), self._next = self._next, None
            else:
                read = self._ahead if self._ahead is not None else next(self._items, None)
                self._ahead = None
                if read is None:
                    break
                item = read
                estimate = self._estimate(item) if limit is not None and item.index is not None else 0
            if item.index is None:  # invalid JSON: the shard that reads this part reports it
                self.done = True
                yield item
                return
            if item.index != self.start and (
                item.index - self.start >= every or (limit is not None and total + estimate > limit)
            ):
                self._next, self.start = (item, estimate), item.index
                self.offset = item.offset if self.seekable and item.offset is not None else 0
                return
            total += estimate
            self._judge(item, duplicates)
            yield item
        self.done = True

    def _estimate(self, item: RawItem) -> int:
        """The item's share of a shard's output bytes: its JSON text (up to the next item's offset,
        read ahead for it) plus the media files it names, counted as often as a mixture takes them."""
        assert self.sizes is not None
        media, taken, count = 0, 1, 1
        if item.error is None:
            samples = item.value if is_pack(item.value) else [item.value]
            selection = self.spec.selection
            taken, count = 0, len(samples)
            for position, value in enumerate(samples):
                times = 1 if selection is None else count_in(selection, self.sample + position)
                taken += times
                if times and isinstance(value, dict):
                    media += self.sizes.of_record(value, *self.prefixes) * times
        if item.offset is None:  # a bad JSONL line: rejected, nothing of it is written
            return media
        self._ahead = next(self._items, None)
        if self._ahead is not None and self._ahead.offset is not None:
            text = self._ahead.offset - item.offset
        else:  # the file's last item (or one before a bad line): its text as JSON
            text = len(_json_text(item.value).encode()) if item.error is None else 0
        return media + text * taken // count

    def _judge(self, item: RawItem, duplicates: set[tuple[str, int, int]]) -> None:
        spec, selection = self.spec, self.spec.selection
        packed = item.error is None and is_pack(item.value)
        samples = item.value if packed else [item.value]
        first_sample = self.sample
        self.sample += len(samples)
        if item.error is not None:
            return
        assert item.index is not None
        for position, value in enumerate(samples):
            if selection is not None and not count_in(selection, first_sample + position):
                continue
            if not isinstance(value, dict):
                continue
            rid = record_id(
                value,
                file=spec.file,
                index=item.index,
                position=position if packed else None,
                stem=spec.id_stem,
            )
            if rid is None:
                continue
            # a mixture's sources are separate datasets with their own ids
            key = (spec.source if self.cfg.mixture is not None else "", rid)
            if key in self.seen:
                duplicates.add((spec.file_key, item.index, position))
            else:
                self.seen.add(key)


def _json_text(value: Any) -> str:
    """The value as JSON text, whatever its depth (see ``_jsontext.at_full_depth``)."""
    return at_full_depth(functools.partial(json.dumps, ensure_ascii=False), value)


def count_in(sorted_values: Sequence[int], value: int) -> int:
    """How often ``value`` occurs in ``sorted_values``."""
    return bisect.bisect_right(sorted_values, value) - bisect.bisect_left(sorted_values, value)
