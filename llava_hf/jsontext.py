"""What Python's json reads but a record cannot keep, found in the JSON text with its place.

Python's json accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON: RFC 8259 has no such
numbers) and numbers that overflow a float (``1e999`` becomes ``inf``): a build would store them as
null. It accepts lone UTF-16 surrogate escapes (``"\\ud800"``), which are not Unicode text: nothing
can encode them as UTF-8, so a build cannot write them. It fails with a ``ValueError`` on an integer
of more than ``sys.get_int_max_str_digits()`` digits and with a ``RecursionError`` on a value nested
deeper than the interpreter's recursion limit, and neither says where.

The reader decodes with the C scanner as before, through :class:`FlaggingDecoder`, whose hooks note a
non-finite number (they cost nothing on input without floats or constants); a surrogate escape is
looked for in the text (:data:`SURROGATE_ESCAPE`). Only for the rare record where one of these says
there may be something, or where decoding failed, :func:`find_defect` walks the record's text (without
recursion), finds the first defect, its position and the path of keys to it, and where the value ends,
so that reading goes on with the next record.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C scanner's own
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "SURROGATE_ESCAPE",
    "Defect",
    "FlaggingDecoder",
    "Walk",
    "at_full_depth",
    "find_defect",
    "format_path",
    "in_new_thread",
]

#: A surrogate escape that is not half of a pair (``\\ud800`` alone; not ``\\ud83d\\ude00``), as a cheap
#: filter over the text: it also matches after an escaped backslash (``"\\\\ud800"``), which
#: :func:`find_defect` then clears.
SURROGATE_ESCAPE = re.compile(
    r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|[c-fC-F][0-9a-fA-F]{2})"
    # not a low half right after a high one, unless that high one may be text after an escaped
    # backslash ("\\\\ud800\\udc00" is a backslash, "ud800", and a lone low surrogate)
    r"(?<![^\\]\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # left in a decoded string only when unpaired
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_TOKEN = re.compile(
    r"[ \t\n\r]*(?:"
    r'(?P<s>")'
    r"|(?P<o>[\[{])"
    r"|(?P<c>[\]}])"
    r"|(?P<n>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<k>true|false|null)"
    r"|(?P<x>NaN|-?Infinity)"
    r"|(?P<p>[,:]))"
)
_WS = re.compile(r"[ \t\n\r]*")

T = TypeVar("T")


class FlaggingDecoder:
    """A :class:`json.JSONDecoder` that notes, in ``flagged``, a NaN/Infinity or a float that overflows.

    Reset ``flagged`` before each decode. The values are decoded as Python's json always did.
    """

    def __init__(self) -> None:
        self.flagged = False
        decoder = json.JSONDecoder(parse_constant=self._constant, parse_float=self._float)
        self.raw_decode = decoder.raw_decode
        self.decode = decoder.decode

    def _constant(self, name: str) -> float:
        self.flagged = True
        return float(name)

    def _float(self, text: str) -> float:
        value = float(text)
        if value - value != 0:  # inf - inf is nan; 0 for every finite value
            self.flagged = True
        return value


@dataclass(frozen=True)
class Defect:
    """One defect: its code, what it is (the message's body), the fix, its position and path."""

    code: str
    what: str
    fix: str
    at: int
    path: tuple[str | int, ...]


class Walk(NamedTuple):
    """A walk over one value: its first defect, where the value ends (None: not valid JSON there, or
    ``incomplete``: the text ends inside it), and the record's own id when it is a string or integer."""

    defect: Defect | None
    end: int | None
    id: str | None = None
    incomplete: bool = False
    error_at: int | None = None


def format_path(path: tuple[str | int, ...], limit: int = 8) -> str | None:
    """``conversations[1].value``; long paths (a deep nesting) end with ``...``."""
    if not path:
        return None
    out = []
    for k, part in enumerate(path[:limit]):
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(("." if k else "") + safe_text(part))
    return "".join(out) + ("..." if len(path) > limit else "")


def safe_text(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so it can be printed and stored."""
    if _LONE_SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def in_new_thread(fn: Callable[[], T]) -> T:
    """``fn()`` at the bottom of a new thread's stack: its recursion budget does not depend on the caller's."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as err:  # handed to the caller as it is
            outcome.append((False, err))

    thread = threading.Thread(target=run, name="llava-hf-json")
    thread.start()
    thread.join()
    ok, result = outcome[0]
    if not ok:
        raise result
    return result


def at_full_depth(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, again at the bottom of a new thread if it ran out of recursion: json's C encoder
    and decoder recurse once per nesting level, so a value the reader read (in a new thread at worst)
    is written and read again whatever the caller's stack depth (a build's is deeper than validate's)."""
    try:
        return fn(*args)
    except RecursionError:
        return in_new_thread(functools.partial(fn, *args))


def find_defect(
    text: str, pos: int, end: int | None = None, *, deep: bool = False, partial: bool = False
) -> Walk:
    """Walk the JSON value that starts at ``text[pos]`` (whitespace first allowed), up to ``end``.

    ``end``: where the value is known to end (Python's json read it); ``partial``: the text may go on
    past its end (a buffer), so a value cut there is ``incomplete`` rather than not JSON.

    Returns its first defect in text order: a non-finite or overflowing number or a too long integer
    (``invalid_number``), a lone surrogate in a string or a key (``invalid_text``), and with
    ``deep`` (Python's json failed with a ``RecursionError``) the nesting itself (``invalid_json``).
    """
    stop = len(text) if end is None else end
    # the containers around the token: [kind, key or index, start]; and for each, the index of the
    # first container below it whose current key is a string (-1: none), for the nesting's place
    stack: list[list[Any]] = []
    keyed: list[int] = []
    state = "value"
    rid: str | None = None
    defect: Defect | None = None
    deepest: tuple[int, int, tuple[str | int, ...]] = (
        0,
        pos,
        (),
    )  # (depth, position of that value, path): see _too_deep
    while True:
        m = _TOKEN.match(text, pos, stop)
        if partial and end is None:
            if m is None or (m.end() == stop and m.lastgroup in ("n", "k", "x")):
                if m is not None or stop - _skip_ws(text, pos) < 10:
                    # the text ends in or just after a token (a number, a literal) that may go on
                    return Walk(defect, None, rid, incomplete=True)
        if m is None:
            return Walk(defect, None, rid, error_at=_skip_ws(text, pos))
        group = m.lastgroup or ""
        at = m.start(group)
        pos = m.end()
        ch = text[at]
        value_done = False
        if state in ("value", "value_or_close"):
            if group == "o":
                if deep:
                    below = len(stack) - 1
                    keyed.append(
                        keyed[below]
                        if below >= 0 and keyed[below] >= 0
                        else (below if below >= 0 and isinstance(stack[below][1], str) else -1)
                    )
                stack.append([ch, 0 if ch == "[" else None, at])
                state = "value_or_close" if ch == "[" else "key_or_close"
                if deep and len(stack) > deepest[0]:
                    k = keyed[-1]  # the value of a record's field (a sample's in a pack), or the item
                    deepest = (
                        (len(stack), stack[k + 1][2], _path(stack[: k + 1]))
                        if k >= 0
                        else (len(stack), stack[0][2], ())
                    )
                continue
            if group == "c" and state == "value_or_close" and ch == "]":
                _pop(stack, keyed)
                value_done = True
            elif group == "s":
                try:
                    string, pos = scanstring(text, pos, True)
                except ValueError as err:
                    return _bad_string(err, defect, rid, partial and end is None, stop)
                if pos > stop:
                    return Walk(defect, None, rid, error_at=stop)
                if defect is None and _LONE_SURROGATE.search(string):
                    defect = _surrogate(text, at, pos, _path(stack), "string")
                if len(stack) == 1 and stack[0][1] == "id":
                    rid = string
                value_done = True
            elif group == "n":
                if defect is None:
                    defect = _number(m[group], at, _path(stack))
                token = m[group]
                if (
                    len(stack) == 1
                    and stack[0][1] == "id"
                    and token.lstrip("-").isdigit()
                    and len(token) < 100
                ):
                    rid = token
                value_done = True
            elif group == "k":
                value_done = True
            elif group == "x":
                if defect is None:
                    defect = Defect(
                        "invalid_number",
                        f"{m[group]} is not a JSON number (RFC 8259 has none), and a build would store it as null",
                        "write null, or the value as a string",
                        at,
                        _path(stack),
                    )
                value_done = True
            else:
                return Walk(defect, None, rid, error_at=at)
        elif state in ("key", "key_or_close"):
            if group == "s":
                try:
                    key, pos = scanstring(text, pos, True)
                except ValueError as err:
                    return _bad_string(err, defect, rid, partial and end is None, stop)
                if pos > stop:
                    return Walk(defect, None, rid, error_at=stop)
                stack[-1][1] = key
                if defect is None and _LONE_SURROGATE.search(key):
                    defect = _surrogate(text, at, pos, _path(stack), "key")
                state = "colon"
            elif group == "c" and state == "key_or_close" and ch == "}":
                _pop(stack, keyed)
                value_done = True
            else:
                return Walk(defect, None, rid, error_at=at)
        elif state == "colon":
            if group != "p" or ch != ":":
                return Walk(defect, None, rid, error_at=at)
            state = "value"
        else:  # "comma_or_close"
            if group == "p" and ch == ",":
                if stack[-1][0] == "[":
                    stack[-1][1] += 1
                    state = "value"
                else:
                    state = "key"
            elif group == "c" and ch == ("]" if stack[-1][0] == "[" else "}"):
                _pop(stack, keyed)
                value_done = True
            else:
                return Walk(defect, None, rid, error_at=at)
        if value_done:
            if not stack:
                if deep and defect is None:
                    defect = _too_deep(*deepest)
                return Walk(defect, pos, rid)
            state = "comma_or_close"


def _pop(stack: list[list[Any]], keyed: list[int]) -> None:
    stack.pop()
    if keyed:
        keyed.pop()


def _path(stack: list[list[Any]]) -> tuple[str | int, ...]:
    return tuple(frame[1] for frame in stack if frame[1] is not None)


def _too_deep(depth: int, at: int, path: tuple[str | int, ...]) -> Defect:
    return Defect(
        "invalid_json",
        f"a value nested too deeply ({depth} levels; Python's json reads about {sys.getrecursionlimit()})",
        "flatten it, or store it as a JSON string",
        at,
        path,
    )


def _number(token: str, at: int, path: tuple[str | int, ...]) -> Defect | None:
    if "." in token or "e" in token or "E" in token:
        if float(token) - float(token) == 0:
            return None
        shown = token if len(token) <= 24 else token[:20] + "..."
        return Defect(
            "invalid_number",
            f"the number {shown} is out of range (it reads as infinity), and a build would store it as null",
            "write it as a string",
            at,
            path,
        )
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    digits = len(token) - token.startswith("-")
    if limit and digits > limit:
        return Defect(
            "invalid_number",
            f"an integer of {digits} digits, more than Python reads ({limit})",
            "write it as a string",
            at,
            path,
        )
    return None


def _surrogate(text: str, start: int, end: int, path: tuple[str | int, ...], what: str) -> Defect:
    """The first lone surrogate escape of the string literal ``text[start:end]``."""
    at, escape = start, ""
    high: re.Match[str] | None = None  # a high surrogate escape, until a low one follows it
    for m in _ESCAPE.finditer(text, start + 1, end - 1):
        code = int(m[1], 16) if m[1] else -1
        if high is not None:
            if 0xDC00 <= code <= 0xDFFF and m.start() == high.end():
                high = None
                continue
            break
        if 0xD800 <= code <= 0xDBFF:
            high = m
        elif 0xDC00 <= code <= 0xDFFF:
            at, escape = m.start(), m[0]
            break
    if high is not None:
        at, escape = high.start(), high[0]
    return Defect(
        "invalid_text",
        f"the lone UTF-16 surrogate {escape or 'escape'} in a {what} is not Unicode text, and a build "
        f"cannot store it",
        r"write the character itself, or a complete surrogate pair (e.g. \ud83d\ude00 for 😀)",
        at,
        path,
    )


def _bad_string(err: ValueError, defect: Defect | None, rid: str | None, partial: bool, stop: int) -> Walk:
    if str(err).startswith("Unterminated string"):
        return Walk(defect, None, rid, incomplete=partial, error_at=None if partial else stop)
    return Walk(defect, None, rid, error_at=getattr(err, "pos", stop))


def _skip_ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m is not None else pos
