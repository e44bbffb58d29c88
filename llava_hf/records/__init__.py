"""Read LLaVA-format files into one normalized record model, incrementally.

Supported files: ``.json`` (a top-level array), ``.jsonl``, both also gzip-compressed (``.json.gz``,
``.jsonl.gz``), from local paths or fsspec URLs. A JSON array is parsed one element at a time with
the standard library's C scanner, so peak memory holds one record plus a read buffer, whatever the
size of the file. In ``.jsonl`` a bad line is a problem of that record, not of the file.

Input shapes, all normalized to :class:`Record`:

* ``image``/``images`` and ``video``/``videos`` as a string, a list of strings, or absent;
* ``id`` as a string, an integer (kept as its decimal string) or absent (then ``<file stem>-<index>``, see ``id_stems``);
* ``conversations`` with ``from`` in human/gpt/system (``user``/``assistant`` accepted as aliases) and
  ``value``; or the ``messages`` layout with ``role``/``content`` (content a string, or a list of
  ``{"type": "text"|"image"|"video"}`` parts), detected per record;
* every other key kept in :attr:`Record.extra`, losslessly;
* what Python's json reads but a record cannot keep replaces the item with a problem at its place
  (line, column, byte, field): ``NaN``/``Infinity`` and numbers out of range (``invalid_number``),
  lone UTF-16 surrogate escapes (``invalid_text``), nesting too deep to read (``invalid_json``), so
  ``validate`` and ``build`` judge them alike (see :mod:`llava_hf.jsontext`);
* an item that is itself a list is a pack of samples (Qwen's ``tools/pack_data.py``): each sample is
  read as its own record, with ``extra["_llava_hf_pack"] = [item index, position]`` so export can
  pack them again.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, NamedTuple

from ..errors import InputFileError
from ..jsontext import (
    SURROGATE_ESCAPE,
    Defect,
    FlaggingDecoder,
    Walk,
    at_full_depth,
    find_defect,
    format_path,
    in_new_thread,
    safe_text,
)
from ..problems import Problem, locate
from ..utils.meter import ReadMeter

__all__ = [
    "PACK_KEY",
    "RawItem",
    "RawProblem",
    "Record",
    "Turn",
    "count_records",
    "file_kind",
    "id_stems",
    "is_pack",
    "iter_items",
    "iter_records",
    "normalize",
    "record_id",
    "records_from_items",
    "scan_offsets",
]

PACK_KEY = "_llava_hf_pack"
ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}
_CHUNK = 1 << 20
_MAX_RECORD_CHARS = 512 << 20

FileKind = Literal["json", "jsonl"]


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
    videos: tuple[str, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    index: int = 0
    layout: Literal["conversations", "messages"] = "conversations"

    def with_conversations(self, conversations: tuple[Turn, ...]) -> Record:
        return replace(self, conversations=conversations)

    def to_llava(self) -> dict[str, Any]:
        """The record in LLaVA's own format (``image``/``video`` a string when one, a list when several)."""
        out: dict[str, Any] = {"id": self.id}
        for key, paths in (("image", self.images), ("video", self.videos)):
            if len(paths) == 1:
                out[key] = paths[0]
            elif paths:
                out[key] = list(paths)
        out["conversations"] = [{"from": t.role, "value": t.value} for t in self.conversations]
        out.update({k: v for k, v in self.extra.items() if k != PACK_KEY})
        return out


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


def _open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    import fsspec

    p = str(path)
    compression = "gzip" if p.lower().endswith(".gz") else None
    try:
        return fsspec.open(p, "rb", compression=compression).open()
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such file", file=p, hint="check the path") from None
    except IsADirectoryError:
        raise InputFileError(f"{p}: is a folder, not a JSON file", file=p) from None
    except PermissionError:
        raise InputFileError(f"{p}: permission denied", file=p, hint="check the file's permissions") from None
    except ImportError as err:  # an fsspec protocol whose package is not installed (s3fs, gcsfs, ...)
        raise InputFileError(
            f"{p}: {err}", file=p, hint="install the fsspec package for this protocol"
        ) from None
    except ValueError as err:  # an unknown fsspec protocol
        raise InputFileError(f"{p}: {err}", file=p, hint="use a local path or a known fsspec URL") from None


