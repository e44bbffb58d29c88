"""What Pillow's PNG chunk handlers do with a chunk before ``IDAT`` (for :mod:`llava_hf.media.images`):
the text memory a chunk adds, or None where the handler raises. Read in Pillow 11.0, 12.0 and 13.0's
``PngImagePlugin``, as the module that uses it says."""

from __future__ import annotations

import zlib
from typing import Any


def _png_chunk_text_memory(cid: bytes, s: memoryview, mode: str, png: Any) -> int | None:
    """What Pillow's handler for ``cid`` adds to its text memory, or None when the handler raises."""
    length = len(s)
    if cid == b"tRNS":
        if mode in ("1", "L", "I;16", "RGB") and length < (6 if mode == "RGB" else 2):
            return None
        return 0
    if cid == b"gAMA":
        return 0 if length >= 4 else None
    if cid == b"cHRM":
        return 0 if length == 32 else None  # Pillow 13 wants >= 32, 11 and 12 a multiple of 4
    if cid == b"sRGB":
        return 0 if length >= 1 else None
    if cid == b"pHYs":
        return 0 if length >= 9 else None
    if cid == b"tEXt":
        key, _, value = bytes(s).partition(b"\x00")
        return len(value) if key else 0
    if cid == b"zTXt":
        key, _, value = bytes(s).partition(b"\x00")
        if value and value[0] != 0:
            return None  # SyntaxError: unknown compression method
        inflated = _png_inflate(png, value[1:])
        if inflated is None:
            return None
        return len(inflated[1]) if key else 0
    if cid == b"iTXt":
        return _png_itxt_text_memory(bytes(s), png)
    if cid == b"iCCP":
        raw = bytes(s)
        method = raw.find(b"\x00") + 1
        if method >= length or raw[method] != 0:
            return None  # IndexError, or SyntaxError: unknown compression method
        return None if _png_inflate(png, raw[method + 1 :]) is None else 0
    return 0  # PLTE, eXIf: read, never refused


def _png_inflate(png: Any, data: bytes) -> tuple[bool, bytes] | None:
    """Pillow's size-limited inflate: (True, text); (False, b'') on a zlib error, which Pillow ignores;
    None when Pillow raises (the text is larger than ``PngImagePlugin.MAX_TEXT_CHUNK``)."""
    try:
        return True, png._safe_zlib_decompress(data)
    except zlib.error:
        return False, b""
    except ValueError:
        return None


def _png_itxt_text_memory(s: bytes, png: Any) -> int | None:
    """Pillow's iTXt handler: returns early (nothing counted) on every malformation but a text that
    inflates beyond ``MAX_TEXT_CHUNK``."""
    key, sep, rest = s.partition(b"\x00")
    if not sep or len(rest) < 2:
        return 0
    compressed, method, parts = rest[0], rest[1], rest[2:].split(b"\x00", 2)
    if len(parts) < 3:
        return 0
    lang, tkey, value = parts
    if compressed:
        if method != 0:
            return 0
        inflated = _png_inflate(png, value)
        if inflated is None:
            return None
        if not inflated[0]:
            return 0
        value = inflated[1]
    try:
        key.decode("latin-1")
        lang.decode("utf-8")
        tkey.decode("utf-8")
        return len(value.decode("utf-8"))
    except UnicodeError:
        return 0
