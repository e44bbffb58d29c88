"""A LLaMA-Factory ``dataset_info.json`` entry's records written back in the entry's own shape.

At build time :func:`entry_shape` records, in the row's layout shape (``extra[LAYOUT_KEY]``), the entry
as given (its name, formatting, columns and tags) and whatever :func:`restore` would not give back from
the mapped record (``fix``: keys kept as they were, keys to drop). At export, :func:`restore_record`
turns the ``sharegpt`` record that :func:`~llava_hf.records.layouts.render` writes back into the entry's
columns and tags, so the exported file holds the same JSON value as the input file. Pure functions.
"""

from __future__ import annotations

from typing import Any

from .dataset_info import SPEAKER, DatasetEntry

__all__ = ["ENTRY_KEY", "entry_of", "entry_shape", "restore", "restore_record"]

#: the key of the layout shape that holds the entry (``{"name", **given}``) and its ``fix``
ENTRY_KEY = "entry"

_KEYED = ("system", "tools", "images", "videos", "audios")


def entry_of(stored: dict[str, Any]) -> DatasetEntry:
    """The :class:`DatasetEntry` stored in a row's shape (``{"name", **given}``); its file is unknown."""
    given = {k: v for k, v in stored.items() if k not in ("name", "fix")}
    return DatasetEntry.from_given(str(stored.get("name", "")), given, "")


def restore(mapped: dict[str, Any], entry: DatasetEntry) -> dict[str, Any]:
    """The inverse of :meth:`DatasetEntry.apply` for a record that maps one to one (see :func:`entry_shape`)."""
    columns = entry.columns
    out: dict[str, Any] = {}
    for key, value in mapped.items():
        if key == "conversations":
            if entry.formatting == "alpaca":
                out.update(_alpaca(value, columns))
            else:
                out[columns["messages"]] = _sharegpt(value, entry.tags)
        elif key in _KEYED and key in columns:
            out[columns[key]] = value
        else:
            out[key] = value
    return out


def _sharegpt(turns: Any, tags: dict[str, str]) -> Any:
    if not isinstance(turns, list):
        return turns
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    name = {role: tags[tag] for tag, role in SPEAKER.items()}
    out: list[Any] = []
    for turn in turns:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            out.append(turn)
            continue
        rest = {k: v for k, v in turn.items() if k not in ("from", "value")}
        out.append({role_tag: name.get(turn["from"], turn["from"]), content_tag: turn["value"], **rest})
    return out


def _alpaca(turns: Any, columns: dict[str, str]) -> dict[str, Any]:
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        return {"conversations": turns}
    texts = [t.get("value") for t in turns]
    out: dict[str, Any] = {}
    if len(texts) % 2 == 0 and texts:
        out[columns["response"]] = texts.pop()
    if texts:
        out[columns["prompt"]] = texts.pop()
    if texts:
        out[columns["history"]] = [[texts[i], texts[i + 1]] for i in range(0, len(texts) - 1, 2)]
    return out


def entry_shape(raw: Any, mapped: Any, entry: DatasetEntry) -> dict[str, Any] | None:
    """What the row's layout shape keeps of ``entry`` for ``raw`` (one record of the entry's file, and
    ``mapped`` = ``entry.apply(raw)``): the entry as given, and the keys :func:`restore` would not give
    back as they were (None for a record that is not an object)."""
    if not isinstance(raw, dict) or not isinstance(mapped, dict):
        return None
    stored: dict[str, Any] = {"name": entry.name, **entry.given}
    rebuilt = restore(mapped, entry)
    kept = {k: v for k, v in raw.items() if k not in rebuilt or rebuilt[k] != v}
    dropped = sorted(k for k in rebuilt if k not in raw)
    fix: dict[str, Any] = {}
    if kept:
        fix["raw"] = kept
    if dropped:
        fix["drop"] = dropped
    if fix:
        stored["fix"] = fix
    return stored


def restore_record(record: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """``record`` (the ``sharegpt`` record rendered from a row) in the shape of the entry ``stored``
    (as :func:`entry_shape` recorded it): the same JSON value as the record of the input file."""
    out = restore(record, entry_of(stored))
    fix = stored.get("fix") or {}
    for key in fix.get("drop", ()):
        out.pop(key, None)
    out.update(fix.get("raw", {}))
    return out