def _lines_before(file: str, offset: int) -> tuple[int, int]:
    """Newlines in the first ``offset`` bytes of ``file``, and the characters after the last of them."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = chars = 0
    left = offset
    with _open_binary(file) as stream:
        while left > 0:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                lines += chunk.count(b"\n")
                decoder.reset()
                chars = len(decoder.decode(chunk[nl + 1 :]))
            else:
                chars += len(decoder.decode(chunk))
    return lines, chars


def _position(chars_before: int, pos_in_buf: int, line_base: int, buf: str) -> str:
    line = line_base + buf.count("\n", 0, pos_in_buf) + 1
    last_nl = buf.rfind("\n", 0, pos_in_buf)
    col = pos_in_buf - last_nl if last_nl >= 0 else chars_before + pos_in_buf + 1
    return f"line {line} column {col}"


class _ArrayScanner:
    """Decodes a JSON array element by element from a binary stream, tracking byte offsets."""

    def __init__(
        self, stream: IO[bytes], file: str, *, start_offset: int = 0, in_array: bool = False
    ) -> None:
        self.stream = stream
        self.file = file
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.json = FlaggingDecoder()
        self.buf = ""
        self.pos = 0
        self.byte_base = start_offset  # byte offset of buf[0]
        self.start_offset = start_offset  # lines before it are counted when a message needs them
        self.line_base = 0  # newlines before buf[0] (relative to start_offset until where() counts)
        self.tail_chars = 0  # characters of the current line before buf[0], for column numbers
        self.bytes_read = start_offset  # bytes handed to the UTF-8 decoder so far
        self.eof = False
        self.in_array = in_array
        self._mark = 0  # buf position whose byte offset (relative to byte_base) is _mark_bytes
        self._mark_bytes = 0
        # no lone surrogate escape starts between pos and this buf position (see _lone_escape)
        self._clean_to = 0

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(_CHUNK)
        pending = len(self.decoder.getstate()[0])  # bytes of a split character from the last chunk
        base = self.bytes_read - pending
        self.bytes_read += len(chunk)
        try:
            self.buf += self.decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as err:
            raise _BadBytes(f"the file is not valid UTF-8 at byte {base + err.start}") from None
        if not chunk:
            self.eof = True
            return False
        return True

    def _compact(self) -> None:
        if self.pos > _CHUNK:
            consumed = self.buf[: self.pos]
            self.byte_base += self._mark_bytes + len(consumed[self._mark :].encode("utf-8"))
            self._mark, self._mark_bytes = 0, 0
            nl = consumed.count("\n")
            self.line_base += nl
            # A count, not the text: a file written on one line must not accumulate in memory.
            self.tail_chars = (
                len(consumed) - consumed.rfind("\n") - 1 if nl else self.tail_chars + len(consumed)
            )
            self.buf = self.buf[self.pos :]
            self._clean_to -= self.pos
            self.pos = 0

    def _skip_ws(self) -> str | None:
        """Advance past whitespace; return the next character (None at end of file)."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self._fill():
                return None

    def where(self, pos: int | None = None) -> str:
        p = self.pos if pos is None else pos
        byte = self.byte_base + len(self.buf[:p].encode("utf-8"))
        if self.start_offset:  # a shard that starts inside the file: count what comes before, once
            lines, chars = _lines_before(self.file, self.start_offset)
            if self.line_base == 0:  # still on the line where the shard starts
                self.tail_chars += chars
            self.line_base += lines
            self.start_offset = 0
        return f"{_position(self.tail_chars, p, self.line_base, self.buf)} (byte {byte})"

    def byte_offset(self) -> int:
        """Byte offset of ``buf[pos]``, counted incrementally (each character is encoded once)."""
        if self._mark > self.pos:
            self._mark, self._mark_bytes = 0, 0
        self._mark_bytes += len(self.buf[self._mark : self.pos].encode("utf-8"))
        self._mark = self.pos
        return self.byte_base + self._mark_bytes

    def elements(self, *, with_offsets: bool = False) -> Iterator[tuple[Any, int | None] | _Defective | str]:
        """Yield ``(value, byte offset)`` per element (a :class:`_Defective` where a problem replaces the
        value), or a final error string (the file's problem)."""
        try:
            yield from self._elements(with_offsets)
        except _BadBytes as err:
            yield str(err)
        except (EOFError, OSError, zlib.error) as err:  # a corrupt or truncated gzip stream, a read error
            yield f"the file cannot be read past byte {self.bytes_read}: {_read_error(err)}"

    def _elements(self, with_offsets: bool) -> Iterator[tuple[Any, int | None] | _Defective | str]:
        if not self.in_array:
            if self._skip_ws() == "\ufeff":
                self.pos += 1
            ch = self._skip_ws()
            if ch is None:
                yield "the file is empty; expected a JSON array of records"
                return
            if ch != "[":
                what = "an object" if ch == "{" else f"{ch!r}"
                yield (
                    f"expected a JSON array of records at {self.where()}, found {what}"
                    + ("; a file with one record per line must be named .jsonl" if ch == "{" else "")
                )
                return
            self.pos += 1
            self.in_array = True
            ch = self._skip_ws()
            if ch == "]":
                self.pos += 1
                yield from self._trailing()
                return
        first = True
        while True:
            ch = self._skip_ws()
            if ch is None:
                yield f"unexpected end of file at {self.where()}: the file is truncated (no closing ']')"
                return
            if not first:
                if ch == "]":
                    self.pos += 1
                    yield from self._trailing()
                    return
                if ch != ",":
                    yield f"expected ',' or ']' after a record at {self.where()}, found {ch!r}"
                    return
                self.pos += 1
                ch = self._skip_ws()
                if ch is None:
                    yield f"unexpected end of file at {self.where()}: the file is truncated"
                    return
            first = False
            offset = self.byte_offset() if with_offsets else None
            value = self._decode_one()
            if isinstance(value, _NotAValue):
                if isinstance(value, _Failure):
                    yield value.message
                    return
                assert isinstance(value, _Defective)
                value.offset = offset
                yield value
            else:
                yield value, offset
            self._compact()

    def _decode_one(self) -> Any:
        while True:
            try:
                try:
                    value, end = self.json.raw_decode(self.buf, self.pos)
                except RecursionError:  # the verdict must not depend on how deep the caller's stack is
                    value, end = in_new_thread(functools.partial(self.json.raw_decode, self.buf, self.pos))
            except RecursionError:
                self.json.flagged = False
                return self._walk(deep=True)
            except json.JSONDecodeError as err:
                self.json.flagged = False
                incomplete = err.pos >= len(self.buf) - 16 or err.msg.startswith("Unterminated string")
                if incomplete and not self.eof and len(self.buf) - self.pos < _MAX_RECORD_CHARS:
                    self._fill()
                    continue
                if self.eof and (err.pos >= len(self.buf) or err.msg.startswith("Unterminated string")):
                    return _Failure(f"unexpected end of file at {self.where(err.pos)}: the file is truncated")
                return _Failure(f"{_json_reason(err)} at {self.where(err.pos)}")
            except ValueError as err:  # an integer longer than int() reads (sys.get_int_max_str_digits)
                self.json.flagged = False
                return self._walk(reason=str(err))
            if end >= len(self.buf) and not self.eof:
                # A number at the very end of the buffer may continue in the next chunk.
                if self._fill():
                    continue
            if self.json.flagged or (end > self._clean_to and self._lone_escape(self.pos, end)):
                self.json.flagged = False
                walk = find_defect(self.buf, self.pos, end)
                if walk.defect is not None:
                    return self._defective(walk, end)
            self.pos = end
            return value

    def _lone_escape(self, start: int, end: int) -> bool:
        """Whether ``buf[start:end]`` may hold a lone surrogate escape.

        One search runs over the rest of the buffer, and says up to where the next records are
        clean (``_clean_to``): a few characters short of the buffer's end until the file ends, where
        an escape, or the half of a pair after it, may be cut.
        """
        m = SURROGATE_ESCAPE.search(self.buf, start)
        searched = len(self.buf) if self.eof else len(self.buf) - 12
        self._clean_to = min(m.start(), searched) if m is not None else searched
        return m is not None and m.start() < end

    def _walk(self, *, deep: bool = False, reason: str = "") -> Any:
        """Find what Python's json could not read in the element here (see :func:`find_defect`)."""
        while True:
            walk = find_defect(self.buf, self.pos, deep=deep, partial=not self.eof)
            if walk.incomplete and not self.eof and len(self.buf) - self.pos < _MAX_RECORD_CHARS:
                self._fill()
                continue
            break
        if walk.defect is not None and walk.end is not None:
            return self._defective(walk, walk.end)
        if walk.incomplete or walk.error_at is None or walk.error_at >= len(self.buf):
            return _Failure(f"unexpected end of file at {self.where(len(self.buf))}: the file is truncated")
        if walk.defect is None and walk.end is not None:  # not expected: Python's own words then
            return _Failure(f"{reason or 'a value that cannot be read'} at {self.where()}")
        return _Failure(f"unexpected {self.buf[walk.error_at]!r} at {self.where(walk.error_at)}")

    def _defective(self, walk: Walk, end: int) -> _Defective:
        assert walk.defect is not None
        defective = _Defective(walk.defect, self.where(walk.defect.at), walk.id)
        self.pos = end
        return defective

    def _trailing(self) -> Iterator[str]:
        ch = self._skip_ws()
        if ch is not None:
            yield f"extra data after the closing ']' at {self.where()}"


