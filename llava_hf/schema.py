"""The one schema every llava-hf dataset has, whatever its records hold.

Text-only, single-image, multi-image, video and audio rows share these columns (empty lists, never
missing columns), so any two llava-hf datasets concatenate and interleave without casts.

========================  =========================================================================
column                    type
========================  =========================================================================
``id``                    string (integer ids are kept as their decimal string)
``images``                list of ``Image()``: the source file's bytes and its relative path
``videos``                list of ``Video()``: the source file's bytes and its relative path
``video_info``            list of ``{duration, fps, num_frames, width, height, codec}`` probed with
                          av at build time, one per video, for reproducible frame sampling
``audios``                list of ``Audio()``: the source file's bytes and its relative path
``audio_info``            list of ``{duration, sample_rate, channels, codec}`` probed with av at
                          build time, one per audio file
``conversations``         list of ``{from, value}``, as in the source (after the placeholder fix)
``source``                string: the input file (or mixture source) the row came from
``metadata``              ``Json()``: every other key of the source record, losslessly
========================  =========================================================================

The ``messages`` format (``llava-hf build --format messages``) replaces ``conversations`` with
``messages``: a list of ``{role, content: [{type, text}]}`` where an ``image``/``video``/``audio`` part marks
where the i-th media stood, as TRL's ``SFTTrainer`` reads it.
"""

from __future__ import annotations

from typing import Literal

import datasets

__all__ = [
    "AUDIO_INFO_FIELDS",
    "FORMAT_VERSION",
    "VIDEO_INFO_FIELDS",
    "OutputFormat",
    "features_for",
]

#: Version of the on-disk layout (columns, card YAML, manifest). Bumped on incompatible changes.
FORMAT_VERSION = "1.0"

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
            }
        )
    else:  # pragma: no cover - guarded by Literal and config validation
        raise ValueError(f"unknown format {format!r}: use 'conversations' or 'messages'")
    common["source"] = datasets.Value("string")
    common["metadata"] = datasets.Json()
    return datasets.Features(common)
