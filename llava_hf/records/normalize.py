"""Normalization: a JSON item → :class:`Record`, the one record model, with its problems.

``image(s)``/``video(s)``/``audio(s)`` as a string, a list or absent; ``id`` a string, an integer or absent (then
``<file stem>-<index>``, see :func:`id_stems`); ``conversations`` (``from``/``value``) or the
``messages`` layout (``role``/``content``), detected per record; every other key kept in
:attr:`Record.extra`, losslessly; each sample of a pack read as its own record, with
``extra["_llava_hf_pack"] = [item index, position]`` so export can pack them again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

from ..jsontext import (
    at_full_depth,
)
from ..problems import Problem, locate
from . import layouts
from .dataset_info import DatasetEntry
from .dataset_info_export import ENTRY_KEY, entry_shape
from .layouts import LAYOUT_KEY
from .reader import PACK_KEY, RawItem, RawProblem, is_pack, iter_items

ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}


class Turn(NamedTuple):
    """One turn of a conversation: ``role`` is LLaVA's ``from`` (human, gpt or system)."""

    role: str
    value: str


#: ``_new_turn(Turn, (role, value))`` is ``Turn(role, value)`` without the Python-level ``__new__``
#: that NamedTuple generates (a turn is made for every turn of every record read)
_new_turn = tuple.__new__