def _json_reason(err: json.JSONDecodeError) -> str:
    """The decoder's message without its own trailing "at" (``Invalid control character at``): the
    position follows it."""
    return err.msg.removesuffix(" at")


class _NotAValue:
    """What :meth:`_ArrayScanner._decode_one` returns instead of a value (one check tells it apart)."""

    __slots__ = ()


class _Failure(_NotAValue):
    """The file's problem: reading ends."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _Defective(_NotAValue):
    """An element Python's json reads (or not) but a record cannot keep: the problem replaces it."""

    __slots__ = ("defect", "id", "offset", "where")

    def __init__(self, defect: Defect, where: str, id: str | None) -> None:
        self.defect, self.where, self.id = defect, where, id
        self.offset: int | None = None


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


class _BadBytes(Exception):
    """Bytes that are not UTF-8, with their absolute byte offset in the message."""


def _read_error(err: BaseException) -> str:
    if isinstance(err, EOFError):
        return "the compressed stream ends early (the .gz file is truncated)"
    if isinstance(err, zlib.error) or type(err).__name__ == "BadGzipFile":
        return f"the .gz file is corrupt or not gzip ({err})"
    return f"{type(err).__name__}: {err}"


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


# ------------------------------------------------------------------------------------- normalization


def _media_list(
    raw: dict[str, Any], single: str, plural: str, ctx: tuple[str, int, str | None]
) -> tuple[tuple[str, ...], Problem | None]:
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
    if not isinstance(items, list) or not all(
        isinstance(p, str) and p.strip() and "\x00" not in p for p in items
    ):
        return (), Problem(
            "invalid_media_field",
            f"{locate(file, index, rid, key)}: expected a path or a list of paths, got {_short(value)}; "
            f'write e.g. "{key}": "folder/x.jpg" or ["a.jpg", "b.jpg"]',
            file,
            index,
            rid,
            key,
        )
    return tuple(items), None


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


