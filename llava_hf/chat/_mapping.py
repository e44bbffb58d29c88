"""LLaVA ``conversations`` <-> chat ``messages`` with typed content parts: pure, exact, both ways.

A turn ``{"from": "human", "value": "<image>\\nWhat is it?"}`` becomes
``{"role": "user", "content": [{"type": "image", "text": "<image>\\n"}, {"type": "text", "text": "What is it?"}]}``.

The newline that joins a tag to its text (``<image>\\nText``, ``Text\\n<image>``) belongs to the tag.
A media part records the exact source span it replaced in its ``text`` key (``"<image>\\n"``,
``"\\n<image>"``, ``"\\n<image>\\n"``) and has no ``text`` key when the span is the bare tag. This keeps
the part layout ``{type, text}`` that TRL, transformers' chat templates and the stored ``messages``
schema use (templates dispatch on ``type``; image parts loaded from Arrow already carry ``text``),
and it makes :func:`from_messages` an exact inverse of :func:`to_messages`.

Both functions also take a batch (a dict of columns, as ``Dataset.map(batched=True)`` and
``with_transform`` pass) and return a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ..errors import ChatTemplateError, UsageError

__all__ = [
    "DEFAULT_ROLES",
    "MEDIA_TAGS",
    "TOOL_ROLES",
    "MessagesFormat",
    "from_messages",
    "is_batch",
    "media_of",
    "to_messages",
    "video_part_extras",
]

MessagesFormat = Literal["trl", "processor"]

#: LLaVA speaker -> chat role. Override with ``roles=`` (it must stay one-to-one to be reversible).
DEFAULT_ROLES: Mapping[str, str] = {"human": "user", "gpt": "assistant", "system": "system"}

#: Tool turns (LLaMA-Factory's function_call/observation, ms-swift's tool_call/tool_response/tool) ->
#: the role transformers' chat templates read; an assistant's call also gets ``tool_calls``
TOOL_ROLES: Mapping[str, str] = {
    "function_call": "assistant",
    "tool_call": "assistant",
    "observation": "tool",
    "tool_response": "tool",
    "tool": "tool",
}

#: Placeholder tag -> part type, and the top-level column holding the media it refers to.
MEDIA_TAGS: Mapping[str, str] = {"<image>": "image", "<video>": "video", "<audio>": "audio"}
_MEDIA_COLUMN = {"image": "images", "video": "videos", "audio": "audios"}
_TAG_OF = {kind: tag for tag, kind in MEDIA_TAGS.items()}
_TAG_RE = re.compile("(" + "|".join(re.escape(t) for t in MEDIA_TAGS) + ")")
_CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})
_FORMATS = ("trl", "processor")

Row = dict[str, Any]


def is_batch(example: Mapping[str, Any], column: str) -> bool:
    """Whether ``example`` is a batch (a dict of columns) rather than one row, judged by ``column``."""
    value = example.get(column)
    return isinstance(value, list) and bool(value) and isinstance(value[0], list)


def _record_id(example: Mapping[str, Any]) -> str | None:
    rid = example.get("id")
    return None if rid is None else str(rid)


def _where(rid: str | None) -> str:
    return f"record {rid!r}" if rid is not None else "record (no id)"


def _check_format(format: str) -> None:
    if format not in _FORMATS:
        raise UsageError(f"unknown messages format {format!r}: use 'trl' (messages + images) or 'processor'")


def _role_map(roles: Mapping[str, str] | None) -> Mapping[str, str]:
    return DEFAULT_ROLES if roles is None else roles


def _reverse_roles(roles: Mapping[str, str] | None) -> dict[str, str]:
    forward = _role_map(roles)
    reverse: dict[str, str] = {}
    for speaker, role in forward.items():
        if role in reverse:
            raise UsageError(
                f"the role map sends both {reverse[role]!r} and {speaker!r} to {role!r}, so messages cannot "
                "be mapped back to conversations",
                hint="pass a one-to-one roles= map, e.g. {'human': 'user', 'gpt': 'assistant', 'system': 'system'}",
            )
        reverse[role] = speaker
    return reverse


def _map_batch(batch: Mapping[str, Any], column: str, fn: Callable[[Row], Row]) -> dict[str, list[Any]]:
    """Apply a row function to every row of a batch, and return the batch of results."""
    n = len(batch[column])
    for key, values in batch.items():
        if not isinstance(values, list) or len(values) != n:
            raise UsageError(
                f"batch column {key!r} does not hold {n} values like {column!r}: pass one row or a batch "
                "dict of equally long lists"
            )
    rows = [fn({key: values[i] for key, values in batch.items()}) for i in range(n)]
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    missing = [k for k in keys if any(k not in row for row in rows)]
    if missing:  # pragma: no cover - every row of one batch has the same columns
        raise ChatTemplateError(f"rows of one batch produced different columns: {missing}")
    return {key: [row[key] for row in rows] for key in keys}


# -- conversations -> messages -------------------------------------------------------------------


def _split_value(value: str) -> list[dict[str, str]]:
    """Split one turn's text into parts; each tag takes the newline that joins it to its text."""
    pieces = _TAG_RE.split(value)
    texts, tags = pieces[0::2], pieces[1::2]
    literals: list[str] = []
    for i, tag in enumerate(tags):
        before = texts[i].endswith("\n")
        if before:
            texts[i] = texts[i][:-1]
        after = texts[i + 1].startswith("\n")
        if after:
            texts[i + 1] = texts[i + 1][1:]
        literals.append(("\n" if before else "") + tag + ("\n" if after else ""))
    parts: list[dict[str, str]] = []
    for i, text in enumerate(texts):
        if text:
            parts.append({"type": "text", "text": text})
        if i < len(tags):
            part = {"type": MEDIA_TAGS[tags[i]]}
            if literals[i] != tags[i]:
                part["text"] = literals[i]
            parts.append(part)
    return parts


