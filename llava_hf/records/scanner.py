"""The streaming scanner of a top-level JSON array: one element at a time, with its place in the file."""

from __future__ import annotations

import codecs
import functools
import json
import os
import zlib
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InputFileError
from ..jsontext import (
    SURROGATE_ESCAPE,
    Defect,
    FlaggingDecoder,
    Walk,
    find_defect,
    in_new_thread,
)

_CHUNK = 1 << 20
_MAX_RECORD_CHARS = 512 << 20


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


class _BadBytes(Exception):
    """Bytes that are not UTF-8, with their absolute byte offset in the message."""


def _read_error(err: BaseException) -> str:
    if isinstance(err, EOFError):
        return "the compressed stream ends early (the .gz file is truncated)"
    if isinstance(err, zlib.error) or type(err).__name__ == "BadGzipFile":
        return f"the .gz file is corrupt or not gzip ({err})"
    return f"{type(err).__name__}: {err}"
