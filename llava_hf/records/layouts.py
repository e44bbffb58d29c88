"""The peer trainers' record layouts, mapped to LLaVA's and back: pure functions, no I/O.

Recognized per record (:func:`detect`):

=============  ============================================================================================
``llava``      ``conversations`` (``from``/``value``) + ``image``/``video``/``audio`` (LLaVA, LLaVA-NeXT,
               Qwen-VL)
``sharegpt``   ``conversations`` + ``images``/``videos``/``audios`` lists (LLaMA-Factory's sharegpt)
``messages``   ``messages`` (``role``/``content``) + ``images``/``videos``/``audios`` (LLaMA-Factory's
               openai formatting, ms-swift's messages)
``lf_v1``      ``messages`` whose content is a list of ``{"type": "text"|"image_url"|"video_url"|
               "audio_url", "value": ...}`` parts, the media paths inside the parts (LLaMA-Factory v1)
``swift``      ``query``/``response``/``history``/``system`` + ``images``/``videos``/``audios`` (ms-swift)
=============  ============================================================================================

:func:`canonical` turns a peer record into one that the LLaVA/``messages`` reader takes; the record's
shape (its layout, whether each media key held a string or a list, whether it had an id, and any turn
or key that the layout's writer would not give back exactly) is kept in ``extra[LAYOUT_KEY]``, so that
:func:`render` writes the record back in the layout it came in, the same JSON value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "ASSISTANT_SIDE",
    "EXPORT_LAYOUTS",
    "LAYOUTS",
    "LAYOUT_KEY",
    "USER_SIDE",
    "LayoutError",
    "canonical",
    "detect",
    "render",
    "shape_of",
]

#: llava-hf's own metadata key: the record's source layout and shape (see :func:`shape_of`)
LAYOUT_KEY = "_llava_hf_layout"

LAYOUTS = ("llava", "sharegpt", "messages", "lf_v1", "swift")
#: The layouts ``llava-hf export --layout`` writes (the default is the one each record came in)
EXPORT_LAYOUTS = ("llava", "sharegpt", "messages", "swift")

#: Speakers on the user's side and on the assistant's side (tool turns included)
USER_SIDE = frozenset(("human", "observation", "tool_response", "tool"))
ASSISTANT_SIDE = frozenset(("gpt", "function_call", "tool_call"))

#: LLaVA speaker -> the role a messages layout writes (others are written as they are)
_MESSAGE_ROLE = {"human": "user", "gpt": "assistant", "system": "system"}
_PART_TYPES = {
    "image_url": "<image>",
    "image": "<image>",
    "video_url": "<video>",
    "video": "<video>",
    "audio_url": "<audio>",
    "audio": "<audio>",
}
#: tag -> (the column of its media, the v1 part type written back)
_TAG_MEDIA = {
    "<image>": ("images", "image_url"),
    "<video>": ("videos", "video_url"),
    "<audio>": ("audios", "audio_url"),
}
_TAG_RE = re.compile("(<image>|<video>|<audio>)")
#: every media key -> its column; (singular, plural) key pairs
_MEDIA_KEYS = {
    "image": "images",
    "images": "images",
    "video": "videos",
    "videos": "videos",
    "audio": "audios",
    "audios": "audios",
}
_KEY_PAIRS = (("image", "images"), ("video", "videos"), ("audio", "audios"))


class LayoutError(ValueError):
    """A record that the asked-for layout cannot hold (e.g. tool turns in ms-swift's query/response)."""


def detect(raw: dict[str, Any]) -> str:
    """The layout of one raw record (an object), judged by its keys."""
    if "conversations" in raw:
        return "sharegpt" if ("images" in raw or "videos" in raw or "audios" in raw) else "llava"
    if "messages" in raw:
        turns = raw["messages"]
        if isinstance(turns, list):
            for turn in turns:
                content = turn.get("content") if isinstance(turn, dict) else None
                if isinstance(content, list) and any(isinstance(p, dict) and "value" in p for p in content):
                    return "lf_v1"
        return "messages"
    if "query" in raw or "response" in raw:
        return "swift"
    return "llava"


def canonical(raw: dict[str, Any], layout: str) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """``raw`` in a shape the LLaVA/``messages`` reader takes, or ``(raw, (field, why))`` if it cannot be.

    Never mutates ``raw``.
    """
    if layout == "lf_v1":
        return _from_v1(raw)
    if layout == "swift":
        return _from_swift(raw)
    return raw, None


def _from_v1(raw: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, str] | None]:
    media: dict[str, list[str]] = {"images": [], "videos": [], "audios": []}
    messages: list[Any] = []
    for t, turn in enumerate(raw["messages"]):
        content = turn.get("content") if isinstance(turn, dict) else None
        if not isinstance(content, list):
            messages.append(turn)
            continue
        pieces: list[str] = []
        for p, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            value = part.get("value") if isinstance(part, dict) else None
            if not isinstance(value, str) or (kind != "text" and kind not in _PART_TYPES):
                return raw, (
                    f"messages[{t}].content[{p}]",
                    'expected {"type": "text"|"image_url"|"video_url"|"audio_url", "value": "<text or path>"}',
                )
            if kind == "text":
                pieces.append(value)
            else:
                tag = _PART_TYPES[kind]
                media[_TAG_MEDIA[tag][0]].append(value)
                pieces.append(tag)
        messages.append({**turn, "content": "".join(pieces)})
    for key, column in _MEDIA_KEYS.items():
        if raw.get(key) is not None and media[column]:
            return raw, (key, "the media are given both in the messages' parts and in this key; keep one")
    out = {k: v for k, v in raw.items() if k != "messages"}
    out["messages"] = messages
    for key, paths in media.items():
        if paths:
            out[key] = paths
    return out, None