def _to_messages_row(example: Row, roles: Mapping[str, str], format: str) -> Row:
    rid = _record_id(example)
    conversations = example.get("conversations")
    if not isinstance(conversations, list):
        raise ChatTemplateError(
            f"{_where(rid)}: no 'conversations' list to map (got {type(conversations).__name__})",
            id=rid,
            hint="to_messages takes a row of the llava-hf 'conversations' schema",
        )
    media: dict[str, list[Any]] = {}
    for kind, column in _MEDIA_COLUMN.items():
        values = example.get(column)
        media[kind] = [] if values is None else list(values)
    used = {kind: 0 for kind in _MEDIA_COLUMN}
    messages: list[Row] = []
    for turn_index, turn in enumerate(conversations):
        speaker = turn.get("from") if isinstance(turn, Mapping) else None
        value = turn.get("value") if isinstance(turn, Mapping) else None
        if isinstance(speaker, str) and speaker not in roles and speaker in TOOL_ROLES:
            messages.append(_tool_message(speaker, value if isinstance(value, str) else ""))
            continue
        if not isinstance(speaker, str) or speaker not in roles:
            raise ChatTemplateError(
                f"{_where(rid)}: turn {turn_index} has role {speaker!r}, which the role map does not know "
                f"(known: {sorted(roles)})",
                id=rid,
                hint="pass roles={...} mapping every speaker of the data to system/user/assistant",
            )
        if not isinstance(value, str):
            raise ChatTemplateError(
                f"{_where(rid)}: turn {turn_index} has a {type(value).__name__} 'value', expected a string",
                id=rid,
            )
        content = _split_value(value)
        for part in content:
            kind = part["type"]
            if kind in used:
                if format == "processor" and used[kind] < len(media[kind]):
                    part[kind] = media[kind][used[kind]]
                    if kind == "video":
                        part.update(video_part_extras(example, used[kind]))
                    elif kind == "audio":
                        part.update(_audio_part(part[kind]))
                used[kind] += 1
        messages.append({"role": roles[speaker], "content": content})
    for kind, column in _MEDIA_COLUMN.items():
        if used[kind] != len(media[kind]):
            tag = _TAG_OF[kind]
            raise ChatTemplateError(
                f"{_where(rid)}: {used[kind]} {tag} tag(s) in the conversation but {len(media[kind])} "
                f"{kind}(s) in {column!r}",
                id=rid,
                hint=f"every {kind} needs exactly one {tag} tag where it belongs in the text "
                "(llava-hf validate reports these records)",
            )
    out = {key: value for key, value in example.items() if key != "conversations"}
    out["messages"] = messages
    for kind, column in _MEDIA_COLUMN.items():
        if column in example:
            out[column] = list(media[kind])
    return out


