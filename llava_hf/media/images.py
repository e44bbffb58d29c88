"""A fast shortcut for the cheap image check: is it certain that Pillow opens and verifies these bytes?

:func:`quick_image_ok` answers ``True`` only when ``PIL.Image.open(BytesIO(data))`` followed by
``.verify()`` -- the calls of :func:`llava_hf.media.files.check_image` without ``deep`` -- certainly succeeds;
:func:`quick_image_size` then also gives the size Pillow reads from the same header (the dataset card's
image sizes, measured while building).
``False`` means "not sure": the caller then runs Pillow itself, for the verdict and its message. The
shortcut is never more lenient than Pillow; it may be stricter (``False`` for some good images), which
costs only time. It exists because Pillow's marker parser is Python code that costs about 4 times as
much per JPEG (``benchmarks/bench_image_check.py``), and wants a file object (a copy of the bytes).

How it stays equivalent: it walks the file the way Pillow's plugins do, mirrors every check on the
way that can make ``open`` or ``verify`` raise, and answers ``False`` on anything it does not mirror.
The code paths were read in Pillow 11.0, 12.0 and 13.0 (``Image.open``, ``ImageFile``,
``JpegImagePlugin``, ``PngImagePlugin``); under any other Pillow major version it always answers
``False``, and the tests that expect the fast path fail, so that a new Pillow is read before it is
trusted.

- Content is sniffed, never named: ``Image.open`` gives the data to the first registered plugin whose
  ``_accept`` claims its first 16 bytes. The plugins registered before JPEG/PNG are asked at call time
  (a process may have imported more of them); a claim by one of them, or a JPEG/PNG factory that is
  not Pillow's own, means ``False``.
- JPEG: the marker segments are walked by their lengths up to SOS as ``JpegImageFile._open`` does
  (junk, fill bytes, ``FF00`` and segment-less markers between segments, ``no marker found``); every
  segment must be complete (else ``Truncated File Read``), and the handlers' checks are mirrored:
  SOF (8-bit samples, 1/3/4 components, whole component entries), DQT (every table complete), JFIF
  and Adobe headers long enough for their version, ICC_PROFILE chunks long enough for their
  sequence numbers, the Photoshop resource walk. When Pillow would read the DPI from EXIF (no JFIF
  density), Pillow's own EXIF code runs on the collected segments, and any exception it lets
  through (or a warning turned into one) means ``False``. ``False`` too without SOS, with an MPF
  segment (MPO), a segment length below 2 or long runs of junk. Pillow's JPEG ``verify`` decodes
  nothing; neither does this.
- PNG: ``IHDR`` first, the chunks before the first ``IDAT`` with their handlers' checks (lengths of
  tRNS/gAMA/cHRM/sRGB/pHYs, the compression and size limits of zTXt/iTXt/iCCP, the text memory limit,
  read at call time), then the checksum of every chunk up to ``IEND``, as ``PngImageFile.verify``
  does. APNG and chunks whose Pillow handler is not mirrored here mean ``False``.
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` only makes Pillow more lenient, so a ``True`` stays right.
- GIF, WebP and every other format: ``False``.
- The size must be positive and at most ``Image.MAX_IMAGE_PIXELS``, read at call time (above it
  Pillow warns, above twice that it raises ``DecompressionBombError``).

The input may be ``bytes``, a ``bytearray`` or a C-contiguous ``memoryview`` (of any format: its raw
bytes are read). Nothing is copied but small pieces (the 16-byte prefix; EXIF segments, PNG text and
ICC chunks when present), and no view of the data outlives the call: a ``bytearray`` it came from can
be resized afterwards.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from typing import Any, NamedTuple

from ..utils.logging import get_logger
from .png_chunks import _png_chunk_text_memory

__all__ = ["quick_image_ok", "quick_image_size"]

logger = get_logger(__name__)

#: Pillow major versions whose open/verify code paths this module mirrors (read line by line).
_MIRRORED_PILLOW_MAJORS = (11, 12, 13)

_JPEG_SOI = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: How many junk bytes, fill bytes and segment-less markers between segments are followed before
#: giving up (Pillow reads junk byte by byte; real files have none).
_JPEG_MAX_SKIP = 256

# What Pillow's marker loop does with FF m, for each m: a segment (read by its length), then what
# reads no length: a marker without a segment, FF FF (the second 0xFF starts the marker), FF 00
# (skipped), and anything else (SyntaxError: no marker found).
_SKIP, _SOS, _SOF, _DQT, _APP, _COM = range(6)
_NONE, _FILL, _STUFFED, _BAD = range(10, 14)
_JPEG_HEAD = struct.Struct(">BBH").unpack_from  # 0xFF, m, the segment length

_XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_IS_CID = re.compile(rb"\w\w\w\w").match  # as PngImagePlugin.is_cid
_PNG_HEAD = struct.Struct(">I4s").unpack_from  # a chunk's length and type
_PNG_SIZE = struct.Struct(">II").unpack_from  # IHDR's width and height
_PNG_CRC = struct.Struct(">I").unpack_from
#: PNG chunks before IDAT whose Pillow handlers are mirrored below.
_PNG_MIRRORED = frozenset(
    (b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf")
)


def quick_image_ok(data: bytes | bytearray | memoryview) -> bool:
    """True only if Pillow's ``Image.open`` + ``verify()`` certainly accept ``data``; False: ask Pillow.

    See the module docstring for what is mirrored. Never raises: an unexpected error is a ``False``.
    """
    return quick_image_size(data) is not None


def quick_image_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` as Pillow's ``Image.open(...).size`` gives it, when :func:`quick_image_ok`
    is true; None: ask Pillow. Never raises."""
    try:
        with memoryview(data) as raw:
            if not raw.c_contiguous:
                return None
            with raw.cast("B") as view:
                return _verdict(view)
    except Exception as err:  # a surprise is never a verdict: Pillow decides
        logger.debug("quick image check fell back to Pillow: %s: %s", type(err).__name__, err)
        return None