def _from_swift(raw: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, str] | None]:
    messages: list[dict[str, Any]] = []
    system = raw.get("system")
    if system is not None:
        if not isinstance(system, str):
            return raw, ("system", "expected a string (the system prompt)")
        messages.append({"role": "system", "content": system})
    history = raw.get("history")
    if history is not None:
        if not isinstance(history, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            for pair in history
        ):
            return raw, ("history", 'expected a list of ["query", "response"] pairs of strings')
        for query, response in history:
            messages += [{"role": "user", "content": query}, {"role": "assistant", "content": response}]
    for key, role in (("query", "user"), ("response", "assistant")):
        text = raw.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            return raw, (key, "expected a string")
        messages.append({"role": role, "content": text})
    out = {k: v for k, v in raw.items() if k not in ("system", "history", "query", "response")}
    out["messages"] = messages
    return out, None


def shape_of(raw: dict[str, Any], layout: str) -> dict[str, Any] | None:
    """What :func:`render` needs to give ``raw`` back in its own layout (None: LLaVA's defaults do).

    Only what differs from the layout's default is recorded: a media key of the other number (``image``
    in a peer layout, ``images`` in LLaVA's), a one-item list where LLaVA writes a string, a string
    where the peers write a list, and a missing id (the generated one is not exported).
    """
    plural = layout != "llava"
    media: dict[str, str] = {}
    for key, column in _MEDIA_KEYS.items():
        value = raw.get(key)
        if value is None:
            continue
        if (key == column) != plural:
            media[key] = "str" if isinstance(value, str) else "list"
        elif plural and isinstance(value, str):
            media[key] = "str"
        elif not plural and isinstance(value, list) and len(value) == 1:
            media[key] = "list"
    if not plural and not media and "id" in raw:
        return None  # LLaVA's own shape: what export writes by default
    shape: dict[str, Any] = {"layout": layout}
    if media:
        shape["media"] = media
    if "id" not in raw:  # the id is llava-hf's: export leaves it out again
        shape["id"] = False
    return shape