def _tool_message(speaker: str, value: str) -> Row:
    """A tool turn as transformers' templates read it: ``tool`` results, or an assistant's ``tool_calls``
    (each ``{"type": "function", "function": {"name", "arguments"}}``, with no content, when the turn's text
    is the JSON of a call or a list of calls; otherwise the text alone)."""
    role = TOOL_ROLES[speaker]
    message: Row = {"role": role, "content": [{"type": "text", "text": value}]}
    if role == "assistant":
        try:
            calls = json.loads(value)
        except ValueError:
            return message
        calls = calls if isinstance(calls, list) else [calls]
        if calls and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
            message["tool_calls"] = [
                {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
                for c in calls
            ]
            message["content"] = []  # the call is in tool_calls (a template renders it from there)
    return message


def _calls_text(calls: Sequence[Any]) -> str:
    """The text of an assistant's ``tool_calls`` as a LLaVA turn holds it: the JSON of the call (of the list
    of calls when several), as :func:`_tool_message` reads it."""
    plain = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        function = function if isinstance(function, Mapping) else call
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):  # a stored row holds the JSON text (llava_hf.schema)
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        plain.append({"name": function.get("name"), "arguments": arguments})
    return json.dumps(plain[0] if len(plain) == 1 else plain, ensure_ascii=False)


def _audio_part(audio: Any) -> dict[str, Any]:
    """An audio part's object as transformers' processors take it: a file decoded by
    :func:`llava_hf.decode_media` (``{"array", "sampling_rate"}``) gives its array under ``"audio"`` and
    its rate under ``"sampling_rate"``; anything else stays as it is."""
    if isinstance(audio, Mapping) and "array" in audio:
        return {"audio": audio["array"], "sampling_rate": audio.get("sampling_rate")}
    return {}


def _nth(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, (list, tuple)) and i < len(values) else None


def video_part_extras(example: Mapping[str, Any], i: int) -> dict[str, Any]:
    """What a time-aware processor needs beside the ``i``-th video's frames, from a decoded row.

    ``timestamps``: the sampled frames' times in seconds (``video_timestamps``, from
    :func:`llava_hf.decode_media`); ``video_metadata``: transformers' ``VideoMetadata`` fields
    (``total_num_frames``, ``fps``, ``width``, ``height``, ``duration`` from the build-time
    ``video_info``; ``frames_indices`` = ``round(timestamp * fps)``, exact for a constant frame rate;
    ``video_backend="pyav"``), so that ``VideoMetadata(**md).timestamps`` gives the timestamps back.
    Empty when the row has no timestamps (videos not decoded by ``decode_media``).
    """
    stamps = _nth(example.get("video_timestamps"), i)
    if stamps is None:
        return {}
    extras: dict[str, Any] = {"timestamps": list(stamps)}
    info = _nth(example.get("video_info"), i)
    if isinstance(info, Mapping) and info.get("fps") and info.get("num_frames"):
        fps, total = float(info["fps"]), int(info["num_frames"])
        extras["video_metadata"] = {
            "total_num_frames": total,
            "fps": fps,
            "width": info.get("width"),
            "height": info.get("height"),
            "duration": info.get("duration"),
            "video_backend": "pyav",
            "frames_indices": [min(max(round(t * fps), 0), total - 1) for t in stamps],
        }
    return extras


