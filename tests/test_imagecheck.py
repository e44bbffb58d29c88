"""quick_image_ok: the fast path is taken for normal JPEGs and PNGs, and it never says yes where Pillow's
``Image.open`` + ``verify()`` says no (checked against Pillow itself on corrupted real and generated files).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from llava_hf.media import images as _imagecheck
from llava_hf.media.images import quick_image_ok, quick_image_size
from tests.fixtures.media import REAL, gif_bytes

# --------------------------------------------------------------------------------------------- oracles


def pillow_size(data: bytes) -> tuple[int, int] | None:
    """What llava_hf.media.files.check_image does without ``deep`` (any exception is a refusal): the size
    Pillow gives the image it accepts, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
                im.verify()
    except Exception:
        return None
    return size


def pillow_accepts(data: bytes) -> bool:
    return pillow_size(data) is not None


def assert_never_more_lenient(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's EXIF parser warns about corrupt EXIF, as in Pillow
        quick = quick_image_ok(data)
        size = quick_image_size(data)
        # The walk itself must not rely on quick_image_size's catch-all for malformed data.
        assert _imagecheck._verdict(memoryview(data)) == size
    assert quick == (size is not None)
    if quick:
        # the size the card reports for built images is Pillow's own
        assert pillow_size(data) == size, f"quick_image_ok said yes, Pillow refuses: {data[:64]!r}..."


# ----------------------------------------------------------------------------------------------- seeds


def photo(seed: int = 0, size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A small photo-like image (smooth colour fields plus noise, as benchmarks/corpus.py draws them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC
    )
    arr = np.asarray(low, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return im if mode == "RGB" else im.convert(mode)


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Camera"  # Make
    exif[0x0112] = 1  # Orientation
    exif[0x011A] = 300.0  # XResolution
    exif[0x011B] = 300.0
    exif[0x0128] = 2  # ResolutionUnit: inch
    return exif.tobytes()


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """The JPEG with one more segment right after SOI."""
    return jpeg[:2] + jpeg_segment(marker, payload) + jpeg[2:]


def photoshop_payload() -> bytes:
    resolution = struct.pack(">IHHIHH", 72 << 16, 1, 1, 72 << 16, 1, 1)
    resources = b"8BIM" + struct.pack(">H", 0x03ED) + b"\x00\x00" + struct.pack(">I", 16) + resolution
    resources += b"8BIM" + struct.pack(">H", 0x0404) + b"\x03abc" + struct.pack(">I", 3) + b"xyz\x00"
    return b"Photoshop 3.0\x00" + resources


def png_chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data))


def adam7_png(size: tuple[int, int] = (37, 23), seed: int = 0) -> bytes:
    """An interlaced RGB PNG (Pillow reads but does not write Adam7)."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in passes for row in arr[y0::dy, x0::dx])
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png_chunks(data: bytes) -> list[tuple[bytes, int, int, int]]:
    """(type, start, data start, data end) of the chunks (best effort on damaged data)."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], pos, pos + 8, min(pos + 8 + length, len(data))))
        pos += 12 + length
    return out


def split_idat(png: bytes, size: int) -> bytes:
    """The PNG with its image data cut into IDAT chunks of ``size`` bytes (as libpng writes them)."""
    chunks = list(png_chunks(png))
    data = b"".join(png[body:end] for cid, _, body, end in chunks if cid == b"IDAT")
    out = [png[:8]]
    for cid, start, _, end in chunks:
        if cid == b"IDAT":
            if data:
                out += [png_chunk(b"IDAT", data[i : i + size]) for i in range(0, len(data), size)]
                data = b""
        else:
            out.append(png[start : end + 4])
    return b"".join(out)


@functools.cache
def jpeg_seeds() -> dict[str, bytes]:
    im = photo(1)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    seeds = {
        "baseline": encode(im, "JPEG", quality=85),
        "progressive": encode(im, "JPEG", quality=75, progressive=True),
        "exif": encode(im, "JPEG", exif=exif_bytes()),
        "exif_and_xmp": encode(im, "JPEG", exif=exif_bytes(), xmp=b'<x tiff:Orientation="6"/>'),
        "icc": encode(im, "JPEG", icc_profile=icc),
        "icc_in_chunks": encode(im, "JPEG", icc_profile=icc * 30),  # > 64 KB: several APP2 segments
        "restart_intervals": encode(im, "JPEG", restart_marker_blocks=4),
        "grayscale": encode(photo(2, mode="L"), "JPEG"),
        "cmyk": encode(photo(3, mode="CMYK"), "JPEG"),  # with an Adobe APP14 segment
        "subsampling_444": encode(im, "JPEG", subsampling=0),
        "subsampling_420_q20": encode(im, "JPEG", quality=20, subsampling=2),
        "quality_100": encode(im, "JPEG", quality=100),
        "comment_and_dpi": encode(im, "JPEG", comment=b"a comment", dpi=(300, 300)),
        "photoshop": with_segment(encode(im, "JPEG"), 0xED, photoshop_payload()),
        "fill_bytes": encode(im, "JPEG").replace(b"\xff\xdb", b"\xff\xff\xff\xdb", 1),
    }
    for path in sorted(REAL.glob("*.jpg")):
        seeds[f"real_{path.name}"] = path.read_bytes()
    return seeds


@functools.cache
def png_seeds() -> dict[str, bytes]:
    im = photo(4)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a title")
    info.add_text("Comment", "zipped " * 40, zip=True)
    info.add_itxt("Author", "é" * 10, lang="fr", tkey="Auteur")
    info.add_itxt("XML:com.adobe.xmp", "<x/>" * 20, zip=True)
    return {
        "rgb": encode(im, "PNG"),
        "rgba": encode(im.convert("RGBA"), "PNG"),
        "palette_transparency": encode(im.convert("P"), "PNG", transparency=3),
        "grayscale_transparency": encode(im.convert("L"), "PNG", transparency=7),
        "gray_16bit": encode(im.convert("I;16"), "PNG"),
        "rgb_16bit": png_16bit_rgb(),
        "bilevel": encode(im.convert("1"), "PNG"),
        "rgb_transparency": encode(im, "PNG", transparency=(1, 2, 3)),
        "metadata": encode(im, "PNG", pnginfo=info, dpi=(96, 96), icc_profile=icc, exif=exif_bytes()),
        "interlaced": adam7_png(),
        "small_idat_chunks": split_idat(encode(im, "PNG"), 1024),
    }


def png_16bit_rgb() -> bytes:
    arr = np.random.default_rng(5).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    ihdr = struct.pack(">IIBBBBB", 30, 20, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------- the fast path


@pytest.mark.parametrize("name", sorted(jpeg_seeds()))
def test_normal_jpegs_take_the_fast_path(name: str) -> None:
    data = jpeg_seeds()[name]
    assert pillow_accepts(data)
    assert quick_image_ok(data)
    assert quick_image_size(data) == pillow_size(data)


@pytest.mark.parametrize("name", sorted(png_seeds()))
def test_normal_pngs_take_the_fast_path(name: str) -> None:
    data = png_seeds()[name]
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # the generated files really are images
    assert pillow_accepts(data)
    assert quick_image_ok(data)
    assert quick_image_size(data) == pillow_size(data)


def test_corpus_photos_take_the_fast_path() -> None:
    """Photo-like JPEGs at COCO sizes and the corpus' quality range, as benchmarks/corpus.py draws them."""
    for i, size in enumerate(((640, 480), (480, 640), (640, 427), (500, 375))):
        assert quick_image_size(encode(photo(10 + i, size), "JPEG", quality=78 + 4 * i)) == size


def test_other_formats_are_left_to_pillow() -> None:
    im = photo(6)
    others = {
        "gif": gif_bytes(),
        "webp": encode(im, "WEBP"),
        "bmp": encode(im, "BMP"),
        "tiff": encode(im, "TIFF"),
        "apng": encode(im, "PNG", save_all=True, append_images=[photo(7)]),
        "mpo": encode(im, "MPO", save_all=True, append_images=[photo(8)]),
    }
    for name, data in others.items():
        assert pillow_accepts(data), name
        assert not quick_image_ok(data), name
    for data in (b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"not an image", bytes(1000)):
        assert not quick_image_ok(data)


def test_a_gif_named_jpg_is_sniffed_not_named() -> None:
    """The content decides: a GIF is never judged by the JPEG walk, whatever the caller thinks it is."""
    assert not quick_image_ok(gif_bytes()) and pillow_accepts(gif_bytes())


def test_memoryview_and_bytearray_give_the_same_answers() -> None:
    base = jpeg_seeds()["baseline"]
    samples = [*jpeg_seeds().values(), *png_seeds().values(), base[:300], base[:-2], gif_bytes()]
    for data in samples:
        expected = quick_image_ok(data)
        assert quick_image_ok(bytearray(data)) == expected
        assert quick_image_ok(memoryview(data)) == expected
        buffer = bytearray(b"\x00" * 37 + data + b"\xff" * 41)  # a slice of a larger reusable buffer
        view = memoryview(buffer)[37 : 37 + len(data)]
        assert quick_image_ok(view) == expected
        view.release()
        buffer.extend(b"grows")  # the check released every view it made: the buffer can be reused
        if len(data) % 4 == 0 and data:
            assert quick_image_ok(memoryview(data).cast("I")) == expected  # read as raw bytes
    assert not quick_image_ok(memoryview(base)[::2])  # not contiguous: not a file's bytes


class _Incomparable:
    def __lt__(self, other: object) -> bool:
        raise RuntimeError("a limit that cannot be compared")

    __le__ = __gt__ = __ge__ = __lt__


def test_a_surprise_is_a_no_and_releases_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any error inside (here from a strange MAX_IMAGE_PIXELS) means "ask Pillow", never an exception."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", _Incomparable())
    buffer = bytearray(jpeg_seeds()["baseline"] + b"spare")
    view = memoryview(buffer)[:-5]
    assert not quick_image_ok(view)
    view.release()
    buffer.extend(b"grows")  # no view made by the check survived its exception


def test_max_image_pixels_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    jpeg, png = jpeg_seeds()["baseline"], png_seeds()["rgb"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 64)
    assert quick_image_ok(jpeg) and quick_image_ok(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 64 - 1)  # Pillow warns: left to Pillow
    assert not quick_image_ok(jpeg) and not quick_image_ok(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert quick_image_ok(jpeg) and quick_image_ok(png)


def test_huge_dimensions_are_left_to_pillow() -> None:
    jpeg = bytearray(jpeg_seeds()["baseline"])
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"  # 65535 x 65535: a decompression bomb for Pillow
    assert not pillow_accepts(bytes(jpeg)) and not quick_image_ok(jpeg)
    png = png_seeds()["rgb"]
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    huge = png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]
    assert not pillow_accepts(huge) and not quick_image_ok(huge)


class _RefusingImageFile(ImageFile.ImageFile):
    format = "REFUSING"

    def _open(self) -> None:
        raise ValueError("this plugin claims every file and refuses it")


def test_a_plugin_registered_earlier_that_claims_the_data_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image.open asks the plugins in registration order: a claim by an earlier one is Pillow's business."""
    samples = (jpeg_seeds()["baseline"], png_seeds()["rgb"])
    Image.preinit()
    monkeypatch.setattr(Image, "ID", ["REFUSING", *Image.ID])
    monkeypatch.setitem(Image.OPEN, "REFUSING", (_RefusingImageFile, lambda prefix: True))
    for data in samples:
        assert not pillow_accepts(data)  # ValueError from the first plugin that claimed the data
        assert not quick_image_ok(data)
    monkeypatch.setitem(Image.OPEN, "REFUSING", (_RefusingImageFile, lambda prefix: False))
    for data in samples:
        assert pillow_accepts(data) and quick_image_ok(data)


def test_load_truncated_images_keeps_the_guarantee(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOAD_TRUNCATED_IMAGES only makes Pillow's open/verify more lenient: a yes stays right."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for data in (*jpeg_seeds().values(), *png_seeds().values()):
        assert quick_image_ok(data)
        for cut in (len(data) // 3, len(data) - 13):
            assert_never_more_lenient(data[:cut])


# ------------------------------------------------------------------ every failure mode, and its neighbours


def with_sof(jpeg: bytes, payload: bytes) -> bytes:
    """The JPEG with its frame header's payload replaced."""
    start = jpeg.index(b"\xff\xc0")
    end = start + 2 + int.from_bytes(jpeg[start + 2 : start + 4], "big")
    return jpeg[:start] + jpeg_segment(0xC0, payload) + jpeg[end:]


def sof_payload(
    bits: int = 8, height: int = 64, width: int = 96, layers: int = 3, extra: bytes = b""
) -> bytes:
    entries = b"".join(bytes((i + 1, 0x11, 0)) for i in range(layers))
    return struct.pack(">BHHB", bits, height, width, layers) + entries + extra


def tiff_ifd(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header and one IFD of (tag, type, count, 4-byte value) entries."""
    body = b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<IH", 8, len(entries)) + body + b"\x00\x00\x00\x00"


def with_exif(jpeg: bytes, tiff: bytes) -> bytes:
    return with_segment(jpeg, 0xE1, b"Exif\x00\x00" + tiff)


def with_chunk(
    png: bytes, cid: bytes, data: bytes, *, crc: int | None = None, after_idat: bool = False
) -> bytes:
    """The PNG with one more chunk after IHDR (or before IEND), with a right or given checksum."""
    chunk = png_chunk(cid, data)
    if crc is not None:
        chunk = chunk[:-4] + struct.pack(">I", crc)
    at = png.rindex(b"IEND") - 4 if after_idat else 33
    return png[:at] + chunk + png[at:]


def with_ihdr(
    png: bytes, width: int = 96, height: int = 64, fields: bytes = b"\x08\x02\x00\x00\x00"
) -> bytes:
    return png[:8] + png_chunk(b"IHDR", struct.pack(">II", width, height) + fields) + png[33:]


BOMB = zlib.compress(b"\x00" * (PngImagePlugin.MAX_TEXT_CHUNK + 1))


@functools.cache
def refused_by_pillow() -> dict[str, bytes]:
    """One file per way Pillow's open/verify fails on an otherwise good JPEG or PNG."""
    jpeg, png = jpeg_seeds()["baseline"], png_seeds()["rgb"]
    unit = (0x0128, 3, 1, b"\x02\x00\x00\x00")  # ResolutionUnit: inch
    idat = png.index(b"IDAT") - 4
    iend = png.rindex(b"IEND") - 4
    return {
        "jpeg: a marker that is none": jpeg[:2] + b"\xff\x42" + jpeg[2:],
        "jpeg: a segment past the end": jpeg[:30],
        "jpeg: no frame header": jpeg.replace(jpeg[jpeg.index(b"\xff\xc0") :][:19], b""),
        "jpeg: 12-bit samples": with_sof(jpeg, sof_payload(bits=12)),
        "jpeg: 2 components": with_sof(jpeg, sof_payload(layers=2)),
        "jpeg: a partial component entry": with_sof(jpeg, sof_payload(extra=b"\x04")),
        "jpeg: a frame header cut short": with_sof(jpeg, sof_payload()[:5]),
        "jpeg: zero width": with_sof(jpeg, sof_payload(width=0)),
        "jpeg: a quantization table cut short": with_segment(jpeg, 0xDB, bytes(64)),
        "jpeg: a 16-bit quantization table cut short": with_segment(jpeg, 0xDB, b"\x10" + bytes(64)),
        "jpeg: a JFIF header without its version": with_segment(jpeg, 0xE0, b"JFIF\x00\x01"),
        "jpeg: an Adobe header without its version": with_segment(jpeg, 0xEE, b"Adobe\x00"),
        "jpeg: an ICC chunk without its sequence": with_segment(jpeg, 0xE2, b"ICC_PROFILE\x00\x01"),
        "jpeg: a Photoshop resource cut before its name": with_segment(
            jpeg, 0xED, b"Photoshop 3.0\x008BIM\x03\xed"
        ),
        "jpeg: an empty text EXIF resolution": with_exif(jpeg, tiff_ifd([unit, (0x011A, 2, 1, bytes(4))])),
        "jpeg: a one-letter EXIF resolution": with_exif(
            jpeg, tiff_ifd([unit, (0x011A, 2, 2, b"7\x00\x00\x00")])
        ),
        "png: IHDR cut short": png[:8] + png_chunk(b"IHDR", png[16:28]) + png[33:],
        "png: an unknown bit depth": with_ihdr(png, fields=b"\x03\x00\x00\x00\x00"),
        "png: an unknown filter method": with_ihdr(png, fields=b"\x08\x02\x00\x01\x00"),
        "png: zero height": with_ihdr(png, height=0),
        "png: IDAT first": png[:8] + png[33:],
        "png: IEND before IDAT": with_chunk(png, b"IEND", b""),
        "png: a short RGB transparency": with_chunk(png, b"tRNS", b"\x00\x01\x00\x02"),
        "png: a short grey transparency": with_chunk(
            png_seeds()["grayscale_transparency"][:33] + png[33:], b"tRNS", b"\x07"
        ),
        "png: a short gamma": with_chunk(png, b"gAMA", b"\x00\x00\x01"),
        "png: short chromaticities": with_chunk(png, b"cHRM", bytes(31)),
        "png: an empty sRGB": with_chunk(png, b"sRGB", b""),
        "png: short physical dimensions": with_chunk(png, b"pHYs", bytes(8)),
        "png: zTXt with an unknown compression": with_chunk(
            png, b"zTXt", b"key\x00\x01" + zlib.compress(b"x")
        ),
        "png: zTXt inflating too far": with_chunk(png, b"zTXt", b"key\x00\x00" + BOMB),
        "png: iTXt inflating too far": with_chunk(png, b"iTXt", b"key\x00\x01\x00en\x00key\x00" + BOMB),
        "png: iCCP with an unknown compression": with_chunk(
            png, b"iCCP", b"sRGB\x00\x01" + zlib.compress(b"x")
        ),
        "png: iCCP without its compression byte": with_chunk(png, b"iCCP", b"sRGB\x00"),
        "png: iCCP inflating too far": with_chunk(png, b"iCCP", b"sRGB\x00\x00" + BOMB),
        "png: a chunk type that is none": with_chunk(png, b"ab c", b"x"),
        "png: a chunk type that is none after IDAT": with_chunk(png, b"ab c", b"x", after_idat=True),
        "png: a wrong checksum before IDAT": with_chunk(png, b"tEXt", b"k\x00v", crc=0),
        "png: a wrong checksum after IDAT": with_chunk(png, b"tEXt", b"k\x00v", crc=0, after_idat=True),
        "png: a wrong IDAT checksum": png[: idat + 8] + bytes((png[idat + 8] ^ 1,)) + png[idat + 9 :],
        "png: a chunk header cut short": with_chunk(png, b"tEXt", b"k\x00v")[:40],
        "png: a chunk past the end": with_chunk(png, b"tEXt", b"k\x00v")[:43],
        "png: a checksum cut short": with_chunk(png, b"tEXt", b"k\x00v")[:46],
        "png: no IEND": png[:iend],
        "png: IEND's header cut short": png[: iend + 7],
        "png: APNG frame control out of order": with_chunk(png, b"fcTL", bytes(3) + b"\x05" + bytes(22)),
    }


@functools.cache
def accepted_by_pillow() -> dict[str, bytes]:
    """Unusual files Pillow opens and verifies, which the mirror accepts as well (it is not a blanket no)."""
    jpeg, png = jpeg_seeds()["baseline"], png_seeds()["rgb"]
    return {
        "jpeg: fill bytes, stuffed zeros, RST/SOI/EOI markers between segments": (
            jpeg[:2] + b"\xff\xff\xff\x00\xff\xd0\xff\xd8\xff\xd9" + jpeg[2:]
        ),
        "jpeg: junk between segments": jpeg[:2] + jpeg_segment(0xFE, b"c") + b"\x12\x34" + jpeg[2:],
        "jpeg: a JFIF header with its version only": with_segment(jpeg, 0xE0, b"JFIF\x00\x01\x02"),
        "jpeg: an ICC chunk with its sequence only": with_segment(jpeg, 0xE2, b"ICC_PROFILE\x00\x01\x01"),
        "jpeg: a Photoshop resource cut in its size": with_segment(
            jpeg, 0xED, b"Photoshop 3.0\x008BIM\x03\xed\x00\x00\x00\x10"
        ),
        "jpeg: a short Photoshop resolution": with_segment(
            jpeg, 0xED, b"Photoshop 3.0\x008BIM\x03\xed\x00\x00\x00\x00\x00\x04abcd"
        ),
        "jpeg: EXIF that is not TIFF": with_exif(jpeg, b"not a tiff header"),
        "jpeg: EXIF without a resolution unit": with_exif(
            jpeg, tiff_ifd([(0x011A, 3, 1, b"\x05\x00\x00\x00")])
        ),
        "jpeg: EXIF with a 0/0 resolution": with_exif(
            jpeg,
            tiff_ifd([(0x0128, 3, 1, b"\x02\x00\x00\x00"), (0x011A, 5, 1, b"\x26\x00\x00\x00")]) + bytes(8),
        ),
        "jpeg: an empty quantization segment": with_segment(jpeg, 0xDB, b""),
        "jpeg: a lossless frame header": with_sof(jpeg, sof_payload()).replace(b"\xff\xc0", b"\xff\xc3", 1),
        "png: zTXt with a broken stream": with_chunk(png, b"zTXt", b"key\x00\x00not zlib"),
        "png: iTXt with an unknown compression, or bad UTF-8": (
            with_chunk(
                with_chunk(png, b"iTXt", b"k\x00\x01\x05en\x00k\x00x"), b"iTXt", b"k\x00\x00\x00\x00\x00\xff"
            )
        ),
        "png: tEXt without a separator": with_chunk(png, b"tEXt", b"just a key"),
        "png: iCCP with a broken stream": with_chunk(png, b"iCCP", b"sRGB\x00\x00not zlib"),
        "png: unknown ancillary and private chunks": with_chunk(
            with_chunk(png, b"bKGD", bytes(6)), b"prVt", b"x"
        ),
        "png: any transparency with an alpha channel": with_chunk(png_seeds()["rgba"], b"tRNS", b"\x01"),
        "png: a wrong IEND checksum": png[:-4] + b"\x00\x00\x00\x00",
        "png: data after IEND": png + b"trailing bytes",
        "png: chromaticities, gamma, sRGB, dimensions": with_chunk(
            with_chunk(with_chunk(with_chunk(png, b"cHRM", bytes(32)), b"gAMA", bytes(4)), b"sRGB", b"\x00"),
            b"pHYs",
            bytes(9),
        ),
    }


@pytest.mark.parametrize("name", sorted(refused_by_pillow()))
def test_every_way_pillow_refuses_is_left_to_pillow(name: str) -> None:
    data = refused_by_pillow()[name]
    assert not pillow_accepts(data)
    assert not quick_image_ok(data)
    assert_never_more_lenient(data)


@pytest.mark.parametrize("name", sorted(accepted_by_pillow()))
def test_unusual_files_pillow_accepts_are_accepted(name: str) -> None:
    data = accepted_by_pillow()[name]
    assert pillow_accepts(data)
    assert quick_image_ok(data)


def test_the_png_text_memory_limit_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    png = with_chunk(
        with_chunk(png_seeds()["rgb"], b"tEXt", b"a\x00" + b"x" * 60),
        b"zTXt",
        b"b\x00\x00" + zlib.compress(b"y" * 60),
    )
    assert quick_image_ok(png)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 100)
    assert not pillow_accepts(png) and not quick_image_ok(png)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 120)
    assert pillow_accepts(png) and quick_image_ok(png)


# --------------------------------------------------------------------------- exhaustive small corruptions


def every_truncation_and_single_byte_change(data: bytes) -> None:
    """Every cut of the first 2 KB, and every byte of the first 1 KB set to 0x00 and to 0xFF."""
    for cut in range(min(len(data), 2048)):
        assert_never_more_lenient(data[:cut])
    for i in range(min(len(data), 1024)):
        for value in (0x00, 0xFF):
            if data[i] != value:
                assert_never_more_lenient(data[:i] + bytes((value,)) + data[i + 1 :])


@pytest.mark.parametrize(
    "name", ["baseline", "progressive", "exif", "icc", "cmyk", "photoshop", "real_2.jpg"]
)
def test_every_truncation_and_single_byte_change_of_a_jpeg(name: str) -> None:
    every_truncation_and_single_byte_change(jpeg_seeds()[name])


@pytest.mark.parametrize("name", ["rgb", "metadata", "small_idat_chunks"])
def test_every_truncation_and_single_byte_change_of_a_png(name: str) -> None:
    data = png_seeds()[name]
    every_truncation_and_single_byte_change(data)
    assert not quick_image_ok(data[: data.rindex(b"IEND") - 4 + 7])  # IEND header cut short
    assert quick_image_ok(data[: data.rindex(b"IEND") + 4])  # Pillow stops at IEND's header


# ---------------------------------------------------------------------------------------- random damage


def _pos(rng: random.Random, data: bytes | bytearray) -> int:
    """A position, most often in the header region."""
    limit = len(data) if rng.random() < 0.25 else min(len(data), rng.choice((32, 200, 1200)))
    return rng.randrange(max(limit, 1))


def generic_damage(rng: random.Random, data: bytes) -> bytes:
    """Truncate, overwrite, flip, insert, delete, or write special 16/32-bit values."""
    d = bytearray(data)
    if len(d) < 8:
        return data + bytes(rng.randrange(256) for _ in range(rng.randrange(3)))
    kind = rng.randrange(7)
    i = _pos(rng, d)
    if kind == 0:
        del d[i:]
    elif kind == 1:
        d[i] = rng.choice((0x00, 0xFF, rng.randrange(256)))
    elif kind == 2:
        d[i] ^= 1 << rng.randrange(8)
    elif kind == 3:
        d[i:i] = bytes(rng.choice((0x00, 0xFF, rng.randrange(256))) for _ in range(rng.randrange(1, 6)))
    elif kind == 4:
        del d[i : i + rng.randrange(1, 6)]
    elif kind == 5:
        d[i : i + 2] = rng.choice(
            (b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\xff\xff", b"\xff\x00", b"\xff\xd9")
        )
    else:
        d[i : i + 4] = rng.choice(
            (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00")
        )
    return bytes(d)


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every marker segment from SOI to SOS included (best effort on damaged data)."""
    out, q = [], 2
    while q + 4 <= len(data) and data[q] == 0xFF:
        end = q + 2 + int.from_bytes(data[q + 2 : q + 4], "big")
        out.append((q, min(end, len(data))))
        if data[q + 1] == 0xDA or end <= q + 2:
            break
        q = end
    return out


_APP_SIGNATURES = (
    (0xE0, b"JFIF\x00"),
    (0xE1, b"Exif\x00\x00"),
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00"),
    (0xE2, b"ICC_PROFILE\x00"),
    (0xE2, b"FPXR\x00"),
    (0xE2, b"MPF\x00"),
    (0xED, b"Photoshop 3.0\x00"),
    (0xED, b"Photoshop 3.0\x008BIM"),
    (0xEE, b"Adobe"),
)


def crafted_segment(rng: random.Random) -> bytes:
    """A segment of a random kind, often with a known signature and a short or odd payload."""
    kind = rng.randrange(6)
    tail = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 5, 9, 14, 20))))
    if kind == 0:
        marker, signature = rng.choice(_APP_SIGNATURES)
        if signature.startswith(b"Photoshop") and rng.random() < 0.5:
            signature = photoshop_payload()[: rng.randrange(14, len(photoshop_payload()) + 1)]
        if signature.startswith(b"Exif") and rng.random() < 0.5:
            exif = exif_bytes()
            signature += exif[: rng.randrange(len(exif) + 1)]
        return jpeg_segment(marker, signature + tail)
    if kind == 1:  # a frame header: bits, size, components, entries
        bits, layers = rng.choice((8, 8, 12, 0)), rng.choice((1, 3, 4, 2, 0))
        size = struct.pack(">HH", rng.choice((1, 64, 0, 65535)), rng.choice((1, 96, 0, 65535)))
        entries = bytes(rng.randrange(256) for _ in range(rng.choice((3 * layers, 3 * layers + 1, 2))))
        return jpeg_segment(
            rng.choice((0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xDE)),
            bytes((bits,)) + size + bytes((layers,)) + entries,
        )
    if kind == 2:  # quantization tables, 8- or 16-bit, maybe short
        tables = b"".join(
            bytes((rng.choice((0, 1, 0x10, 0x11, 0xF0)),)) + bytes(rng.choice((64, 128, 63, 127)))
            for _ in range(rng.randrange(1, 3))
        )
        return jpeg_segment(0xDB, tables[: len(tables) - rng.choice((0, 0, 1))])
    if kind == 3:  # any marker with any payload
        return jpeg_segment(rng.randrange(0xC0, 0xFF), tail)
    if kind == 4:  # markers without a payload, fill bytes, stuffed zero, junk
        return rng.choice(
            (
                b"\xff\xd8",
                b"\xff\xd9",
                b"\xff\xd0",
                b"\xff\xc8",
                b"\xff\xf0",
                b"\xff\xff",
                b"\xff\x00",
                b"\x00",
                b"\x12\x34",
            )
        )
    return bytes((0xFF, rng.randrange(0x01, 0xC0))) + b"\x00\x04\x00\x00"  # not a marker


def jpeg_damage(rng: random.Random, data: bytes) -> bytes:
    """Damage that keeps the segment structure plausible: lengths, payloads, order, crafted segments."""
    segments = jpeg_segments(data)
    if not segments:
        return generic_damage(rng, data)
    start, end = rng.choice(segments)
    kind = rng.randrange(6)
    if kind == 0:  # a new length field
        length = rng.choice((0, 1, 2, 3, end - start - 3, end - start - 1, end - start + 1, 0xFFFF))
        return data[: start + 2] + struct.pack(">H", length % 0x10000) + data[start + 4 :]
    if kind == 1:  # a payload byte changed, or the payload cut short, length fixed
        payload = bytearray(data[start + 4 : end])
        if payload and rng.random() < 0.5:
            payload[rng.randrange(len(payload))] = rng.choice(
                (0, 1, 2, 3, 4, 8, 12, 16, 0xFF, rng.randrange(256))
            )
        else:
            del payload[rng.randrange(len(payload) + 1) :]
        return data[:start] + jpeg_segment(data[start + 1], bytes(payload)) + data[end:]
    if kind == 2:  # a segment dropped, or duplicated
        return data[:start] + data[end:] if rng.random() < 0.5 else data[:end] + data[start:end] + data[end:]
    if kind == 3 and len(segments) > 1:  # two segments swapped
        (a0, a1), (b0, b1) = sorted(rng.sample(segments, 2))
        return data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]
    return data[:start] + crafted_segment(rng) + data[start:]  # something new before this segment


_CHUNK_TYPES = (
    *(b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf", b"PLTE"),
    *(b"IHDR", b"IEND", b"IDAT", b"acTL", b"fcTL", b"fdAT", b"bKGD", b"prVt", b"ab c", b"\x00\x00\x00\x00"),
)


def crafted_chunk(rng: random.Random) -> bytes:
    cid = rng.choice(_CHUNK_TYPES)
    body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 4, 6, 9, 13, 31, 32, 33))))
    if cid in (b"zTXt", b"iTXt", b"iCCP") and rng.random() < 0.7:
        text = rng.choice((b"x" * 10, b"\x00" * 2_000_000, bytes(range(256))))  # 2 MB > MAX_TEXT_CHUNK
        packed = zlib.compress(text)[: None if rng.random() < 0.7 else 5]
        head = {b"zTXt": b"key\x00", b"iTXt": b"key\x00\x01", b"iCCP": b"name\x00"}[cid]
        body = head + rng.choice((b"\x00", b"\x01")) + (b"en\x00tk\x00" if cid == b"iTXt" else b"") + packed
    elif cid in (b"tEXt", b"iTXt") and rng.random() < 0.5:
        body = rng.choice((b"", b"k", b"k\x00", b"\x00v")) + body
    return png_chunk(cid, body)


def png_damage(rng: random.Random, data: bytes) -> bytes:
    """Damage with valid checksums (so the chunk handlers, not just the CRC check, are exercised)."""
    chunks = png_chunks(data)
    if not chunks:
        return generic_damage(rng, data)
    cid, start, body, end = rng.choice(chunks)
    kind = rng.randrange(5)
    if kind == 0:  # a chunk's data changed or cut, checksum fixed
        payload = bytearray(data[body:end])
        if payload and rng.random() < 0.6:
            payload[rng.randrange(len(payload))] = rng.choice((0, 1, 2, 3, 4, 6, 8, 16, 0xFF))
        else:
            del payload[rng.randrange(len(payload) + 1) :]
        return data[:start] + png_chunk(cid, bytes(payload)) + data[end + 4 :]
    if kind == 1:  # a different header: bits, colour type, compression, filter, interlace, size
        w, h = rng.choice((0, 1, 96, 2**31, 2**32 - 1)), rng.choice((0, 1, 64, 70_000))
        fields = (rng.choice((1, 2, 4, 8, 16, 3)), rng.choice((0, 2, 3, 4, 6, 1)), rng.choice((0, 1)))
        ihdr = struct.pack(">IIBBBBB", w, h, *fields, rng.choice((0, 0, 1)), rng.choice((0, 1, 2)))
        return data[:8] + png_chunk(b"IHDR", ihdr[: rng.choice((13, 13, 12))]) + data[33:]
    if kind == 2:  # a chunk dropped or duplicated
        return data[:start] + data[end + 4 :] if rng.random() < 0.5 else data[: end + 4] + data[start:]
    if kind == 3:  # a wrong length field
        length = rng.choice((0, 1, end - body - 1, end - body + 1, 2**31, 2**32 - 1))
        return data[:start] + struct.pack(">I", length % 2**32) + data[start + 4 :]
    at = 33 if rng.random() < 0.6 and data[12:16] == b"IHDR" else start  # before IDAT: handlers run
    return data[:at] + crafted_chunk(rng) + data[at:]


@functools.cache
def all_seeds() -> dict[str, bytes]:
    return {
        **{f"jpeg_{k}": v for k, v in jpeg_seeds().items()},
        **{f"png_{k}": v for k, v in png_seeds().items()},
    }


def damaged(rng: random.Random, name: str, steps: int) -> bytes:
    data = all_seeds()[name]
    damage: Callable[[random.Random, bytes], bytes] = jpeg_damage if name.startswith("jpeg") else png_damage
    for _ in range(steps):
        data = damage(rng, data) if rng.random() < 0.7 else generic_damage(rng, data)
    return data


@settings(max_examples=2500)
@given(
    name=st.sampled_from(sorted(all_seeds())),
    rng=st.randoms(use_true_random=False),
    steps=st.integers(1, 3),
)
def test_never_more_lenient_than_pillow_on_damaged_files(name: str, rng: random.Random, steps: int) -> None:
    assert_never_more_lenient(damaged(rng, name, steps))


@settings(max_examples=500)
@given(data=st.binary(max_size=64), jpeg=st.booleans())
def test_never_more_lenient_than_pillow_on_arbitrary_bytes_after_a_signature(data: bytes, jpeg: bool) -> None:
    assert_never_more_lenient((b"\xff\xd8\xff" if jpeg else b"\x89PNG\r\n\x1a\n") + data)
