"""``LlavaBuilder``: LLaVA-format JSON + media folders → a Hugging Face dataset.

It is a standard :class:`datasets.GeneratorBasedBuilder`, so the usual API works::

    builder = LlavaBuilder(data_files={"train": "train.json"}, image_folder="images/")
    builder.download_and_prepare(file_format="parquet", num_proc=2)
    ds = builder.as_dataset(split="train")
    stream = builder.as_streaming_dataset(split="train")   # straight from the JSON and media

Every row has the one schema of :mod:`llava_hf.schema`. The reader and every validation rule run
inside generation, with the ``on_error`` policy: ``"raise"`` stops at the first bad record with its
full message; ``"skip"`` drops it, counts it by code, logs the counts, and (when ``report_dir`` is set)
writes one line per dropped record so that :func:`llava_hf.build_folder` can list them.

Big inputs are split into *original shards* (byte ranges of a JSON array or JSONL file found by one
quick scan, or record ranges of a gzip file), so ``num_proc`` scales with cores and a torch
``DataLoader``'s workers each stream their own part. A shard holds at most ``records_per_shard`` records
and (with ``max_shard_size``, as :func:`llava_hf.build_folder` plans its files) ends before the record
that would take an estimate of its output bytes past that size.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import functools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

import datasets
from datasets.builder import Key

from ._batches import BATCH_MAX_BYTES, BATCH_ROWS, MediaArena, Prefetch, RowBatch, metadata_json
from ._jsontext import at_full_depth
from ._logging import get_logger
from ._meter import ReadMeter
from ._parquet import arrow_stream_to_parquet
from .errors import InputFileError, LlavaHFError, UsageError
from .media import (
    MediaKind,
    MediaReadError,
    MediaRoots,
    MediaSizes,
    check_video,
    inspect_image,
    open_media,
    probe_video,
    read_media,
    relative_media_path,
    resolve_media,
)
from .problems import OnError, Problem, ProblemCounter
from .records import (
    PACK_KEY,
    RawItem,
    file_kind,
    id_stems,
    iter_items,
    iter_records,
    record_id,
    records_from_items,
)
from .schema import OutputFormat, features_for
from .validate import CheckedRecord, Validator, apply_policy, unreadable_problem

__all__ = ["LlavaBuilder", "LlavaConfig", "ShardSpec"]

logger = get_logger(__name__)

#: The problems of media paths (resolve_media): with check_files=False, only a path's text is judged
_PATH_CODES = frozenset(("media_outside_root", "missing_media"))

#: Records per original shard when a big file is split: a unit of work of ``datasets``' jobs and of a
#: ``DataLoader``'s workers, small enough that they share evenly. (``build_folder`` cuts its shards by
#: size instead: one shard is one output file.)
DEFAULT_RECORDS_PER_SHARD = 2048


@dataclass
class LlavaConfig(datasets.BuilderConfig):
    """Options of :class:`LlavaBuilder` (validated when created).

    Args:
        data_files: a path, a list of paths, or a dict ``split -> path(s)`` of LLaVA JSON/JSONL files.
        image_folder / video_folder: roots that relative media paths resolve against (default: the
            folder of each JSON file).
        on_error: ``"raise"`` (stop at the first bad record) or ``"skip"`` (drop it, counted by code).
        strict: a record with media but no tag is an error instead of getting its tags prepended.
        allow_outside_root: accept absolute media paths and paths that leave their root.
        deep: decode every image fully and the first frames of every video while building.
        format: ``"conversations"`` (LLaVA turns) or ``"messages"`` (typed parts, as TRL reads them).
        records_per_shard: at most this many records (JSON items) per original shard.
        max_shard_size: bytes; an original shard also ends before the record that would take its
            estimated output past this size: its records' JSON text plus the sizes of the media files
            they name (``os.stat``; a missing file counts 0). None: records_per_shard alone decides.
        mixture: a resolved :class:`llava_hf.mixture.Mixture`; replaces ``data_files`` (one split, ``train``).
        report_dir: a folder where each shard writes its dropped records and warnings (JSON lines).
    """

    image_folder: str | None = None
    video_folder: str | None = None
    on_error: OnError = "raise"
    strict: bool = False
    allow_outside_root: bool = False
    deep: bool = False
    format: OutputFormat = "conversations"
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD
    max_shard_size: int | None = None
    mixture: Any = None
    report_dir: str | None = None

    def __post_init__(self) -> None:
        files: Any = self.__dict__.get("data_files")
        if files is not None and not isinstance(
            files, (datasets.data_files.DataFilesDict, datasets.data_files.DataFilesPatternsDict)
        ):
            try:
                self.data_files = datasets.data_files.DataFilesDict.from_patterns(
                    datasets.data_files.sanitize_patterns(files), base_path=os.getcwd()
                )
            except FileNotFoundError as err:
                raise InputFileError(
                    f"{err}", file=str(files), hint="check the path of the input file"
                ) from None
        super().__post_init__()
        if self.on_error not in ("raise", "skip"):
            raise UsageError(f"on_error={self.on_error!r} is not 'raise' or 'skip'")
        if self.format not in ("conversations", "messages"):
            raise UsageError(f"format={self.format!r} is not 'conversations' or 'messages'")
        if not isinstance(self.records_per_shard, int) or self.records_per_shard < 1:
            raise UsageError(
                f"records_per_shard={self.records_per_shard!r} is not a positive integer",
                hint="for example records_per_shard=2048 (the default)",
            )
        if self.max_shard_size is not None and (
            not isinstance(self.max_shard_size, int) or self.max_shard_size < 1
        ):
            raise UsageError(
                f"max_shard_size={self.max_shard_size!r} is not a positive number of bytes",
                hint="for example max_shard_size=500_000_000",
            )
        for name in ("image_folder", "video_folder"):
            folder = getattr(self, name)
            if folder is not None:
                folder = os.fspath(folder)
                setattr(self, name, folder)
                if "://" not in folder and not os.path.isdir(folder):
                    raise UsageError(f"{name}={folder!r}: that folder does not exist", hint=f"check {name}=")
        if self.data_files is None and self.mixture is None:
            raise UsageError(
                "no input: pass data_files (a LLaVA JSON/JSONL file, a list, or a dict split -> files) "
                "or a mixture"
            )


@dataclass(frozen=True)
class ShardSpec:
    """One original shard: a byte range (``start_offset``) or record range of one input file."""

    file: str
    source: str
    start_index: int = 0
    stop_index: int | None = None
    start_offset: int = 0
    image_folder: str | None = None
    video_folder: str | None = None
    selection: Sequence[int] | None = None  # mixture: sample positions to take (sorted, repeats allowed)
    start_sample: int = 0  # sample position of the shard's first record in its file (packs hold several)
    id_stem: str | None = None  # generated ids are f"{id_stem}-{index}" (records.id_stems)

    @property
    def file_key(self) -> str:
        """Names the (source, file) pair: shards of one file share it."""
        import hashlib

        return hashlib.sha1(f"{self.source}\0{self.file}".encode()).hexdigest()[:10]

    @property
    def uid(self) -> str:
        """Names the shard (its report file)."""
        return f"{self.file_key}-{self.start_index:010d}"


class LlavaBuilder(datasets.GeneratorBasedBuilder):
    """Builds LLaVA-format JSON/JSONL (+ image and video folders) into the llava-hf schema."""

    BUILDER_CONFIG_CLASS = LlavaConfig
    DEFAULT_WRITER_BATCH_SIZE = BATCH_ROWS  # rows per Arrow record batch / Parquet row group
    config: LlavaConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except FileNotFoundError as err:  # datasets resolves data_files before the config sees them
            files = kwargs.get("data_files")
            raise InputFileError(f"{err}", file=str(files), hint="check the path of the input file") from None

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="LLaVA-format vision-language conversations built by llava-hf.",
            features=_KeepBytesFeatures(features_for(self.config.format)),
        )

    # ------------------------------------------------------------------------------------ planning

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards, "duplicates": duplicates})
            for split, (shards, duplicates) in self.plan().items()
        ]

    def plan(self) -> dict[str, tuple[list[ShardSpec], frozenset[tuple[str, int, int]]]]:
        """Per split: its original shards, and the records that reuse an id (see :func:`plan_splits`)."""
        return plan_splits(self.config)

    def _generate_shards(
        self, shards: list[ShardSpec], duplicates: frozenset[Any]
    ) -> Iterator[dict[str, Any]]:
        for shard in shards:
            yield {"file": shard.file, "start_index": shard.start_index, "stop_index": shard.stop_index}

    def _prepare_split_single(self, **kwargs: Any) -> Iterator[Any]:
        # datasets' Parquet writer embeds media with Image/Video.embed_storage, which keeps only the
        # basename of every local path ('1.jpg' for 'coco/train2017/1.jpg'). Our rows hold the bytes
        # already, so Parquet shards are written as Arrow (no embedding), then rewritten as Parquet
        # with the options datasets' own Parquet writer defaults to (CDC and page index).
        parquet = kwargs.get("file_format") == "parquet"
        if parquet:
            kwargs["file_format"] = "arrow"
        # datasets wraps every error of generation in DatasetGenerationError, whose cause does not
        # survive the trip from a worker process (num_proc): raise our own error (picklable) instead.
        try:
            for job_id, done, content in super()._prepare_split_single(**kwargs):
                if done and parquet:
                    fpath = kwargs["fpath"]
                    for shard_id in range(content[3]):  # (examples, bytes, features, num_shards, ...)
                        arrow_stream_to_parquet(
                            self._fs,
                            fpath.replace("SSSSS", f"{shard_id:05d}").replace("JJJJJ", f"{job_id:05d}"),
                            content_defined_chunking=True,
                            page_index=True,
                        )
                yield job_id, done, content
        except datasets.exceptions.DatasetGenerationError as err:
            cause: BaseException | None = err.__cause__
            while cause is not None and not isinstance(cause, LlavaHFError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None

    # ---------------------------------------------------------------------------------- generation

    def _get_examples_iterable_for_split(self, split_generator: datasets.SplitGenerator) -> Any:
        # Streaming yields Arrow tables, as datasets' own Parquet and Arrow builders do: rows are decoded
        # from them and never encoded again. An IterableDataset encodes rows of an example iterable
        # with plain Features after select_columns, rename_column and the like, and Image.encode_example
        # takes a file of the current directory named like the record's relative path over the bytes.
        from datasets.iterable_dataset import ArrowExamplesIterable

        return ArrowExamplesIterable(self._generate_tables, split_generator.gen_kwargs)

    def _generate_tables(
        self, shards: list[ShardSpec], duplicates: frozenset[tuple[str, int, int]]
    ) -> Iterator[tuple[Key, Any]]:
        schema = self.info.features.arrow_schema
        for shard_idx, shard in enumerate(shards):
            batches = _RowGenerator(self.config).batches(shard, duplicates, release=True)
            for batch_idx, batch in enumerate(batches):
                yield Key(shard_idx, batch_idx), batch.to_table(schema)

    def _generate_examples(
        self, shards: list[ShardSpec], duplicates: frozenset[tuple[str, int, int]]
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        for shard_idx, shard in enumerate(shards):
            for row_idx, row in enumerate(self.generate_rows(shard, duplicates)):
                yield Key(shard_idx, row_idx), row

    def generate_rows(
        self, shard: ShardSpec, duplicates: frozenset[tuple[str, int, int]] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """The rows of one original shard, in order, after every rule and the ``on_error`` policy."""
        return _RowGenerator(self.config).rows(shard, duplicates)


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
        roots = MediaRoots(spec.image_folder, spec.video_folder, cfg.allow_outside_root)
        self.prefixes = (
            MediaSizes.prefix(roots.root_for("image", spec.file)),
            MediaSizes.prefix(roots.root_for("video", spec.file)),
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
            samples = item.value if _is_pack(item.value) else [item.value]
            selection = self.spec.selection
            taken, count = 0, len(samples)
            for position, value in enumerate(samples):
                times = 1 if selection is None else _count(selection, self.sample + position)
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
        packed = item.error is None and _is_pack(item.value)
        samples = item.value if packed else [item.value]
        first_sample = self.sample
        self.sample += len(samples)
        if item.error is not None:
            return
        assert item.index is not None
        for position, value in enumerate(samples):
            if selection is not None and not _count(selection, first_sample + position):
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


class _RowGenerator:
    """Reads, checks and turns the records of one shard into rows; needs only the config (picklable)."""

    def __init__(self, config: LlavaConfig) -> None:
        self.config = config
        self.roots = MediaRoots()
        self.rejected = 0  # records the last shard of :meth:`batches` dropped (on_error="skip")
        #: (kind, path, size) -> what checking the bytes gave: each distinct file judged once per process
        self._verdicts: dict[tuple[str, str, int], tuple[str | None, Any]] = {}

    def rows(self, shard: ShardSpec, duplicates: frozenset[tuple[str, int, int]]) -> Iterator[dict[str, Any]]:
        """The kept rows, media as ``{"bytes", "path"}`` (what ``datasets``' writers take)."""
        for batch in self.batches(shard, duplicates):
            yield from batch.plain_rows()

    def batches(
        self,
        shard: ShardSpec,
        duplicates: AbstractSet[tuple[str, int, int]],
        *,
        max_rows: int = BATCH_ROWS,
        max_bytes: int = BATCH_MAX_BYTES,
        items: Iterable[RawItem] | None = None,
        batch: RowBatch | None = None,
        release: bool = False,
    ) -> Iterator[RowBatch]:
        """The kept rows in batches of ``max_rows`` (fewer once their media hold ``max_bytes``).

        The same :class:`RowBatch` object is yielded again and again, refilled: use it before asking
        for the next one. Each media file is opened once, read once into the batch's buffers, and its
        readability checked on those bytes. ``items``: the shard's items from planning's pass
        (:func:`iter_plan` with ``stream=True``), instead of reading its part of the file again.
        ``batch``: the batch (and media buffers) to fill, kept from an earlier shard. ``release``: refill
        new media buffers each time, so that a table made from a yielded batch stays valid.
        """
        cfg = self.config
        validator = Validator(
            roots=MediaRoots(shard.image_folder, shard.video_folder, cfg.allow_outside_root),
            deep=cfg.deep,
            strict=cfg.strict,
            check_readable=False,  # checked on the bytes read for the row, below
            check_files=False,  # opened once by _read_into, which judges missing files and symlinks
        )
        self.roots = validator.roots
        counter = ProblemCounter()
        if batch is None:
            batch = RowBatch()
        batch.clear()

        def checked_records() -> Iterator[CheckedRecord]:
            records = (
                records_from_items(items, source=shard.source, stem=shard.id_stem)
                if items is not None
                else iter_records(
                    shard.file,
                    source=shard.source,
                    stem=shard.id_stem,
                    start_offset=shard.start_offset,
                    start_index=shard.start_index,
                    stop_index=shard.stop_index,
                )
            )
            file_key = shard.file_key
            for record, problems in _select(records, shard.selection, shard.start_sample):
                duplicate = False
                if record is not None and duplicates:
                    position = record.extra.get(PACK_KEY, [None, 0])[1]
                    duplicate = (file_key, record.index, position) in duplicates
                checked = validator.check(record, problems, duplicate=duplicate)
                if not checked.ok and any(p.code in _PATH_CODES for p in checked.problems):
                    # a media path refused before any file was asked about: validate, which asks,
                    # may find an earlier path missing; judge this (rare) record as it does
                    checked = replace(validator, check_files=True).check(
                        record, problems, duplicate=duplicate
                    )
                yield checked

        with _ShardReport(cfg.report_dir, shard) as report, Prefetch() as prefetch:
            for checked in _prefetched(checked_records(), prefetch):
                mark = batch.mark()
                checked, video_info = self._read_media(checked, batch, prefetch)
                for problem in checked.problems:
                    if not problem.is_error:
                        report.write("warning", problem)
                error = checked.first_error
                if error is not None and cfg.on_error == "skip":
                    report.write("rejected", error)
                kept = apply_policy(checked, cfg.on_error, counter)
                if kept is None:
                    batch.rollback(mark)
                    continue
                batch.rows.append(self._row(kept, video_info))
                if len(batch) >= max_rows or batch.nbytes >= max_bytes:
                    yield batch
                    batch.clear(release=release)
            if len(batch):
                yield batch
        self.rejected = counter.num_rejected
        if counter.num_rejected:
            logger.warning(
                "%s: skipped %d bad record(s) in the shard from record %d: %s",
                shard.file,
                counter.num_rejected,
                shard.start_index,
                ", ".join(f"{code}={n}" for code, n in sorted(counter.rejected.items())),
            )

    def _read_media(
        self, checked: CheckedRecord, batch: RowBatch, prefetch: Prefetch
    ) -> tuple[CheckedRecord, list[dict[str, Any]]]:
        """Read every media file of a record into the batch, once; check (and probe) those bytes."""
        record = checked.record
        infos: list[dict[str, Any]] = []
        if record is None or not checked.ok:
            return checked, infos
        kinds: tuple[tuple[MediaKind, tuple[str, ...], tuple[str, ...]], ...] = (
            ("image", record.images, checked.image_paths),
            ("video", record.videos, checked.video_paths),
        )
        problems: list[Problem] = []
        for kind, paths, fulls in kinds:
            arena = batch.media["images" if kind == "image" else "videos"]
            for i, (path, full) in enumerate(zip(paths, fulls)):
                data, problem = self._read_into(arena, prefetch, record, kind, i, path, full)
                if problem is None:
                    assert data is not None
                    key = (kind, full, len(data))
                    verdict = self._verdicts.get(key)
                    if verdict is None:
                        verdict = self._judge(kind, full, data)
                        if len(self._verdicts) >= VERDICTS_KEPT:
                            self._verdicts.clear()
                        self._verdicts[key] = verdict
                    reason, fact = verdict
                    if fact is not None:
                        if kind == "image":
                            batch.image_sizes.append(fact)
                        else:
                            infos.append(dict(fact))  # each row its own
                    if reason is not None:
                        problem = unreadable_problem(record, kind, i, path, reason)
                if problem is not None:
                    problems.append(problem)
        if problems:  # the record is dropped (or raises): its bytes are rolled back by the caller
            unresolved = [p for p in problems if p.code in _PATH_CODES]
            if unresolved:  # as validate: its readability checks run only once every path resolves
                problems = unresolved
            return replace(checked, problems=(*checked.problems, *problems)), []
        return checked, infos

    def _judge(self, kind: MediaKind, full: str, data: memoryview) -> tuple[str | None, Any]:
        """Why the bytes do not open, or None; and the image's size or the video's probed facts."""
        if kind == "image":
            return inspect_image(full, deep=self.config.deep, data=data)
        return _check_video(full, data, deep=self.config.deep)

    def _read_into(
        self,
        arena: MediaArena,
        prefetch: Prefetch,
        record: Any,
        kind: MediaKind,
        i: int,
        path: str,
        full: str,
    ) -> tuple[memoryview | None, Problem | None]:
        """Read a media file once; a missing file, a symlink or a folder is judged by resolve_media."""
        try:
            return _read_file(arena, prefetch, full), None
        except MediaReadError as first:
            error = first
        fname = f"{'images' if kind == 'image' else 'videos'}[{i}]"
        resolved, problem = resolve_media(
            path, kind, self.roots, file=record.file, index=record.index, id=record.id, field=fname
        )
        if problem is not None:
            return None, problem
        if resolved is not None and resolved != full:  # a symlink that stays inside its root
            try:
                return _read_file(arena, prefetch, resolved), None
            except MediaReadError as again:
                error = again
        return None, unreadable_problem(record, kind, i, path, error.strerror or str(error))

    def _row(self, record: Any, video_info: list[dict[str, Any]]) -> dict[str, Any]:
        """A row of the schema; ``images``/``videos`` hold the relative paths (bytes are in the batch)."""
        row: dict[str, Any] = {
            "id": record.id,
            "images": [relative_media_path(p) for p in record.images],
            "videos": [relative_media_path(p) for p in record.videos],
            "video_info": video_info,
        }
        if self.config.format == "messages":
            conversations = [{"from": t.role, "value": t.value} for t in record.conversations]
            from .chat import to_messages

            messages = to_messages(
                {
                    "id": record.id,
                    "conversations": conversations,
                    "images": list(record.images),
                    "videos": list(record.videos),
                },
                format="trl",
            )["messages"]
            # exactly the schema's keys: a built row fills a missing "text" with None, a streamed one
            # keeps what it is given, and both must be the same row
            row["messages"] = [
                {
                    "role": m["role"],
                    "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]],
                }
                for m in messages
            ]
        else:
            row["conversations"] = record.conversations  # (from, value) pairs: see RowBatch
        row["source"] = record.source
        row["metadata"] = record.extra
        return row


def _read_file(arena: MediaArena, prefetch: Prefetch, full: str) -> memoryview:
    if "://" in full:
        arena.append(read_media(full))
        return arena.view(len(arena) - 1)
    fd = prefetch.take(full)
    if fd is None:
        fd = open_media(full)
    try:
        data, cached = arena.read(fd, full)
        prefetch.observe(cached)
        return data
    finally:
        os.close(fd)


def _check_video(full: str, data: memoryview, *, deep: bool) -> tuple[str | None, dict[str, Any] | None]:
    """Why the bytes do not open as a video, or None; and the video's probed facts."""
    blob = bytes(data)  # av reads a BytesIO: one copy of the video serves the check and the probe
    reason = check_video(full, deep=deep, data=blob)
    return reason, probe_video(full, data=blob).to_dict() if reason is None else None


#: Media verdicts a shard's process keeps (a mixture names each COCO image tens of times)
VERDICTS_KEPT = 1 << 16

#: Records whose media are opened ahead of the one being read (their reads overlap in the kernel).
PREFETCH_RECORDS = 32


def _prefetched(checked: Iterator[CheckedRecord], prefetch: Prefetch) -> Iterator[CheckedRecord]:
    """Pass the records on, asking for the media of the next ones to be read ahead."""
    window: collections.deque[CheckedRecord] = collections.deque()
    for item in checked:
        if item.ok:
            prefetch.ahead(item.image_paths)
            prefetch.ahead(item.video_paths)
        window.append(item)
        if len(window) > PREFETCH_RECORDS:
            yield window.popleft()
    yield from window


class _KeepBytesFeatures(datasets.Features):
    """The schema's features, except that a media value given with its bytes keeps them, and that
    ``metadata`` is written as exactly as :func:`~llava_hf._batches.metadata_json` writes it.

    ``Image``/``Video.encode_example`` drop the bytes of a ``{"bytes", "path"}`` value whenever
    ``path`` names an existing file relative to the *current directory*; with a record's relative path
    (``coco/train2017/1.jpg``) the row would then point at whatever file the current directory holds
    instead of holding the bytes read from ``image_folder``.
    """

    def __reduce__(self) -> Any:  # datasets copies features by pickling: keep this class
        return _KeepBytesFeatures, (dict(self),)

    def encode_example(self, example: Any) -> Any:
        metadata = example.get("metadata")
        if isinstance(metadata, dict):  # as exactly as a build writes it (datasets' Json rounds floats)
            example = {**example, "metadata": None}
        encoded = super().encode_example(example)
        if isinstance(metadata, dict):
            encoded["metadata"] = at_full_depth(metadata_json, metadata)
        for column in ("images", "videos"):
            for item, stored in zip(example.get(column) or [], encoded.get(column) or []):
                if isinstance(item, dict) and item.get("bytes") is not None and isinstance(stored, dict):
                    stored["bytes"] = item["bytes"]
        return encoded


def _is_pack(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _select(items: Iterator[Any], selection: Sequence[int] | None, start: int) -> Iterator[Any]:
    """Keep the records a mixture selected, as often as selected (everything without a mixture).

    ``selection`` holds sorted sample positions (a packed item holds several samples); ``start`` is
    the position of the first item of ``items``. A file-level problem (invalid JSON) is passed on.
    """
    if selection is None:
        yield from items
        return
    file_problem: list[Any] = []

    def positioned() -> Iterator[tuple[int, Any]]:
        for k, (record, problems) in enumerate(items):
            if record is None and problems and problems[0].index is None:
                file_problem.append((record, problems))
                return
            yield start + k, (record, problems)

    from .mixture import iter_selected

    yield from iter_selected(selection, positioned())
    yield from file_problem


def _count(sorted_values: Sequence[int], value: int) -> int:
    """How often ``value`` occurs in ``sorted_values``."""
    return bisect.bisect_right(sorted_values, value) - bisect.bisect_left(sorted_values, value)


class _ShardReport(contextlib.AbstractContextManager["_ShardReport"]):
    """One JSON line per dropped record and per warning, in ``report_dir/<shard uid>.jsonl``."""

    def __init__(self, report_dir: str | None, shard: ShardSpec) -> None:
        self.path = os.path.join(report_dir, f"{shard.uid}.jsonl") if report_dir else None
        self._file: Any = None

    def __enter__(self) -> _ShardReport:
        if self.path:
            self._file = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, kind: str, problem: Problem) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"kind": kind, **problem.to_dict()}, ensure_ascii=False) + "\n")

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