def fix_shape(
    raw: dict[str, Any],
    shape: dict[str, Any],
    rid: str,
    paths: Mapping[str, Sequence[Any]],
    turns: Sequence[tuple[str, str]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``shape`` with what :func:`render` would not give back as in ``raw``: turns and keys kept as they were."""
    try:
        rebuilt = render(rid, paths, turns, extra, shape)
    except LayoutError:
        return {**shape, "raw": {k: v for k, v in raw.items() if k not in extra}}  # written as it was
    if rebuilt == raw:
        return shape
    fixes: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key in set(raw) | set(rebuilt):
        mine, theirs = rebuilt.get(key), raw.get(key)
        if mine == theirs and (key in raw) == (key in rebuilt):
            continue
        if key in ("messages", "conversations") and isinstance(mine, list) and isinstance(theirs, list):
            if len(mine) == len(theirs):
                fixes.update({str(i): b for i, (a, b) in enumerate(zip(mine, theirs)) if a != b})
                continue
        if key in raw:
            kept[key] = theirs
        else:
            dropped.append(key)
    out = dict(shape)
    if fixes:
        out["turns"] = fixes
    if kept:
        out["raw"] = kept
    if dropped:
        out["drop"] = sorted(dropped)
    return out


def _media_value(paths: list[Any], kind: str | None, default: str) -> Any:
    """The paths of one media key; one path as a string where the layout writes one (a video given as
    its frames is a list of frame paths, never collapsed)."""
    if (kind or default) == "str" and len(paths) == 1 and isinstance(paths[0], str):
        return paths[0]
    return paths


def _parts(text: str, media: Mapping[str, Iterator[str]]) -> list[dict[str, str]]:
    parts: list[dict[str, str]] = []
    for piece in _TAG_RE.split(text):
        if piece in _TAG_MEDIA:
            column, kind = _TAG_MEDIA[piece]
            path = next(media[column], None)
            if path is None:  # more tags than media: the tag stays text
                parts.append({"type": "text", "value": piece})
            else:
                parts.append({"type": kind, "value": path})
        elif piece:
            parts.append({"type": "text", "value": piece})
    return parts


def render(
    rid: str,
    paths: Mapping[str, Sequence[Any]],
    turns: Sequence[tuple[str, str]],
    extra: dict[str, Any],
    shape: dict[str, Any] | None,
    layout: str | None = None,
) -> dict[str, Any]:
    """The record in ``layout`` (default: the one ``shape`` records, else ``llava``); ``paths`` holds
    the media paths by column (``images``, ``videos``, ``audios``; a video given as its frames is the
    list of its frame paths).

    Raises:
        LayoutError: ``layout`` cannot hold these turns (only ``swift`` can refuse).
    """
    shape = shape or {}
    source = shape.get("layout", "llava")
    layout = layout or source
    same = layout == source
    out: dict[str, Any] = {}
    if shape.get("id", True):
        out["id"] = rid
    media = shape.get("media", {}) if same else {}
    single = "str" if layout == "llava" else "list"
    for kinds in _KEY_PAIRS:
        items = list(paths.get(kinds[1]) or ())
        if not items or layout == "lf_v1":
            continue
        key = next((k for k in kinds if k in media), kinds[0] if layout == "llava" else kinds[1])
        out[key] = _media_value(items, media.get(key), single)
    if layout in ("llava", "sharegpt"):
        out["conversations"] = [{"from": role, "value": value} for role, value in turns]
    elif layout == "messages":
        out["messages"] = [{"role": _MESSAGE_ROLE.get(role, role), "content": value} for role, value in turns]
    elif layout == "lf_v1":
        remaining = {column: iter(paths.get(column) or ()) for column, _ in _TAG_MEDIA.values()}
        out["messages"] = [
            {"role": _MESSAGE_ROLE.get(role, role), "content": _parts(value, remaining)}
            for role, value in turns
        ]
    elif layout == "swift":
        out.update(_to_swift(rid, turns))
    else:
        raise LayoutError(f"unknown layout {layout!r}: use one of {', '.join(EXPORT_LAYOUTS)}")
    out.update(extra)
    if same:
        conv = out.get("messages", out.get("conversations"))
        for i, turn in shape.get("turns", {}).items():
            if isinstance(conv, list) and int(i) < len(conv):
                conv[int(i)] = turn
        out.update(shape.get("raw", {}))
        for key in shape.get("drop", ()):
            out.pop(key, None)
    return out


def _to_swift(rid: str, turns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rest = list(turns)
    if rest and rest[0][0] == "system":
        out["system"] = rest.pop(0)[1]
    roles = [role for role, _ in rest]
    pairs = len(rest) // 2
    if any(r != "human" for r in roles[0::2]) or any(r != "gpt" for r in roles[1::2]):
        raise LayoutError(
            f"record {rid!r}: ms-swift's query/response/history holds alternating human/gpt turns only "
            f"(after an optional system turn), not {roles}"
        )
    if len(rest) % 2:  # ends with the question: no response
        out["query"] = rest[-1][1]
        history = rest[:-1]
    else:
        if not rest:
            raise LayoutError(f"record {rid!r}: no turns to write as query/response")
        out["query"], out["response"] = rest[-2][1], rest[-1][1]
        history = rest[:-2]
        pairs -= 1
    if history:
        out["history"] = [[history[2 * i][1], history[2 * i + 1][1]] for i in range(pairs)]
    return out
