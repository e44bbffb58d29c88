"""The one schema every llava-hf dataset has, whatever its records hold.

Text-only, single-image, multi-image, video and audio rows share these columns (empty lists, never
missing columns), so any two llava-hf datasets concatenate and interleave without casts.

========================  =========================================================================
column                    type
========================  =========================================================================
``id``                    string (integer ids are kept as their decimal string)
``images``                list of ``Image()``: the source file's bytes and its relative path
``videos``                list of ``Video()``: the source file's bytes and its relative path; null for a
                          video given as its frames (see ``video_frames``)
``video_frames``          list of lists of ``Image()``, one list per video (aligned with ``videos``):
                          a frame video's frames, each the source file's bytes and its relative path;
                          an empty list for a video file
``video_info``            list of ``{duration, fps, num_frames, width, height, codec}`` probed with
                          av at build time, one per video, for reproducible frame sampling (a frame
                          video: its frame count, the first frame's size, codec ``"frames"``, no
                          duration or fps)
``audios``                list of ``Audio()``: the source file's bytes and its relative path
``audio_info``            list of ``{duration, sample_rate, channels, codec}`` probed with av at
                          build time, one per audio file
``conversations``         list of ``{from, value}``, as in the source (after the placeholder fix)
``source``                string: the input file (or mixture source) the row came from
``metadata``              ``Json()``: every other key of the source record, losslessly
========================  =========================================================================

Videos given as frames (``"videos": [["f1.jpg", "f2.jpg"]]``, LLaMA-Factory, ms-swift, Qwen2-VL): a
video's frames are images, so they are stored as ``Image()`` values, byte for byte with their paths, in
``video_frames[i]``, and ``videos[i]`` is null. The i-th ``<video>`` tag stays the i-th video whatever
its kind (a record mixes both), plain ``datasets`` reads the column (a ``Video()`` holds one file, and a
nested ``List(Image())`` is the only standard feature that keeps each frame as it was), and a row
without frame videos gets empty lists. Storing the frames in ``images`` was rejected (the ``<image>``
tags count those), and so was encoding them into one video file (not byte-identical, not exportable
back). :func:`llava_hf.decode_media` gives ``videos[i]`` as a ``(T, H, W, 3)`` array for both kinds.

The ``messages`` format (``llava-hf build --format messages``) replaces ``conversations`` with
``messages``: a list of ``{role, content: [{type, text}], tool_calls}`` where an ``image``/``video``/``audio``
part marks where the i-th media stood, as TRL's ``SFTTrainer`` reads it. ``tool_calls`` is null except on an
assistant's tool call (LLaMA-Factory's ``function_call``, ms-swift's ``tool_call`` turns, which then have no
content): a list of ``{type: "function", function: {name, arguments}}``, the form chat templates with tool
support render, with ``arguments`` the JSON text of the call's arguments (OpenAI's form): each tool has
its own argument keys, so no fixed struct holds them, and a ``Json()`` nested in a list of structs breaks
``datasets``' own ``to_parquet``/``map`` (pyarrow cannot flatten it). Every messages dataset has the field,
null when unused: all of them stay on one schema. The row's ``tools`` declaration stays in ``metadata``
with the record's other keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import datasets

__all__ = [
    "AUDIO_INFO_FIELDS",
    "FORMAT_VERSION",
    "VIDEO_INFO_FIELDS",
    "OutputFormat",
    "features_for",
    "stored_messages",
]

#: Version of the on-disk layout (columns, card YAML, manifest). Bumped on incompatible changes.
FORMAT_VERSION = "1.1"

OutputFormat = Literal["conversations", "messages"]

VIDEO_INFO_FIELDS = ("duration", "fps", "num_frames", "width", "height", "codec")
AUDIO_INFO_FIELDS = ("duration", "sample_rate", "channels", "codec")


def _video_info() -> dict[str, datasets.Value]:
    return {
        "duration": datasets.Value("float64"),
        "fps": datasets.Value("float64"),
        "num_frames": datasets.Value("int64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "codec": datasets.Value("string"),
    }


def _audio_info() -> dict[str, datasets.Value]:
    return {
        "duration": datasets.Value("float64"),
        "sample_rate": datasets.Value("int32"),
        "channels": datasets.Value("int32"),
        "codec": datasets.Value("string"),
    }


def features_for(format: OutputFormat = "conversations", *, decode: bool = True) -> datasets.Features:
    """The :class:`datasets.Features` of a llava-hf dataset in the given format.

    ``decode=False`` gives ``Image(decode=False)``/``Video(decode=False)``/``Audio(decode=False)``, which yield
    ``{"bytes", "path"}`` dicts instead of decoded objects.
    """
    common: dict[str, object] = {
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image(decode=decode)),
        "videos": datasets.List(datasets.Video(decode=decode)),
        "video_frames": datasets.List(datasets.List(datasets.Image(decode=decode))),
        "video_info": datasets.List(_video_info()),
        "audios": datasets.List(datasets.Audio(decode=decode)),
        "audio_info": datasets.List(_audio_info()),
    }
    if format == "conversations":
        common["conversations"] = datasets.List(
            {"from": datasets.Value("string"), "value": datasets.Value("string")}
        )
    elif format == "messages":
        common["messages"] = datasets.List(
            {
                "role": datasets.Value("string"),
                "content": datasets.List(
                    {"type": datasets.Value("string"), "text": datasets.Value("string")}
                ),
                "tool_calls": datasets.List(
                    {
                        "type": datasets.Value("string"),
                        "function": {"name": datasets.Value("string"), "arguments": datasets.Value("string")},
                    }
                ),
            }
        )
    else:  # pragma: no cover - guarded by Literal and config validation
        raise ValueError(f"unknown format {format!r}: use 'conversations' or 'messages'")
    common["source"] = datasets.Value("string")
    common["metadata"] = datasets.Json()
    return datasets.Features(common)


def stored_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` (as :func:`llava_hf.chat.to_messages` gives them) with exactly the keys of the
    ``messages`` column: parts as ``{type, text}``, ``tool_calls`` with each call's arguments as JSON text."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls is not None:
            calls = [
                {
                    "type": c.get("type", "function"),
                    "function": {
                        "name": c["function"].get("name"),
                        "arguments": _json_text(c["function"].get("arguments")),
                    },
                }
                for c in calls
            ]
        content = [{"type": p["type"], "text": p.get("text")} for p in m.get("content") or ()]
        out.append({"role": m["role"], "content": content, "tool_calls": calls})
    return out


def _json_text(value: Any) -> str | None:
    return value if isinstance(value, str) or value is None else json.dumps(value, ensure_ascii=False)