class _Pillow(NamedTuple):
    """The Pillow modules the checks read at call time, and what was derived from them once."""

    image: Any  # PIL.Image
    jpeg: Any  # PIL.JpegImagePlugin
    png: Any  # PIL.PngImagePlugin
    jpeg_plan: tuple[int, ...]  # for every byte m, what Pillow does with marker FF m
    png_handled: frozenset[bytes]  # the chunk types PngStream has a handler for


@functools.cache
def _pillow() -> _Pillow | None:
    """Pillow, when it is a version whose code paths are mirrored here (else None: always ask Pillow)."""
    import PIL
    from PIL import Image, JpegImagePlugin, PngImagePlugin

    try:
        major = int(PIL.__version__.split(".")[0])
    except ValueError:
        return None
    plan = _jpeg_plan(JpegImagePlugin)
    if major not in _MIRRORED_PILLOW_MAJORS or plan is None:
        return None
    handled = (name[len("chunk_") :] for name in dir(PngImagePlugin.PngStream) if name.startswith("chunk_"))
    return _Pillow(
        Image,
        JpegImagePlugin,
        PngImagePlugin,
        plan,
        frozenset(h.encode("ascii") for h in handled if h.isascii()),
    )


def _verdict(d: memoryview) -> tuple[int, int] | None:
    """The check itself, on a 1-D unsigned-byte view (may raise only on Pillow surprises): the size of
    an image Pillow certainly accepts, else None."""
    pil = _pillow()
    if pil is None:
        return None
    if d[:3] == _JPEG_SOI:
        return _jpeg_size(d, pil)
    if d[:8] == _PNG_MAGIC:
        return _png_size(d, pil)
    return None


def _opened_by(pil: _Pillow, fmt: str, factory: object, prefix: bytes) -> bool:
    """Whether ``Image.open`` would hand data with this prefix to ``factory`` first (as ``fmt``)."""
    image = pil.image
    image.preinit()  # what Image.open does for a file object without a name
    for name in image.ID:
        entry = image.OPEN.get(name)
        if entry is None:
            return False  # Image.open would call init() here: other plugins
        if name == fmt:
            return entry[0] is factory
        accept = entry[1]
        if not accept:
            return False
        try:
            claimed = accept(prefix)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # Image.open skips the plugin too (any other error reaches its caller)
        if claimed and not isinstance(claimed, str):
            return False
    return False


def _size_ok(pil: _Pillow, width: int, height: int) -> bool:
    """A positive size within ``Image.MAX_IMAGE_PIXELS`` (read now: users change it)."""
    if width <= 0 or height <= 0:
        return False
    limit = pil.image.MAX_IMAGE_PIXELS
    return limit is None or width * height <= limit


# -- JPEG ------------------------------------------------------------------------------------------


