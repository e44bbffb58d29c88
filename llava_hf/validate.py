"""Validation rules for normalized records, and the policy that applies them.

Rules return :class:`~llava_hf.problems.Problem` values; nothing here raises for bad data. The
builder and ``llava-hf validate`` share :class:`Validator`, so a record that validates also builds.

Conversation rules: ``unknown_role``, ``bad_turn_order`` (a system turn only first; then human first;
then strictly alternating), ``empty_value``, ``placeholder_in_answer``, ``placeholder_mismatch`` and
the ``placeholder_added`` fix (LLaVA's own convention: ``<image>\\n`` per image prepended to the first
human turn when a record has media and no tag at all; an error with ``strict``), ``ends_with_human``.
Media rules: ``media_outside_root``, ``missing_media``, ``unreadable_media``. Split rule:
``duplicate_id`` (reported on the second and later records that reuse an id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import RecordError
from .media.checks import MediaChecks
from .media.files import MediaKind, MediaRoots, resolve_media
from .problems import OnError, Problem, ProblemCounter, locate
from .records import Record, Turn, id_stems, iter_records, iter_videos
from .records.dataset_info import DatasetEntry, entry_for
from .records.layouts import ASSISTANT_SIDE, USER_SIDE
from .utils.meter import ReadMeter
from .utils.parallel import ordered_map

__all__ = [
    "CheckedRecord",
    "Validator",
    "apply_policy",
    "check_conversation",
    "duplicate_problem",
    "unreadable_problem",
]

IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"
AUDIO_TAG = "<audio>"
_ROLES = USER_SIDE | ASSISTANT_SIDE | {"system"}
#: ``task``: ``"sft"`` (a human turn first, no tag in an answer) or ``"pretrain"`` (captioning and
#: pre-training records: the answer alone, tags allowed in it)
TASKS = ("sft", "pretrain")
_PLAIN_ROLES = frozenset(("human", "gpt", "system"))


def expected_after(side: str) -> str:
    """The side that must follow a turn of ``side``."""
    return "gpt" if side == "human" else "human"


#: Structural problems of an object whose id reads: the record is dropped, its id stays used
_CLAIMING = frozenset(("invalid_record", "invalid_conversations", "invalid_turn", "invalid_media_field"))


@dataclass(frozen=True)
class CheckedRecord:
    """A record after every rule: the (possibly fixed) record, its problems, and resolved media paths."""

    record: Record | None
    problems: tuple[Problem, ...]
    image_paths: tuple[str, ...] = ()
    video_paths: tuple[str, ...] = ()
    file: str = ""
    index: int | None = None
    audio_paths: tuple[str, ...] = ()
    #: the resolved frames of the videos given as frames, in order (``video_paths`` holds the video files)
    frame_paths: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.record is not None and (not self.problems or not any(p.is_error for p in self.problems))

    @property
    def first_error(self) -> Problem | None:
        if not self.problems:  # most records: asked several times per record by the builder
            return None
        return next((p for p in self.problems if p.is_error), None)


def check_conversation(
    record: Record, *, strict: bool = False, task: str = "sft"
) -> tuple[Record, list[Problem]]:
    """Apply the conversation rules; returns the record (tags added when needed) and its problems.

    Tool turns (``function_call``/``tool_call`` on the assistant's side, ``observation``/
    ``tool_response``/``tool`` on the user's) alternate as their side does; consecutive tool turns of
    one side are allowed (several calls, several results). ``task="pretrain"``: no human turn needed
    and tags allowed in an answer.
    """
    pretrain = task == "pretrain"
    file, index, rid = record.file, record.index, record.id
    problems: list[Problem] = []
    turns = record.conversations

    def problem(code: str, message: str, field: str | None) -> None:
        problems.append(
            Problem(code, f"{locate(file, index, rid, field)}: {message}", file, index, rid, field)
        )

    key = "messages" if record.layout == "messages" else "conversations"
    for t, turn in enumerate(turns):
        role, value = turn
        if role not in _ROLES:
            problem(
                "unknown_role",
                f"unknown role {role!r}; use human, gpt or system (user and assistant are accepted too), "
                f"or a tool turn's function_call, observation, tool_call, tool_response or tool",
                f"{key}[{t}]",
            )
        if not value or value.isspace():  # what strip() would empty, without copying the text
            problem(
                "empty_value", "the turn's text is empty; remove the turn or write its text", f"{key}[{t}]"
            )
        if role in ASSISTANT_SIDE and not pretrain and "<" in value:
            for tag in (IMAGE_TAG, VIDEO_TAG, AUDIO_TAG):
                if tag in value:
                    problem(
                        "placeholder_in_answer",
                        f"{tag} inside a gpt turn: a model cannot be trained to "
                        f"emit media; move the tag into a human turn",
                        f"{key}[{t}]",
                    )
    if not pretrain and (not problems or not any(p.code == "unknown_role" for p in problems)):
        problems.extend(_check_order(record, key))

    fixed = record
    # tags cannot span the separator
    asked = "\x00".join([t.value for t in turns if pretrain or t.role not in ASSISTANT_SIDE])
    for tag, media, name in (
        (IMAGE_TAG, record.images, "image"),
        (VIDEO_TAG, record.videos, "video"),
        (AUDIO_TAG, record.audios, "audio"),
    ):
        tags = asked.count(tag)
        if tags == len(media):
            continue
        if tags == 0 and not strict and not pretrain and not any(tag in t.value for t in turns):
            fixed, added = _prepend_tags(fixed, tag, len(media))
            if added:
                problems.append(
                    Problem(
                        "placeholder_added",
                        f"{locate(file, index, rid, key)}: {len(media)} {name}(s) and no {tag} tag; prepended "
                        f"{tag}\\n to the first human turn (pass strict=True to make this an error)",
                        file,
                        index,
                        rid,
                        key,
                        severity="warning",
                    )
                )
                continue
        problem(
            "placeholder_mismatch",
            f"{tags} {tag} tag(s) in the conversation but {len(media)} {name}(s); "
            f"write exactly one {tag} per {name}, where it belongs in the text",
            key,
        )

    if (
        turns
        and turns[-1].role in USER_SIDE
        and not pretrain
        and not any(p.code == "bad_turn_order" for p in problems)
    ):
        problems.append(
            Problem(
                "ends_with_human",
                f"{locate(file, index, rid, key)}: the last turn is from human; it has no answer to learn from",
                file,
                index,
                rid,
                key,
                severity="warning",
            )
        )
    return fixed, problems


def _check_order(record: Record, key: str) -> list[Problem]:
    file, index, rid = record.file, record.index, record.id
    roles = [t.role for t in record.conversations]
    start = 1 if roles and roles[0] == "system" else 0
    expected = "human"
    for t in range(start, len(roles)):
        role = roles[t]
        side = "human" if role in USER_SIDE else "gpt" if role in ASSISTANT_SIDE else role
        if side != expected and t > start and role not in _PLAIN_ROLES:
            pass  # a tool turn after a turn of its own side: several calls, or several results
        elif side != expected:
            if role == "system":
                why = "a system turn may only come first"
            elif t == start:
                why = f"the conversation must start with human{' after the system turn' if start else ''}"
            else:
                why = f"turns must alternate human/gpt; turn {t} should be {expected}"
            fname = f"{key}[{t}]"
            return [
                Problem(
                    "bad_turn_order",
                    f"{locate(file, index, rid, fname)}: {why}, found {role!r}",
                    file,
                    index,
                    rid,
                    fname,
                )
            ]
        expected = expected_after(side)
    if start == len(roles):
        fname = f"{key}[0]"
        return [
            Problem(
                "bad_turn_order",
                f"{locate(file, index, rid, fname)}: a system turn alone; the conversation needs a human turn "
                f"after it (and a gpt answer)",
                file,
                index,
                rid,
                fname,
            )
        ]
    return []


def _prepend_tags(record: Record, tag: str, count: int) -> tuple[Record, bool]:
    for t, turn in enumerate(record.conversations):
        if turn.role == "human":
            turns = list(record.conversations)
            turns[t] = Turn(turn.role, f"{tag}\n" * count + turn.value)
            return record.with_conversations(tuple(turns)), True
    return record, False


@dataclass
class Validator:
    """Every rule, with one set of options; stateful only for ``duplicate_id`` (per split)."""

    roots: MediaRoots = field(default_factory=MediaRoots)
    deep: bool = False
    strict: bool = False
    task: str = "sft"
    check_media: bool = True
    check_readable: bool = True
    check_files: bool = True  # False: resolve paths without asking the file system (the builder opens them)
    #: LLaMA-Factory dataset_info.json entries by file (:func:`~llava_hf.records.dataset_info.by_file`)
    entries: dict[str, DatasetEntry] | None = None
    seen_ids: set[str] = field(default_factory=set)
    #: each media path resolved and each file judged once (with ``check_files``)
    _media: MediaChecks | None = field(default=None, init=False, repr=False, compare=False)

    def media_checks(self) -> MediaChecks:
        """The cache of media verdicts of this validator (made on first use, for its roots)."""
        media = self._media
        if media is None or media.roots is not self.roots or media.deep != self.deep:
            media = self._media = MediaChecks(self.roots, deep=self.deep)
        return media

    def check(
        self, record: Record | None, problems: Iterable[Problem] = (), *, duplicate: bool | None = None
    ) -> CheckedRecord:
        """Structural problems from the reader plus every rule except media readability.

        ``duplicate`` says whether the record reuses an earlier id, when the caller knows it (the
        builder finds duplicates once per split, across shards and processes); by default the
        validator remembers the ids it has seen.
        """
        found = list(problems)
        if record is None:
            first = found[0] if found else None
            if duplicate is None and first is not None and first.code in _CLAIMING and first.id is not None:
                # a record that does not normalize still uses its id, as build's planning counts it
                # (builder._FileScan): a later record with that id is the duplicate in both
                self.seen_ids.add(first.id)
            return CheckedRecord(
                None, tuple(found), file=first.file if first else "", index=first.index if first else None
            )
        record, conv = check_conversation(record, strict=self.strict, task=self.task)
        found.extend(conv)
        if duplicate is None:
            duplicate = record.id in self.seen_ids
            self.seen_ids.add(record.id)
        if duplicate:
            found.append(duplicate_problem(record.file, record.index, record.id))
        paths: dict[MediaKind, list[str]] = {"image": [], "video": [], "audio": [], "frame": []}
        if self.check_media:
            media = self.media_checks() if self.check_files else None
            for kind, fname, path in _media_refs(record):
                if media is not None:
                    full, problem = media.resolve(
                        path, kind, file=record.file, index=record.index, id=record.id, field=fname
                    )
                else:
                    full, problem = resolve_media(
                        path,
                        kind,
                        self.roots,
                        file=record.file,
                        index=record.index,
                        id=record.id,
                        field=fname,
                        check_file=False,
                    )
                if problem:
                    found.append(problem)
                elif full is not None:
                    paths[kind].append(full)
        return CheckedRecord(
            record,
            tuple(found),
            tuple(paths["image"]),
            tuple(paths["video"]),
            file=record.file,
            index=record.index,
            audio_paths=tuple(paths["audio"]),
            frame_paths=tuple(paths["frame"]),
        )

    def check_readability(self, checked: CheckedRecord) -> CheckedRecord:
        """Add ``unreadable_media`` problems (each distinct file judged once: :mod:`llava_hf.media.checks`)."""
        record = checked.record
        if record is None or not self.check_readable or not checked.ok:
            return checked
        if not record.images and not record.videos and not record.audios:
            return checked
        media = self.media_checks()
        extra: list[Problem] = []
        fulls = {
            "image": iter(checked.image_paths),
            "video": iter(checked.video_paths),
            "audio": iter(checked.audio_paths),
            "frame": iter(checked.frame_paths),
        }
        for kind, fname, path in _media_refs(record):
            full = next(fulls[kind], None)
            if full is None:
                continue
            reason = media.reason(kind, record.file, path, full)
            if reason:
                extra.append(unreadable_problem(record, kind, 0, path, reason, field=fname))
        return replace(checked, problems=checked.problems + tuple(extra)) if extra else checked

    def iter_checked(
        self,
        files: Iterable[str],
        *,
        threads: int | None = None,
        window: int = 256,
        meter: ReadMeter | None = None,
    ) -> Iterator[CheckedRecord]:
        """Check every record of every file, in order, in this thread (``threads`` > 1: readability
        checks in a thread pool, at most ``window`` records in flight).

        Each distinct media file is judged once (:mod:`llava_hf.media.checks`): with the checks that cheap,
        threads only add switching (the GIL). ``meter`` follows how far the files have been read (a
        progress bar's position). ``llava-hf validate`` splits big files over processes instead
        (:mod:`llava_hf.validate_parallel`).
        """
        threads = threads or 1

        files = [str(f) for f in files]
        stems = id_stems(files)

        def checked() -> Iterator[CheckedRecord]:
            for file in files:
                source = Path(file).name  # normalize's default, computed once per file
                entry = entry_for(self.entries, file)
                for record, problems in iter_records(
                    file, source=source, stem=stems[file], meter=meter, entry=entry
                ):
                    yield self.check(record, problems)

        for _, result in ordered_map(self.check_readability, checked(), workers=threads, window=window):
            yield result


def _media_refs(record: Record) -> Iterator[tuple[MediaKind, str, str]]:
    """``(kind, field, path)`` of every media file of a record: ``images[i]``, ``videos[i]`` (a video
    file), ``videos[i][j]`` (a frame of a video given as its frames: kind ``frame``), ``audios[i]``."""
    for i, path in enumerate(record.images):
        yield "image", f"images[{i}]", path
    for fname, path, is_frame in iter_videos(record.videos):
        yield ("frame" if is_frame else "video"), fname, path
    for i, path in enumerate(record.audios):
        yield "audio", f"audios[{i}]", path


def duplicate_problem(file: str, index: int, id: str) -> Problem:
    """The ``duplicate_id`` problem of a record that reuses an earlier record's id."""
    return Problem(
        "duplicate_id",
        f"{locate(file, index, id, 'id')}: id {id!r} is already used by an "
        f"earlier record of this split; ids must be unique",
        file,
        index,
        id,
        "id",
    )


def unreadable_problem(
    record: Record, kind: MediaKind, i: int, path: str, reason: str, *, field: str | None = None
) -> Problem:
    """The ``unreadable_media`` problem of the i-th image, video or audio file of a record (``field``:
    where it stands, when not ``<kind>s[i]``: ``videos[i][j]`` for a frame)."""
    fname = field or f"{kind}s[{i}]"
    what = "an image" if kind in ("image", "frame") else "a video" if kind == "video" else "audio"
    return Problem(
        "unreadable_media",
        f"{locate(record.file, record.index, record.id, fname)}: {kind} {path!r} does not open as {what}: "
        f"{reason}; replace or remove the file",
        record.file,
        record.index,
        record.id,
        fname,
    )


def apply_policy(checked: CheckedRecord, on_error: OnError, counter: ProblemCounter) -> Record | None:
    """Count the record's problems; return the record to keep, None to drop it (``skip``), or raise."""
    for problem in checked.problems:
        counter.add(problem)
    error = checked.first_error
    if error is None and checked.record is not None:
        counter.kept += 1
        return checked.record
    assert error is not None
    if on_error == "raise":
        raise RecordError(error)
    counter.reject(error)
    return None
