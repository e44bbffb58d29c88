"""LLaMA-Factory's ``dataset_info.json``: an entry names a file and maps its columns and tags.

:func:`read_dataset_info` reads the entries asked for by name; :meth:`DatasetEntry.apply` turns one raw
record of the entry's file into LLaVA's ``conversations`` (``from``/``value``, human/gpt/system and the
tool speakers) with the media under ``images``/``videos``/``audios``, so that the reader takes it like
any record of the ``sharegpt`` layout. Both formattings: ``sharegpt`` (``columns.messages`` + ``tags``)
and ``alpaca`` (``prompt``/``query``/``response``/``history``). Pure functions besides reading the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputFileError, UsageError

__all__ = ["SPEAKER", "DatasetEntry", "by_file", "entry_for", "read_dataset_info"]

#: LLaMA-Factory's defaults (data/README.md)
_SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
_ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "system": "system",
    "tools": "tools",
}
_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
#: tag -> the speaker llava-hf stores
SPEAKER = {
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
_MEDIA = ("images", "videos", "audios")


@dataclass(frozen=True)
class DatasetEntry:
    """One entry of a ``dataset_info.json``: its name, its file (a path) and its mappings."""

    name: str
    file: str
    formatting: str
    columns: dict[str, str]
    tags: dict[str, str]
    #: the entry as the dataset_info.json gives it, without ``file_name`` (export writes it back)
    given: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_given(cls, name: str, given: dict[str, Any], file: str) -> DatasetEntry:
        """The entry ``given`` (as in a dataset_info.json) with LLaMA-Factory's defaults filled in."""
        formatting = given.get("formatting", "alpaca")
        defaults = _ALPACA_COLUMNS if formatting == "alpaca" else _SHAREGPT_COLUMNS
        columns = {**defaults, **(given.get("columns") or {})}
        tags = {**_TAGS, **(given.get("tags") or {})}
        kept = {k: v for k, v in given.items() if k != "file_name"}
        return cls(name, file, formatting, columns, tags, kept)

    def apply(self, raw: Any) -> Any:
        """``raw`` (one record of the entry's file) with its columns and tags mapped; anything else as it is."""
        if not isinstance(raw, dict):
            return raw
        columns = self.columns
        used = set(columns.values())
        out = {k: v for k, v in raw.items() if k not in used}
        for key in ("system", "tools", *_MEDIA):
            if key in columns and columns[key] in raw:
                out[key] = raw[columns[key]]
        if self.formatting == "alpaca":
            out["conversations"] = self._alpaca_turns(raw)
        elif columns["messages"] in raw:
            out["conversations"] = self._sharegpt_turns(raw[columns["messages"]])
        return out

    def _sharegpt_turns(self, turns: Any) -> Any:
        if not isinstance(turns, list):
            return turns  # the reader reports it (invalid_conversations)
        tags = self.tags
        speaker = {tags[tag]: role for tag, role in SPEAKER.items()}
        role_tag, content_tag = tags["role_tag"], tags["content_tag"]
        out: list[Any] = []
        for turn in turns:
            if not isinstance(turn, dict) or role_tag not in turn or content_tag not in turn:
                out.append(turn)  # the reader reports it (invalid_turn)
                continue
            rest = {k: v for k, v in turn.items() if k not in (role_tag, content_tag)}
            role = turn[role_tag]
            out.append({"from": speaker.get(role, role), "value": turn[content_tag], **rest})
        return out

    def _alpaca_turns(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        columns = self.columns
        turns: list[dict[str, Any]] = []
        history = raw.get(columns["history"])
        if isinstance(history, list):
            for pair in history:
                if isinstance(pair, list) and len(pair) == 2:
                    turns += [{"from": "human", "value": pair[0]}, {"from": "gpt", "value": pair[1]}]
        prompt, query = raw.get(columns["prompt"]), raw.get(columns["query"])
        if isinstance(prompt, str) and isinstance(query, str) and query:
            prompt = f"{prompt}\n{query}"  # LLaMA-Factory joins them so
        turns.append({"from": "human", "value": prompt if prompt is not None else query})
        response = raw.get(columns["response"])
        if response is not None:
            turns.append({"from": "gpt", "value": response})
        return turns


def read_dataset_info(path: str | os.PathLike[str], names: list[str]) -> list[DatasetEntry]:
    """The entries ``names`` of LLaMA-Factory's ``dataset_info.json`` at ``path``, their files resolved
    against its folder.

    Raises:
        InputFileError: the file is missing or not a JSON object.
        UsageError: a name it does not have, an entry without a local ``file_name``, or an unknown
            formatting.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file", file=path, hint="check the path") from None
    except ValueError as err:
        raise InputFileError(f"{path}: not valid JSON ({err})", file=path, hint="fix the JSON") from None
    if not isinstance(info, dict):
        raise InputFileError(
            f"{path}: expected an object of named entries",
            file=path,
            hint="give LLaMA-Factory's dataset_info.json",
        )
    if not names:
        raise UsageError(f"{path}: name the entries to read", hint=f"--dataset one of: {', '.join(info)}")
    entries = []
    for name in names:
        entry = info.get(name)
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: no entry {name!r}", hint=f"use one of: {', '.join(info)}")
        file_name = entry.get("file_name")
        if not isinstance(file_name, str):
            raise UsageError(
                f"{path}: entry {name!r} has no file_name (a Hub or script entry)",
                hint="download its data and give its file in file_name",
            )
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt"):
            raise UsageError(
                f"{path}: entry {name!r} has formatting {formatting!r}", hint="use 'alpaca' or 'sharegpt'"
            )
        file = os.path.join(os.path.dirname(os.path.abspath(path)), file_name)
        entries.append(DatasetEntry.from_given(name, entry, file))
    return entries


def entry_for(entries: dict[str, DatasetEntry] | None, file: str) -> DatasetEntry | None:
    """The entry whose file is ``file`` (None without entries: the file is read as it is)."""
    if not entries:
        return None
    return entries.get(os.path.realpath(file.removeprefix("file://")))


def by_file(entries: list[DatasetEntry]) -> dict[str, DatasetEntry]:
    """``entries`` keyed as :func:`entry_for` looks them up."""
    return {os.path.realpath(e.file): e for e in entries}