def _jpeg_plan(jpeg: Any) -> tuple[int, ...] | None:
    """For every byte ``m``, what Pillow does with marker ``FF m`` (None: a marker table not understood)."""
    kinds: dict[Any, int] = {
        None: _NONE,
        jpeg.Skip: _SKIP,
        jpeg.SOF: _SOF,
        jpeg.DQT: _DQT,
        jpeg.APP: _APP,
        jpeg.COM: _COM,
    }
    plan = [_BAD] * 256
    plan[0x00], plan[0xFF] = _STUFFED, _FILL
    for code, entry in jpeg.MARKER.items():
        if code >> 8 != 0xFF or code & 0xFF in (0x00, 0xFF):
            return None
        kind = kinds.get(entry[2])
        if kind is None:
            return None
        plan[code & 0xFF] = kind
    if plan[0xDA] != _SKIP:
        return None
    plan[0xDA] = _SOS
    return tuple(plan)


def _jpeg_size(d: memoryview, pil: _Pillow) -> tuple[int, int] | None:
    """Pillow's JpegImageFile._open marker loop up to SOS, with every check of its handlers; the size
    Pillow gives the image (its last SOF's), or None."""
    plan = pil.jpeg_plan
    if not _opened_by(pil, "JPEG", pil.jpeg.jpeg_factory, bytes(d[:16])):
        return None
    n = len(d)
    q = 2  # the 0xFF after FF D8, where Pillow's marker loop starts
    skipped = 0
    size: tuple[int, int] | None = None
    dpi = False
    exif: bytes | None = None
    xmp: bytes | None = None
    while q + 4 <= n:  # SOS needs its length field: nearer the end, Pillow finds no image
        ff, m, length = _JPEG_HEAD(d, q)
        kind = plan[m]
        if ff != 0xFF or kind >= _NONE:
            # Junk is skipped byte by byte, a fill byte starts the marker, FF 00 and markers
            # without a segment (RSTn, SOI, EOI...) are skipped whole.
            if ff == 0xFF and kind == _BAD:
                return None  # SyntaxError: no marker found
            q += 2 if ff == 0xFF and kind != _FILL else 1
            skipped += 1
            if skipped > _JPEG_MAX_SKIP:
                return None
            continue
        end = q + 2 + length
        if length < 2 or end > n:
            # OSError: Truncated File Read; a length below 2 makes Pillow read on from the length field
            return None
        if kind == _SKIP:
            q = end
            continue
        seg = q + 4
        if kind == _DQT:
            p = seg
            while p < end:  # every table complete, else SyntaxError: bad quantization table marker
                p += 65 if d[p] < 16 else 129
                if p > end:
                    return None
        elif kind == _SOF:
            size = _jpeg_sof_size(d, seg, end)
            if size is None:
                return None
        elif kind == _APP:
            app = d[seg:end]  # Pillow's segment bytes (a view: nothing is copied)
            if m == 0xE0:
                if app[:4] == b"JFIF":
                    if len(app) < 7:
                        return None  # struct.error reading the JFIF version
                    if len(app) >= 12 and app[7] in (1, 2):
                        dpi = True
            elif m == 0xE1:
                if app[:6] == b"Exif\x00\x00":
                    exif = bytes(app) if exif is None else exif + bytes(app[6:])
                elif app[: len(_XMP_NS)] == _XMP_NS:
                    xmp = bytes(app[len(_XMP_NS) :])
            elif m == 0xE2:
                if app[:12] == b"ICC_PROFILE\x00":
                    if len(app) < 14:
                        return None  # IndexError when the SOF handler sorts the ICC chunks
                elif app[:4] == b"MPF\x00":
                    return None  # MPO: Pillow parses the MP index and may convert the image
            elif m == 0xED:
                if app[:14] == b"Photoshop 3.0\x00" and not _jpeg_photoshop_ok(app):
                    return None
            elif m == 0xEE:
                if app[:5] == b"Adobe" and len(app) < 7:
                    return None  # struct.error reading the Adobe version
        elif kind == _SOS:
            if size is None or not _size_ok(pil, *size):
                return None  # no frame header: no mode, SyntaxError
            return size if dpi or exif is None or _exif_dpi_ok(exif, xmp) else None
        q = end
    return None


def _jpeg_sof_size(d: memoryview, seg: int, end: int) -> tuple[int, int] | None:
    """The (width, height) of a SOF segment Pillow accepts, else None."""
    n = end - seg
    if n < 6 or d[seg] != 8 or d[seg + 5] not in (1, 3, 4) or (n - 6) % 3:
        return None
    return (d[seg + 3] << 8) | d[seg + 4], (d[seg + 1] << 8) | d[seg + 2]