def to_messages(
    example: Mapping[str, Any], *, roles: Mapping[str, str] | None = None, format: MessagesFormat = "trl"
) -> Row:
    """Map a row of the ``conversations`` schema to chat ``messages``; returns a new dict.

    Args:
        example: a row (``id``, ``conversations``, ``images``, ``videos``, ``audios``, ...) or a batch of rows (a
            dict of lists, as ``Dataset.map(batched=True)`` and ``with_transform`` pass).
        roles: LLaVA speaker -> chat role, default :data:`DEFAULT_ROLES`.
        format: ``"trl"`` keeps ``images``/``videos`` as columns and leaves ``{"type": "image"}``
            placeholders, what TRL's ``SFTTrainer`` takes as-is; ``"processor"`` puts the i-th image
            (video) object into its part under ``"image"`` (``"video"``), ready for
            ``processor.apply_chat_template`` (the ``images``/``videos`` columns stay, so the row
            maps back exactly; give TRL the ``"trl"`` format, it fills placeholders itself). A video
            part of a row decoded by :func:`llava_hf.decode_media` also holds ``"timestamps"`` and
            ``"video_metadata"`` (see :func:`video_part_extras`). An ``<audio>`` tag becomes an
            ``{"type": "audio"}`` part (the i-th of ``audios``); decoded by ``decode_media``, a
            ``"processor"`` audio part holds the float32 array under ``"audio"`` and its
            ``"sampling_rate"``.

    Every other key of the row is kept; ``conversations`` is replaced by ``messages``. The input is
    never modified. An unknown speaker, or a tag count that differs from the media count, raises
    :class:`~llava_hf.errors.ChatTemplateError` naming the record.

    Videos with transformers' processors. ``decode_media`` gives each video as a ``(T, H, W, 3)``
    ``uint8`` array of already sampled frames, the input every video processor takes, and
    ``"processor"`` parts carry it as ``{"type": "video", "video": frames, "timestamps": [...],
    "video_metadata": {...}}``. Image-only processors (LLaVA-1.5's ``LlavaProcessor``) take the frames
    as images: :class:`~llava_hf.chat.ChatCollator` does that, as LLaVA-NeXT's training code does. Processors with
    a video processor (LLaVA-NeXT-Video, LLaVA-OneVision, Qwen2-VL/2.5-VL/3-VL; they need torchvision)
    take the parts as they are; tell them the frames are sampled already and pass the metadata, which
    time-aware models (Qwen2.5-VL's ``second_per_grid_ts``, Qwen3-VL's timestamps) read::

        row = next(iter(as_messages(ds, format="processor", num_frames=16)))
        videos = [p for m in row["messages"] for p in m["content"] if p["type"] == "video"]
        inputs = processor.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True,
            processor_kwargs={"do_sample_frames": False,
                              "video_metadata": [p["video_metadata"] for p in videos]},
        )

    (or ``processor(text=..., videos=[p["video"] for p in videos], video_metadata=..., do_sample_frames=False)``).

    To convert a whole ``Dataset``, prefer :func:`llava_hf.chat.as_messages`: a plain
    ``ds.map(to_messages, remove_columns=["conversations"])`` hands back the decoded PIL images, which
    datasets then encodes again (new bytes, no path); ``as_messages`` keeps the stored bytes.
    ``with_transform`` and ``IterableDataset.map`` are lazy and write nothing, so they are fine.
    """
    _check_format(format)
    role_map = _role_map(roles)
    if is_batch(example, "conversations"):
        return _map_batch(example, "conversations", lambda row: _to_messages_row(row, role_map, format))
    return _to_messages_row(dict(example), role_map, format)


# -- messages -> conversations -------------------------------------------------------------------


def _media_literal(part: Mapping[str, Any], kind: str, rid: str | None, turn_index: int) -> str:
    tag = _TAG_OF[kind]
    literal = part.get("text")
    if literal is None or literal == "":
        return tag
    if literal not in (tag, tag + "\n", "\n" + tag, "\n" + tag + "\n"):
        raise ChatTemplateError(
            f"{_where(rid)}: message {turn_index} has a {kind} part whose 'text' is {literal!r}; a media "
            f"part's text can only record its tag and joining newlines ({tag!r}, {tag + chr(10)!r}, ...)",
            id=rid,
        )
    return literal