def _default_stem(file: str) -> str:
    return Path(file).name.split(".")[0]


def id_stems(files: Iterable[str]) -> dict[str, str]:
    """The stem of the ids generated for each file's id-less records (``<stem>-<index>``).

    A file's name without its extensions (``train.json.gz`` -> ``train``); when files of one split
    share that name (``a/train.json``, ``b/train.json``), the shortest trailing paths that tell them
    apart (``a/train``, ``b/train``), so that generated ids never collide.
    """
    files = list(dict.fromkeys(str(f) for f in files))
    return dict(zip(files, distinct_names(files, _default_stem)))


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
        generated = f"{stem if stem is not None else _default_stem(file)}-{index}"
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
) -> tuple[Record | None, list[Problem]]:
    """Normalize one raw item into a :class:`Record`, or return the structural problems that prevent it.

    Structural problems: ``invalid_record``, ``invalid_conversations``, ``invalid_turn``,
    ``invalid_media_field``. Content rules (roles, order, placeholders, media) are in
    :mod:`llava_hf.validate`. Never mutates ``value``. ``position``: the sample's place in a pack
    (an id-less sample's generated id ends with it).
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
    if PACK_KEY in value:  # a key of the record's own would be taken for (or replaced by) the marker
        return None, [
            Problem(
                "invalid_record",
                f"{locate(file, index, rid, PACK_KEY)}: the key {PACK_KEY!r} is llava-hf's own (it marks "
                f"the samples of a pack); rename it",
                file,
                index,
                rid,
                PACK_KEY,
            )
        ]
    ctx = (file, index, rid)
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
    if problems:
        return None, problems
    known = {"id", conv_key, "image", "images", "video", "videos"}
    extra = {k: v for k, v in value.items() if k not in known}
    record = Record(
        id=rid,
        conversations=turns,
        images=images,
        videos=videos,
        source=source if source is not None else Path(file).name,
        extra=extra,
        file=file,
        index=index,
        layout=layout,
    )
    return record, []


def is_pack(value: Any) -> bool:
    """A packed item: a non-empty list of objects (anything else that is not an object is invalid)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def iter_records(
    path: str | os.PathLike[str], *, source: str | None = None, stem: str | None = None, **kwargs: Any
) -> Iterator[tuple[Record | None, list[Problem]]]:
    """Read and normalize every record of a file: ``(record or None, structural problems)`` per item.

    ``stem`` names the ids generated for records without one (see :func:`id_stems`).

    A file-level problem is one ``(None, [invalid_json problem with index None])`` at the end.
    Packed items (a list of samples) give one record per sample, with the pack in ``extra``.
    """
    return records_from_items(iter_items(path, **kwargs), source=source, stem=stem)


def records_from_items(
    items: Iterable[RawItem], *, source: str | None = None, stem: str | None = None
) -> Iterator[tuple[Record | None, list[Problem]]]:
    """:func:`iter_records` over items already read by :func:`iter_items` (parsed once, used twice)."""
    for item in items:
        if item.error is not None:
            if isinstance(item, RawProblem):
                problem = Problem(item.code, item.error, item.file, item.index, item.id, item.field)
            else:
                problem = Problem("invalid_json", item.error, item.file, item.index)
            yield None, [problem]
            continue
        assert item.index is not None
        if is_pack(item.value):
            for position, sample in enumerate(item.value):
                record, problems = normalize(
                    sample, file=item.file, index=item.index, source=source, stem=stem, position=position
                )
                if record is not None:
                    record = replace(record, extra={**record.extra, PACK_KEY: [item.index, position]})
                yield record, problems
            continue
        yield normalize(item.value, file=item.file, index=item.index, source=source, stem=stem)