def _jpeg_photoshop_ok(s: memoryview) -> bool:
    """Pillow's walk over the 8BIM resources of an APP13 segment: it stops quietly on short data
    (struct.error), but refuses the JPEG when the data ends right before a resource name (IndexError)."""
    end = len(s)
    offset = 14
    while s[offset : offset + 4] == b"8BIM":
        offset += 4
        if offset + 2 > end:
            return True
        code = (s[offset] << 8) | s[offset + 1]
        offset += 2
        if offset >= end:
            return False
        offset += 1 + s[offset]
        offset += offset & 1
        if offset + 4 > end:
            return True
        size = int.from_bytes(s[offset : offset + 4], "big")
        offset += 4
        if code == 0x03ED and min(size, end - offset) < 14:
            return True  # struct.error reading ResolutionInfo
        offset += size
        offset += offset & 1
    return True


@functools.cache
def _exif_probe_type() -> type:
    """A stand-in with just what Pillow's ``_read_dpi_from_exif`` and ``getexif`` use."""
    from PIL import Image, JpegImagePlugin

    return type(
        "_ExifProbe",
        (),
        {
            "_exif": None,
            "getexif": Image.Image.getexif,
            "read_dpi": JpegImagePlugin.JpegImageFile._read_dpi_from_exif,
        },
    )


def _exif_dpi_ok(exif: bytes, xmp: bytes | None) -> bool:
    """Run Pillow's own EXIF DPI lookup on the collected segments: it must not raise.

    Pillow reads the DPI from EXIF at open when no JFIF header gave one, and lets some errors of
    its EXIF parser through (IndexError for a one-letter resolution...): its own code decides here.
    """
    probe = _exif_probe_type()()
    probe.info = {"exif": exif} if xmp is None else {"exif": exif, "xmp": xmp}
    try:
        probe.read_dpi()
    except Exception:
        return False
    return True


# -- PNG -------------------------------------------------------------------------------------------


def _png_size(d: memoryview, pil: _Pillow) -> tuple[int, int] | None:
    """Pillow's PngImageFile._open up to the first IDAT, then PngImageFile.verify up to IEND; the size
    from IHDR, or None."""
    png = pil.png
    if not _opened_by(pil, "PNG", png.PngImageFile, bytes(d[:16])):
        return None
    n = len(d)
    pos = 8
    mode = ""
    width = height = 0
    text_memory = 0
    while True:
        if pos + 8 > n:
            return None
        length, cid = _PNG_HEAD(d, pos)
        if not _png_is_cid(cid):
            return None  # SyntaxError: broken PNG file
        if cid == b"IDAT":
            break
        body, end = pos + 8, pos + 8 + length
        if end + 4 > n:
            return None  # OSError: Truncated File Read, or an incomplete checksum
        if pos == 8:
            if cid != b"IHDR" or length != 13:
                return None
            mode = _png_mode(d, body, png)
            width, height = _PNG_SIZE(d, body)
            if not mode or not _size_ok(pil, width, height):
                return None
        elif cid in _PNG_MIRRORED:
            used = _png_chunk_text_memory(cid, d[body:end], mode, png)
            if used is None:
                return None
            text_memory += used
            if text_memory > png.MAX_TEXT_MEMORY:
                return None  # ValueError: Too much memory used in text chunks
        elif cid in pil.png_handled:
            return None  # IHDR again, IEND before IDAT, APNG, or a handler not mirrored here
        if zlib.crc32(d[pos + 4 : end]) != _PNG_CRC(d, end)[0]:
            return None  # SyntaxError: broken PNG file (bad header checksum)
        pos = end + 4
    if not mode:
        return None  # IDAT first: no IHDR
    # PngImageFile.verify: from the first IDAT, the checksum of every chunk up to IEND (IEND's own
    # length and checksum are never read).
    while True:
        if pos + 8 > n:
            return None  # OSError: truncated PNG file, or a chunk type cut short
        length, cid = _PNG_HEAD(d, pos)
        if cid == b"IEND":
            return width, height
        if not _png_is_cid(cid):
            return None
        end = pos + 8 + length
        if end + 4 > n or zlib.crc32(d[pos + 4 : end]) != _PNG_CRC(d, end)[0]:
            return None
        pos = end + 4


def _png_is_cid(cid: bytes) -> bool:
    """PngImagePlugin.is_cid: four of [A-Za-z0-9_] (isalnum first: it is faster than the regex)."""
    return cid.isalnum() or _PNG_IS_CID(cid) is not None


def _png_mode(d: memoryview, body: int, png: Any) -> str:
    """The mode Pillow gives an IHDR, '' when it refuses it (unknown filter method, bits/colour type)."""
    if d[body + 11]:
        return ""
    entry = png._MODES.get((d[body + 8], d[body + 9]))
    return entry[0] if entry else ""