def _from_messages_row(example: Row, reverse: Mapping[str, str]) -> Row:
    rid = _record_id(example)
    messages = example.get("messages")
    if not isinstance(messages, list):
        raise ChatTemplateError(
            f"{_where(rid)}: no 'messages' list to map back (got {type(messages).__name__})", id=rid
        )
    objects: dict[str, list[Any]] = {kind: [] for kind in _MEDIA_COLUMN}
    placeholders = {kind: 0 for kind in _MEDIA_COLUMN}
    conversations: list[dict[str, str]] = []
    for turn_index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if isinstance(message, Mapping) and message.get("tool_calls") and role == "assistant":
            role = "tool_call"  # an assistant's call comes back as ms-swift's tool_call turn
        if role in ("tool", "tool_call") and role not in reverse:
            reverse = {**reverse, role: role}
        if not isinstance(role, str) or role not in reverse:
            raise ChatTemplateError(
                f"{_where(rid)}: message {turn_index} has role {role!r}, which the role map cannot send "
                f"back (known: {sorted(reverse)})",
                id=rid,
                hint="pass the same roles= map that to_messages used",
            )
        content = message.get("content")
        if isinstance(content, str):
            for tag, kind in MEDIA_TAGS.items():
                placeholders[kind] += content.count(tag)
            if not content and role == "tool_call" and isinstance(message.get("tool_calls"), list):
                content = _calls_text(message["tool_calls"])
            conversations.append({"from": reverse[role], "value": content})
            continue
        pieces: list[str] = []
        for part in content or []:
            kind = part.get("type")
            if kind == "text":
                pieces.append(part.get("text") or "")
            elif kind in _MEDIA_COLUMN:
                pieces.append(_media_literal(part, kind, rid, turn_index))
                if part.get(kind) is not None:
                    objects[kind].append(part[kind])
                else:
                    placeholders[kind] += 1
            else:
                raise ChatTemplateError(
                    f"{_where(rid)}: message {turn_index} has a part of type {kind!r}; LLaVA conversations "
                    "hold only text, image, video and audio",
                    id=rid,
                )
        value = "".join(pieces)
        if not value and role == "tool_call" and isinstance(message.get("tool_calls"), list):
            value = _calls_text(message["tool_calls"])
        conversations.append({"from": reverse[role], "value": value})
    out = {key: value for key, value in example.items() if key != "messages"}
    out["conversations"] = conversations
    for kind, column in _MEDIA_COLUMN.items():
        count = placeholders[kind] + len(objects[kind])
        if column in example:
            given = example[column] if example[column] is not None else []
            if count != len(given):
                raise ChatTemplateError(
                    f"{_where(rid)}: {count} {kind} part(s) in the messages but {len(given)} {kind}(s) in "
                    f"{column!r}",
                    id=rid,
                )
        elif placeholders[kind]:
            raise ChatTemplateError(
                f"{_where(rid)}: the messages have {placeholders[kind]} {kind} placeholder(s) but the row has "
                f"no {column!r} column",
                id=rid,
            )
        elif objects[kind]:
            out[column] = objects[kind]
    return out


def _has_object_parts(messages: Sequence[Any]) -> bool:
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind in _MEDIA_COLUMN and part.get(kind) is not None:
                    return True
    return False


def from_messages(example: Mapping[str, Any], *, roles: Mapping[str, str] | None = None) -> Row:
    """The inverse of :func:`to_messages`: ``from_messages(to_messages(x)) == x``; returns a new dict.

    Takes a row (or a batch) with ``messages`` in either format, including a row of a dataset built
    with ``--format messages``, and gives back ``conversations`` with every tag and joining newline
    where it stood. Media objects held by ``"processor"`` parts become the ``images``/``videos``
    columns when the row has none.
    """
    reverse = _reverse_roles(roles)
    if is_batch(example, "messages"):
        return _map_batch(example, "messages", lambda row: _from_messages_row(row, reverse))
    return _from_messages_row(dict(example), reverse)


def media_of(example: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The images and videos of one row, in order, whichever layout it has.

    ``conversations`` and ``format="trl"`` rows hold them in the ``images``/``videos`` columns;
    ``format="processor"`` rows hold them in their parts.
    """
    images = list(example.get("images") or [])
    videos = list(example.get("videos") or [])
    messages = example.get("messages")
    if isinstance(messages, list) and _has_object_parts(messages):
        found: dict[str, list[Any]] = {"image": [], "video": []}
        for message in messages:
            for part in message.get("content") or []:
                kind = part.get("type") if isinstance(part, Mapping) else None
                if kind in found and part.get(kind) is not None:
                    found[kind].append(part[kind])
        images = images or found["image"]
        videos = videos or found["video"]
    return images, videos
