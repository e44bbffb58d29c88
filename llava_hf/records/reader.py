"""Reading LLaVA-format files item by item: a JSON array, JSONL, both also gzip-compressed.

A JSON array is parsed one element at a time with the standard library's C scanner, so peak memory
holds one record plus a read buffer, whatever the size of the file. In ``.jsonl`` a bad line is a
problem of that record, not of the file. What Python's json reads but a record cannot keep replaces
the item with a problem at its place (see :mod:`llava_hf.jsontext`). An item that is itself a list of
objects is a pack of samples (Qwen's ``tools/pack_data.py``).
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

from ..errors import InputFileError
from ..jsontext import (
    SURROGATE_ESCAPE,
    Defect,
    FlaggingDecoder,
    Walk,
    find_defect,
    format_path,
    in_new_thread,
    safe_text,
)
from ..problems import locate
from ..utils.meter import ReadMeter
from .scanner import (
    _ArrayScanner,
    _Defective,
    _json_reason,
    _lines_before,
    _open_binary,
    _read_error,
)

PACK_KEY = "_llava_hf_pack"

FileKind = Literal["json", "jsonl"]


@dataclass(frozen=True)
class RawItem:
    """An item of the file before normalization: its value, or the parse error that replaced it.

    An ``error`` is an ``invalid_json`` problem's message, unless the item is a :class:`RawProblem`.
    """

    file: str
    index: int | None
    value: Any = None
    error: str | None = None
    offset: int | None = None


@dataclass(frozen=True)
class RawProblem(RawItem):
    """An item replaced by a problem found in its text, with its code, and its id and field when known:
    ``invalid_number`` (NaN, Infinity or a number out of range), ``invalid_text`` (a lone UTF-16
    surrogate), ``invalid_json`` (nested too deeply to read). A subclass: items that read stay as
    cheap to make as before."""

    code: str = "invalid_json"
    id: str | None = None
    field: str | None = None


# --------------------------------------------------------------------------------------------- files


def file_kind(path: str | os.PathLike[str]) -> FileKind:
    """``"json"`` for a top-level array, ``"jsonl"`` for one record per line (by extension).

    A path that is not valid UTF-8 (a name Python keeps as lone surrogates) is refused: it is
    reported and stored (``source``) as UTF-8 text, which it cannot be.
    """
    if safe_text(str(path)) != str(path):
        shown = safe_text(str(path))
        raise InputFileError(
            f"{shown}: the file's path is not valid UTF-8 text, so it can be neither reported nor stored",
            file=shown,
            hint="rename the file (or its folder) with a UTF-8 name",
        )
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    raise InputFileError(
        f"{path}: unsupported file type; llava-hf reads .json (an array of records), .jsonl, and their .gz",
        file=str(path),
        hint="rename the file with the extension that matches its content",
    )


def _defect_item(
    file: str, index: int, defect: Defect, where: str, rid: str | None, offset: int | None
) -> RawProblem:
    field = format_path(defect.path)
    rid = safe_text(rid) if rid is not None else None
    return RawProblem(
        file,
        index,
        error=f"{locate(file, index, rid, field)}: at {where}, {defect.what}; {defect.fix}",
        offset=offset,
        code=defect.code,
        id=rid,
        field=field,
    )


def iter_items(
    path: str | os.PathLike[str],
    *,
    start_offset: int = 0,
    start_index: int = 0,
    stop_index: int | None = None,
    with_offsets: bool = False,
    meter: ReadMeter | None = None,
) -> Iterator[RawItem]:
    """Yield the raw items of a file in order, each with its 0-based record index.

    A file-level problem (invalid JSON in an array) ends the stream with one item whose ``index`` is
    None and whose ``error`` says where. A bad JSONL line is an item with its record index and an error.
    ``start_offset``/``start_index`` resume at an element boundary found by :func:`scan_offsets`
    (used to split big files into shards; ``start_index`` is then the index of the item there). With
    ``start_offset=0``, items before ``start_index`` are read and skipped (a record range of a gzip
    file, which cannot seek). ``stop_index`` ends before that index. ``meter`` follows how far the
    file has been read (a progress bar's position).
    """
    file = str(path)
    kind = file_kind(file)
    with _open_binary(file) as stream:
        if start_offset:
            stream.seek(start_offset)
        if meter is not None:
            meter.attach(stream)
        try:
            if kind == "jsonl":
                yield from _iter_jsonl(stream, file, start_index, stop_index, start_offset)
                return
            scanner = _ArrayScanner(stream, file, start_offset=start_offset, in_array=bool(start_offset))
            index = start_index if start_offset else 0
            for element in scanner.elements(with_offsets=with_offsets):
                if stop_index is not None and index >= stop_index:
                    return
                if element.__class__ is not tuple:  # the file's problem, or an element a problem replaces
                    if isinstance(element, str):
                        yield RawItem(file, None, error=f"{file}: invalid JSON: {element}")
                        return
                    assert isinstance(element, _Defective)
                    if index >= start_index:
                        yield _defect_item(
                            file, index, element.defect, element.where, element.id, element.offset
                        )
                    index += 1
                    continue
                value, offset = element
                if index >= start_index:
                    yield RawItem(file, index, value=value, offset=offset)
                index += 1
        finally:
            if meter is not None:
                meter.detach()


def _iter_jsonl(
    stream: IO[bytes], file: str, start_index: int, stop_index: int | None, start_offset: int
) -> Iterator[RawItem]:
    index = start_index if start_offset else 0
    offset = start_offset
    lines_before: list[int] = []  # lines before start_offset, counted once, when a message needs them

    def line_number(lineno: int) -> int:
        if not lines_before:
            lines_before.append(_lines_before(file, start_offset)[0] if start_offset else 0)
        return lines_before[0] + lineno

    decoder = FlaggingDecoder()
    try:
        for lineno, raw in enumerate(stream, start=1):
            line_offset = offset
            offset += len(raw)
            if not raw.strip():
                continue
            if stop_index is not None and index >= stop_index:
                return
            if index < start_index:
                index += 1
                continue
            walk: Walk | None = None
            text = ""
            reason = "a value nested too deeply to read"
            try:
                # as json.loads(raw) decodes, but strictly: surrogates written as UTF-8 bytes are not UTF-8
                text = raw.decode(json.detect_encoding(raw))
                decoder.flagged = False
                try:
                    value = decoder.decode(text)
                except RecursionError:  # the verdict must not depend on how deep the caller's stack is
                    value = in_new_thread(functools.partial(decoder.decode, text))
            except json.JSONDecodeError as err:
                reason = f"{_json_reason(err)} at line {line_number(lineno)} column {err.colno}"
            except UnicodeDecodeError as err:
                reason = f"not valid UTF-8 at byte {line_offset + err.start}"
            except RecursionError:
                walk = find_defect(text, 0, deep=True)
            except ValueError as err:  # an integer longer than int() reads (sys.get_int_max_str_digits)
                reason = str(err)
                walk = find_defect(text, 0)
            else:
                if decoder.flagged or SURROGATE_ESCAPE.search(text):
                    walk = find_defect(text, 0)
                if walk is None or walk.defect is None:
                    yield RawItem(file, index, value=value, offset=line_offset)
                    index += 1
                    continue
            if walk is not None:
                if walk.defect is not None and walk.end is not None and not text[walk.end :].strip():
                    at = walk.defect.at
                    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
                    byte = line_offset + bom + len(text[:at].encode("utf-8"))
                    where = f"line {line_number(lineno)} column {at + 1} (byte {byte})"
                    yield _defect_item(file, index, walk.defect, where, walk.id, line_offset)
                    index += 1
                    continue
                stopped = walk.error_at if walk.error_at is not None else walk.end
                if walk.incomplete:
                    stopped = len(text.rstrip())
                if stopped is not None and (walk.error_at is not None or text[stopped:].strip()):
                    found = repr(text[stopped]) if stopped < len(text) else "the end of the line"
                    reason = f"unexpected {found} at line {line_number(lineno)} column {stopped + 1}"
            yield RawItem(
                file,
                index,
                error=f"{file}, record {index}: line {line_number(lineno)} is not valid JSON: {reason}",
            )
            index += 1
    except (EOFError, OSError, zlib.error) as err:  # a corrupt or truncated gzip stream, a read error
        yield RawItem(
            file,
            None,
            error=f"{file}: invalid JSON: the file cannot be read past byte {offset}: {_read_error(err)}",
        )


def scan_offsets(path: str | os.PathLike[str], every: int) -> list[tuple[int, int]]:
    """``[(record index, byte offset), ...]`` every ``every`` records, to split one file into shards.

    Only for uncompressed files (a gzip stream cannot seek). Returns ``[(0, 0)]`` when the file
    cannot be split (compressed, or invalid: the shard that reads it reports the problem).
    """
    file = str(path)
    if file.lower().endswith(".gz") or every <= 0:
        return [(0, 0)]
    points: list[tuple[int, int]] = [(0, 0)]
    for item in iter_items(file, with_offsets=True):
        if item.error is not None and item.index is None:
            return [(0, 0)]
        if item.index and item.index % every == 0 and item.offset is not None:
            points.append((item.index, item.offset))
    return points


def count_records(path: str | os.PathLike[str]) -> int:
    """The number of records (items; a packed item counts its samples) in a file."""
    n = 0
    for item in iter_items(path):
        if item.index is None:
            raise InputFileError(str(item.error), file=str(path), hint="run 'llava-hf validate' on the file")
        n += len(item.value) if is_pack(item.value) else 1
    return n


def is_pack(value: Any) -> bool:
    """A packed item: a non-empty list of objects (anything else that is not an object is invalid)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
