"""The one table-producing core: a planned shard → row batches (Arrow tables) of the one schema.

:class:`ShardRows` needs nothing but the :class:`~llava_hf.build.config.LlavaConfig` and a
:class:`~llava_hf.build.config.ShardSpec` (both picklable; no global state), so a ``datasets`` builder, a
build in worker processes or a distributed read task each call it the same way. Every validation rule
and the ``on_error`` policy run here: ``"raise"`` stops at the first bad record with its full message;
``"skip"`` drops it, counts it by code and (with ``report_dir``) writes one line per dropped record and
per warning.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any

from ..media.audio import check_audio, probe_audio
from ..media.files import (
    MediaKind,
    MediaReadError,
    MediaRoots,
    check_video,
    inspect_image,
    open_media,
    probe_video,
    read_media,
    relative_media_path,
    resolve_media,
)
from ..media.frames import frames_info
from ..media.remote import is_remote_media, remote_problem
from ..problems import Problem, ProblemCounter
from ..records import (
    LAYOUT_KEY,
    PACK_KEY,
    RawItem,
    iter_records,
    records_from_items,
    video_values,
)
from ..records.dataset_info import entry_for
from ..utils.logging import get_logger
from ..validate import CheckedRecord, Validator, apply_policy, unreadable_problem
from .batches import BATCH_MAX_BYTES, BATCH_ROWS, MediaArena, Prefetch, RowBatch
from .config import LlavaConfig, ShardSpec

__all__ = ["ShardRows"]

logger = get_logger(__name__)

#: The problems of media paths (resolve_media): with check_files=False, only a path's text is judged
_PATH_CODES = frozenset(("media_outside_root", "missing_media", "remote_media"))
#: The problems validate finds while resolving a path (before it checks any file's readability)
_RESOLVE_CODES = _PATH_CODES | {"remote_fetch_failed"}


class ShardRows:
    """Reads, checks and turns the records of one shard into rows; needs only the config (picklable)."""

    def __init__(self, config: LlavaConfig) -> None:
        self.config = config
        self.roots = MediaRoots()
        self.rejected = 0  # records the last shard of :meth:`batches` dropped (on_error="skip")
        self.fetched = self.fetched_bytes = 0  # remote media read by the last shard (allow_remote_media)
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
            roots=cfg.media_roots(shard.image_folder, shard.video_folder, shard.audio_folder),
            deep=cfg.deep,
            strict=cfg.strict,
            task=cfg.task,
            check_readable=False,  # checked on the bytes read for the row, below
            check_files=False,  # opened once by _read_into, which judges missing files and symlinks
        )
        self.roots = validator.roots
        counter = ProblemCounter()
        self.fetched = self.fetched_bytes = 0
        if batch is None:
            batch = RowBatch()
        batch.clear()

        def checked_records() -> Iterator[CheckedRecord]:
            entry = entry_for(cfg.dataset_entries, shard.file)
            records = (
                records_from_items(items, source=shard.source, stem=shard.id_stem, entry=entry)
                if items is not None
                else iter_records(
                    shard.file,
                    source=shard.source,
                    stem=shard.id_stem,
                    entry=entry,
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
                checked, video_info, audio_info = self._read_media(checked, batch, prefetch)
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
                batch.rows.append(self._row(kept, video_info, audio_info))
                if len(batch) >= max_rows or batch.nbytes >= max_bytes:
                    yield batch
                    batch.clear(release=release)
            if len(batch):
                yield batch
            if self.fetched:
                report.fetched(self.fetched, self.fetched_bytes)
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
    ) -> tuple[CheckedRecord, list[dict[str, Any]], list[dict[str, Any]]]:
        """Read every media file of a record into the batch, once; check (and probe) those bytes.

        Returns the record with any new problems, and the probed ``video_info`` and ``audio_info``."""
        record = checked.record
        infos: list[dict[str, Any]] = []
        audio_infos: list[dict[str, Any]] = []
        if record is None or not checked.ok:
            return checked, infos, audio_infos
        problems: list[Problem] = []

        def take(kind: MediaKind, fname: str, path: str, full: str) -> Any:
            """Read one file into its arena and judge it; its fact (size, probed info), or None."""
            arena = batch.media["video_frames" if kind == "frame" else f"{kind}s"]
            data, problem = self._read_into(arena, prefetch, record, kind, fname, path, full)
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
                if reason is None:
                    return fact
                problem = unreadable_problem(record, kind, 0, path, reason, field=fname)
            problems.append(problem)
            return None

        for i, (path, full) in enumerate(zip(record.images, checked.image_paths)):
            size = take("image", f"images[{i}]", path, full)
            if size is not None:
                batch.image_sizes.append(size)
        if record.videos:
            files, frames = iter(checked.video_paths), iter(checked.frame_paths)
            for i, video in enumerate(record.videos):
                if isinstance(video, str):
                    resolved = next(files, None)
                    info = None if resolved is None else take("video", f"videos[{i}]", video, resolved)
                    if info is not None:
                        infos.append(dict(info))  # each row its own dict
                    continue
                sizes = [
                    take("frame", f"videos[{i}][{j}]", path, full)
                    for j, (path, full) in enumerate(zip(video, frames))
                ]
                if sizes and sizes[0] is not None:
                    infos.append(frames_info(len(video), sizes[0]))
        for i, (path, full) in enumerate(zip(record.audios, checked.audio_paths)):
            info = take("audio", f"audios[{i}]", path, full)
            if info is not None:
                audio_infos.append(dict(info))
        if problems:  # the record is dropped (or raises): its bytes are rolled back by the caller
            unresolved = [p for p in problems if p.code in _RESOLVE_CODES]
            if unresolved:  # as validate: its readability checks run only once every path resolves
                problems = unresolved
            return replace(checked, problems=(*checked.problems, *problems)), [], []
        return checked, infos, audio_infos

    def _judge(self, kind: MediaKind, full: str, data: memoryview) -> tuple[str | None, Any]:
        """Why the bytes do not open, or None; and the image's size or the video's or audio's facts."""
        if kind in ("image", "frame"):
            return inspect_image(full, deep=self.config.deep, data=data)
        if kind == "video":
            return _check_video(full, data, deep=self.config.deep)
        return _check_audio(full, data, deep=self.config.deep)

    def _read_into(
        self,
        arena: MediaArena,
        prefetch: Prefetch,
        record: Any,
        kind: MediaKind,
        fname: str,
        path: str,
        full: str,
    ) -> tuple[memoryview | None, Problem | None]:
        """Read a media file once; a missing file, a symlink or a folder is judged by resolve_media."""
        if is_remote_media(path):  # a record's own URL (allow_remote_media): fetched within the limits
            roots = self.roots
            try:
                arena.append(read_media(full, max_bytes=roots.max_remote_bytes, timeout=roots.remote_timeout))
            except MediaReadError as err:
                where = {"file": record.file, "index": record.index, "id": record.id, "field": fname}
                return None, remote_problem(path, kind, err, **where)
            self.fetched += 1
            self.fetched_bytes += len(arena.view(len(arena) - 1))
            return arena.view(len(arena) - 1), None
        try:
            return _read_file(arena, prefetch, full, self.roots.remote_timeout), None
        except MediaReadError as first:
            error = first
        resolved, problem = resolve_media(
            path, kind, self.roots, file=record.file, index=record.index, id=record.id, field=fname
        )
        if problem is not None:
            return None, problem
        if resolved is not None and resolved != full:  # a symlink that stays inside its root
            try:
                return _read_file(arena, prefetch, resolved, self.roots.remote_timeout), None
            except MediaReadError as again:
                error = again
        return None, unreadable_problem(record, kind, 0, path, error.strerror or str(error), field=fname)

    def _row(
        self, record: Any, video_info: list[dict[str, Any]], audio_info: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A row of the schema; ``images``/``videos``/``audios`` hold the relative paths (bytes are in the batch)."""
        row: dict[str, Any] = {
            "id": record.id,
            "images": [relative_media_path(p) for p in record.images],
            "videos": [relative_media_path(p) if isinstance(p, str) else None for p in record.videos],
            "video_frames": [
                [] if isinstance(p, str) else [relative_media_path(f) for f in p] for p in record.videos
            ],
            "video_info": video_info,
            "audios": [relative_media_path(p) for p in record.audios],
            "audio_info": audio_info,
        }
        if self.config.format == "messages":
            conversations = [{"from": t.role, "value": t.value} for t in record.conversations]
            from ..chat import to_messages
            from ..schema import stored_messages

            messages = to_messages(
                {
                    "id": record.id,
                    "conversations": conversations,
                    "images": list(record.images),
                    "videos": video_values(record.videos),
                    "audios": list(record.audios),
                },
                format="trl",
            )["messages"]
            # exactly the schema's keys: a built row fills a missing "text" with None, a streamed one
            # keeps what it is given, and both must be the same row
            row["messages"] = stored_messages(messages)
            record = _chat_fixed(record, conversations, row)
        else:
            row["conversations"] = record.conversations  # (from, value) pairs: see RowBatch
        row["source"] = record.source
        row["metadata"] = record.extra
        return row


def _chat_fixed(record: Any, conversations: list[dict[str, str]], row: dict[str, Any]) -> Any:
    """``record`` with, in its layout shape (``chat``), each turn that the row's ``messages`` do not give
    back as it was (a tool turn's speaker, a call's text): export restores them."""
    from ..chat import from_messages

    media = {k: row[k] for k in ("images", "videos", "audios")}
    back = from_messages({"id": record.id, "messages": row["messages"], **media})["conversations"]
    fixes = {
        str(i): {k: mine[k] for k in ("from", "value") if theirs[k] != mine[k]}
        for i, (mine, theirs) in enumerate(zip(conversations, back))
        if mine != theirs
    }
    if not fixes:
        return record
    shape = record.extra.get(LAYOUT_KEY) or {}
    return replace(record, extra={**record.extra, LAYOUT_KEY: {**shape, "chat": fixes}})


def _read_file(arena: MediaArena, prefetch: Prefetch, full: str, timeout: float | None = None) -> memoryview:
    if "://" in full:  # under a URL root
        arena.append(read_media(full, timeout=timeout))
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


def _check_audio(full: str, data: memoryview, *, deep: bool) -> tuple[str | None, dict[str, Any] | None]:
    """Why the bytes do not open as audio, or None; and the audio file's probed facts."""
    blob = bytes(data)
    reason = check_audio(full, deep=deep, data=blob)
    return reason, probe_audio(full, data=blob).to_dict() if reason is None else None


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
            prefetch.ahead(item.frame_paths)
            prefetch.ahead(item.audio_paths)
        window.append(item)
        if len(window) > PREFETCH_RECORDS:
            yield window.popleft()
    yield from window


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

    from ..mixture import iter_selected

    yield from iter_selected(selection, positioned())
    yield from file_problem


class _ShardReport(contextlib.AbstractContextManager["_ShardReport"]):
    """One JSON line per dropped record and per warning, in ``report_dir/<shard uid>.jsonl``."""

    def __init__(self, report_dir: str | None, shard: ShardSpec) -> None:
        self.path = (
            f"{report_dir.rstrip('/')}/{shard.uid}.jsonl"
            if report_dir and "://" in report_dir
            else (os.path.join(report_dir, f"{shard.uid}.jsonl") if report_dir else None)
        )
        self._file: Any = None

    def __enter__(self) -> _ShardReport:
        if self.path and "://" in self.path:  # a report folder on shared storage (an fsspec URL)
            import fsspec

            self._file = fsspec.open(self.path, "w", encoding="utf-8").open()
        elif self.path:
            self._file = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, kind: str, problem: Problem) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"kind": kind, **problem.to_dict()}, ensure_ascii=False) + "\n")

    def fetched(self, count: int, nbytes: int) -> None:
        """How many remote media files the shard fetched, and their bytes (one line)."""
        if self._file is not None:
            self._file.write(json.dumps({"kind": "fetched", "count": count, "bytes": nbytes}) + "\n")

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