@dataclass(frozen=True)
class Record:
    """One normalized LLaVA record. ``file``/``index`` say where it came from (0-based index)."""

    id: str
    conversations: tuple[Turn, ...]
    images: tuple[str, ...] = ()
    #: a video file's path, or a video given as its frames: the tuple of their image paths
    videos: tuple[str | tuple[str, ...], ...] = ()
    audios: tuple[str, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    index: int = 0
    layout: Literal["conversations", "messages"] = "conversations"

    def with_conversations(self, conversations: tuple[Turn, ...]) -> Record:
        return replace(self, conversations=conversations)

    def to_llava(self) -> dict[str, Any]:
        """The record in LLaVA's own format (``image``/``video``/``audio`` a string when one, a list when several)."""
        out: dict[str, Any] = {"id": self.id}
        for key, paths in (("image", self.images), ("video", self.videos), ("audio", self.audios)):
            if len(paths) == 1 and isinstance(paths[0], str):
                out[key] = paths[0]
            elif paths:
                out[key] = [p if isinstance(p, str) else list(p) for p in paths]
        out["conversations"] = [{"from": t.role, "value": t.value} for t in self.conversations]
        out.update({k: v for k, v in self.extra.items() if k not in (PACK_KEY, LAYOUT_KEY)})
        return out


# ------------------------------------------------------------------------------------- normalization


def _media_list(
    raw: dict[str, Any], single: str, plural: str, ctx: tuple[str, int, str | None]
) -> tuple[tuple[Any, ...], Problem | None]:
    file, index, rid = ctx
    present = [k for k in (single, plural) if raw.get(k) is not None]
    if len(present) == 2:
        return (), Problem(
            "invalid_media_field",
            f"{locate(file, index, rid, single)}: both {single!r} and {plural!r} are given; keep one "
            f"(a string or a list of strings)",
            file,
            index,
            rid,
            single,
        )
    if not present:
        return (), None
    key = present[0]
    value = raw[key]
    items = [value] if isinstance(value, str) else value
    frames = single == "video"  # a video may be given as the list of its frames' image paths
    if not isinstance(items, list) or not all(
        _is_path(p) or (frames and isinstance(p, list) and p and all(_is_path(f) for f in p)) for p in items
    ):
        if frames:
            what, example = "paths or of frame lists", '"x.mp4" or ["a.mp4", ["f1.jpg", "f2.jpg"]]'
        else:
            what, example = "paths", '"folder/x.jpg" or ["a.jpg", "b.jpg"]'
        return (), Problem(
            "invalid_media_field",
            f"{locate(file, index, rid, key)}: expected a path or a list of {what}, got {_short(value)}; "
            f'write e.g. "{key}": {example}',
            file,
            index,
            rid,
            key,
        )
    return tuple(p if isinstance(p, str) else tuple(p) for p in items), None


def video_values(videos: Iterable[str | Sequence[str]]) -> list[str | list[str]]:
    """A record's videos as JSON gives them: a file's path, or a frame video's list of frame paths."""
    return [v if isinstance(v, str) else list(v) for v in videos]


def iter_videos(videos: Iterable[str | Sequence[str]]) -> Iterator[tuple[str, str, bool]]:
    """``(field, path, is_frame)`` for every file of a record's videos, in order: ``videos[i]`` for a
    video file, ``videos[i][j]`` for each frame of a video given as its frames."""
    for i, video in enumerate(videos):
        if isinstance(video, str):
            yield f"videos[{i}]", video, False
        else:
            for j, frame in enumerate(video):
                yield f"videos[{i}][{j}]", frame, True


def _is_path(p: Any) -> bool:
    return isinstance(p, str) and bool(p.strip()) and "\x00" not in p


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = at_full_depth(functools.partial(json.dumps, ensure_ascii=False, default=str), value)
    except RecursionError:  # not even there: what it is, not what it holds
        return f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _content_text(content: Any) -> str | None:
    """A messages-layout ``content``: a string, or a list of typed parts joined into LLaVA text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                return None
            kind = part["type"]
            if kind == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif kind in ("image", "image_url"):
                pieces.append("<image>")
            elif kind == "video":
                pieces.append("<video>")
            elif kind == "audio":
                pieces.append("<audio>")
            else:
                return None
        return "".join(pieces)
    return None


def _turns(
    raw: dict[str, Any], ctx: tuple[str, int, str | None]
) -> tuple[tuple[Turn, ...], str, Literal["conversations", "messages"], Problem | None]:
    file, index, rid = ctx
    layout: Literal["conversations", "messages"]
    if "conversations" in raw or "messages" not in raw:
        key, layout, role_key, text_key = "conversations", "conversations", "from", "value"
    else:
        key, layout, role_key, text_key = "messages", "messages", "role", "content"
    turns = raw.get(key)
    if not isinstance(turns, list) or not turns:
        got = "missing" if key not in raw else ("empty" if turns == [] else f"not a list ({_short(turns)})")
        return (
            (),
            key,
            layout,
            Problem(
                "invalid_conversations",
                f"{locate(file, index, rid, key)}: {got}; expected a non-empty list of "
                f'{{"{role_key}": ..., "{text_key}": ...}} turns',
                file,
                index,
                rid,
                key,
            ),
        )
    out: list[Turn] = []
    plain = layout == "conversations"
    for t, turn in enumerate(turns):
        if plain and type(turn) is dict:  # the common shape first: {"from": str, "value": str}
            role, text = turn.get("from"), turn.get("value")
            if type(role) is str and type(text) is str:
                out.append(_new_turn(Turn, (ROLE_ALIASES.get(role, role), text)))  # Turn(role, text)
                continue
        role = turn.get(role_key) if isinstance(turn, dict) else None
        if isinstance(turn, dict) and role is None and layout == "conversations":
            role = turn.get("role")  # conversations written with role/content keys
        text = None
        if isinstance(turn, dict):
            text = turn.get(text_key)
            if text is None and layout == "conversations":
                text = turn.get("content")
            text = _content_text(text) if layout == "messages" or not isinstance(text, str) else text
        if not isinstance(role, str) or not isinstance(text, str):
            return (
                (),
                key,
                layout,
                Problem(
                    "invalid_turn",
                    f"{locate(file, index, rid, f'{key}[{t}]')}: expected an object with a string "
                    f"{role_key!r} and a string {text_key!r}, got {_short(turn)}",
                    file,
                    index,
                    rid,
                    f"{key}[{t}]",
                ),
            )
        out.append(Turn(ROLE_ALIASES.get(role, role), text))
    return tuple(out), key, layout, None


_JSON_SUFFIXES = (".gz", ".jsonl", ".json")


def file_stem(path: str, *, keep_dots: bool = False) -> str:
    """A file's name without its extensions (``data/train.json.gz`` -> ``train``), the one rule by which
    llava-hf names something after an input file; a backslash separates folders too.

    By default the name ends at its first dot (``v1.5.json`` -> ``v1``): the stem of the ids generated
    for records without one (:func:`id_stems`). ``keep_dots`` strips only the extensions ``.gz``,
    ``.jsonl`` and ``.json`` (any case) and keeps the other dots (``v1.5.json`` -> ``v1.5``), giving
    the whole path for a name that is nothing else: a mixture source's default name. Both results are
    kept as they were, since generated ids and the names that seed a mixture's sampler must not change.
    """
    name = PurePosixPath(path.replace("\\", "/")).name
    if not keep_dots:
        return name.split(".")[0]
    for suffix in _JSON_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path


def id_stems(files: Iterable[str]) -> dict[str, str]:
    """The stem of the ids generated for each file's id-less records (``<stem>-<index>``).

    A file's name without its extensions (``train.json.gz`` -> ``train``); when files of one split
    share that name (``a/train.json``, ``b/train.json``), the shortest trailing paths that tell them
    apart (``a/train``, ``b/train``), so that generated ids never collide.
    """
    files = list(dict.fromkeys(str(f) for f in files))
    return dict(zip(files, distinct_names(files, file_stem)))


def distinct_names(paths: Sequence[str], stem: Callable[[str], str]) -> list[str]:
    """``stem(path)`` for each path, or, where stems collide, the shortest trailing path that tells
    them apart (``a/train``, ``b/train``). The same path listed twice keeps its stem."""
    parts = [
        [*(q for q in PurePosixPath(p.replace("\\", "/")).parts[:-1] if q != "/"), stem(p)] for p in paths
    ]
    names = [p[-1] for p in parts]
    for name in set(names):
        group = [i for i, n in enumerate(names) if n == name]
        if len(group) < 2:
            continue
        longest = max(len(parts[i]) for i in group)
        for depth in range(2, longest + 1):
            candidates = ["/".join(parts[i][-depth:]) for i in group]
            if len(set(candidates)) == len(group):
                for i, candidate in zip(group, candidates):
                    names[i] = candidate
                break
    return names


def record_id(
    value: dict[str, Any], *, file: str, index: int, position: int | None = None, stem: str | None = None
) -> str | None:
    """The record's id as a string: its own (integers as decimal strings) or ``<stem>-<index>``.

    None when the id is neither a string nor an integer. ``position`` is the sample's place in a pack;
    ``stem`` defaults to the file's name without extensions (see :func:`id_stems`).
    """
    raw_id = value.get("id")
    if raw_id is None:
        generated = f"{stem if stem is not None else file_stem(file)}-{index}"
        return generated if position is None else f"{generated}-{position}"
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return None
    return str(raw_id)


def normalize(
    value: Any,
    *,
    file: str,
    index: int,
    source: str | None = None,
    stem: str | None = None,
    position: int | None = None,
    source_layout: str | None = None,
) -> tuple[Record | None, list[Problem]]:
    """Normalize one raw item into a :class:`Record`, or return the structural problems that prevent it.

    Structural problems: ``invalid_record``, ``invalid_conversations``, ``invalid_turn``,
    ``invalid_media_field``. Content rules (roles, order, placeholders, media) are in
    :mod:`llava_hf.validate`. Never mutates ``value``. ``position``: the sample's place in a pack
    (an id-less sample's generated id ends with it). ``source_layout``: the record's layout when the
    caller knows it (a dataset_info.json entry's records are ``sharegpt``), else judged by its keys.
    """
    if not isinstance(value, dict):
        return None, [
            Problem(
                "invalid_record",
                f"{locate(file, index, None)}: expected a JSON object, got {_short(value)}",
                file,
                index,
                None,
                None,
            )
        ]
    rid = record_id(value, file=file, index=index, position=position, stem=stem)
    if rid is None:
        return None, [
            Problem(
                "invalid_record",
                f"{locate(file, index, None, 'id')}: an id must be a string or an integer, got {_short(value['id'])}",
                file,
                index,
                None,
                "id",
            )
        ]
    for own, what in ((PACK_KEY, "the samples of a pack"), (LAYOUT_KEY, "the layout a record came in")):
        if own in value:  # a key of the record's own would be taken for (or replaced by) the marker
            return None, [
                Problem(
                    "invalid_record",
                    f"{locate(file, index, rid, own)}: the key {own!r} is llava-hf's own (it marks "
                    f"{what}); rename it",
                    file,
                    index,
                    rid,
                    own,
                )
            ]
    ctx = (file, index, rid)
    raw = value
    source_layout = source_layout or layouts.detect(value)
    if source_layout in ("lf_v1", "swift"):
        value, failed = layouts.canonical(value, source_layout)
        if failed is not None:
            fname, why = failed
            code = "invalid_turn" if fname.startswith("messages[") else "invalid_conversations"
            return None, [Problem(code, f"{locate(file, index, rid, fname)}: {why}", file, index, rid, fname)]
    problems: list[Problem] = []
    turns, conv_key, layout, p = _turns(value, ctx)
    if p:
        problems.append(p)
    images, p = _media_list(value, "image", "images", ctx)
    if p:
        problems.append(p)
    videos, p = _media_list(value, "video", "videos", ctx)
    if p:
        problems.append(p)
    audios, p = _media_list(value, "audio", "audios", ctx)
    if p:
        problems.append(p)
    if problems:
        return None, problems
    known = {"id", conv_key, "image", "images", "video", "videos", "audio", "audios"}
    extra = {k: v for k, v in value.items() if k not in known}
    shape = layouts.shape_of(raw, source_layout)
    if shape is not None:
        if shape["layout"] != "llava":  # anything the layout's writer would not give back, kept as it was
            shape = layouts.fix_shape(
                raw,
                shape,
                rid,
                {"images": images, "videos": video_values(videos), "audios": audios},
                turns,
                extra,
            )
        extra[LAYOUT_KEY] = shape
    record = Record(
        id=rid,
        conversations=turns,
        images=images,
        videos=videos,
        audios=audios,
        source=source if source is not None else Path(file).name,
        extra=extra,
        file=file,
        index=index,
        layout=layout,
    )
    return record, []


def iter_records(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    stem: str | None = None,
    entry: DatasetEntry | None = None,
    **kwargs: Any,
) -> Iterator[tuple[Record | None, list[Problem]]]:
    """Read and normalize every record of a file: ``(record or None, structural problems)`` per item.

    ``stem`` names the ids generated for records without one (see :func:`id_stems`).

    A file-level problem is one ``(None, [invalid_json problem with index None])`` at the end.
    Packed items (a list of samples) give one record per sample, with the pack in ``extra``.
    """
    return records_from_items(iter_items(path, **kwargs), source=source, stem=stem, entry=entry)


def records_from_items(
    items: Iterable[RawItem],
    *,
    source: str | None = None,
    stem: str | None = None,
    entry: DatasetEntry | None = None,
) -> Iterator[tuple[Record | None, list[Problem]]]:
    """:func:`iter_records` over items already read by :func:`iter_items` (parsed once, used twice).

    ``entry``: a LLaMA-Factory ``dataset_info.json`` entry whose columns and tags map each record."""
    forced = None if entry is None else "sharegpt"
    for item in items:
        if item.error is not None:
            if isinstance(item, RawProblem):
                problem = Problem(item.code, item.error, item.file, item.index, item.id, item.field)
            else:
                problem = Problem("invalid_json", item.error, item.file, item.index)
            yield None, [problem]
            continue
        raw = item.value
        if entry is not None:
            item = replace(item, value=entry.apply(raw))
        assert item.index is not None
        if is_pack(item.value):
            for position, sample in enumerate(item.value):
                record, problems = normalize(
                    sample,
                    file=item.file,
                    index=item.index,
                    source=source,
                    stem=stem,
                    position=position,
                    source_layout=forced,
                )
                if record is not None:
                    record = replace(record, extra={**record.extra, PACK_KEY: [item.index, position]})
                yield record, problems
            continue
        record, problems = normalize(
            item.value, file=item.file, index=item.index, source=source, stem=stem, source_layout=forced
        )
        if record is not None and entry is not None:
            stored = entry_shape(raw, item.value, entry)
            if stored is not None:  # the entry's own shape, given back by export
                shape = record.extra.get(LAYOUT_KEY) or {"layout": "sharegpt"}
                record = replace(record, extra={**record.extra, LAYOUT_KEY: {**shape, ENTRY_KEY: stored}})
        yield record, problems
