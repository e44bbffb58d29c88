"""A PNG contact sheet of a built folder's first images, byte-for-byte deterministic."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..build.parquet import leaf_index
from ..errors import UsageError
from ..utils.logging import get_logger
from .folder import _buffered, _open_folder

logger = get_logger(__name__)


def _add_thumbs(thumbs: list[Any], column: pa.Array, max_images: int, thumb: int, path: Path) -> None:
    """Append a thumbnail of the first image of each row of an ``images`` column, up to ``max_images``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    for row in column:
        if len(thumbs) >= max_images:
            return
        items = row.values if row.is_valid else None
        if items is None or len(items) == 0:
            continue
        data = items.field("bytes")[0].as_py()
        if not data:
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (thumb, thumb))
                small = ImageOps.exif_transpose(im).convert("RGB")
                small.thumbnail((thumb, thumb), Image.Resampling.BICUBIC)
                thumbs.append(small)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            logger.debug("preview: skipping an unreadable image in %s: %s", path, e)


def make_preview(
    folder: str | Path, *, max_images: int = 8, thumb: int = 128, data_urls: Mapping[str, str] | None = None
) -> bytes | None:
    """A PNG contact sheet of the first image of the first rows, or ``None`` when there are no images.
    ``data_urls``: the URL of each data file ``folder``'s manifest names, when they are not in it (see
    :func:`~llava_hf.card.make_card`).

    The bytes depend only on the data and the arguments, so re-running on unchanged data gives the same
    file (and an unchanged re-push uploads nothing).
    """
    from PIL import Image

    if max_images < 1 or thumb < 8:
        raise UsageError(
            f"make_preview needs max_images >= 1 and thumb >= 8 (got max_images={max_images}, thumb={thumb})"
        )
    built = _open_folder(folder, data_urls)
    thumbs: list[Image.Image] = []
    for path in built.files:
        with contextlib.closing(_buffered(built, path)) as reader:
            leaf = leaf_index(reader, "images", "bytes")
            if leaf is not None:
                groups = range(reader.num_row_groups)
                for batch in reader.iter_batches(max_images, row_groups=groups, column_indices=[leaf]):
                    _add_thumbs(thumbs, batch.column(0), max_images, thumb, path)
                    if len(thumbs) >= max_images:
                        break
        if len(thumbs) >= max_images:
            break
    if not thumbs:
        return None
    pad = 4
    cols = min(len(thumbs), 4)
    rows = math.ceil(len(thumbs) / cols)
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, rows * (thumb + pad) + pad), (245, 245, 245))
    for i, im in enumerate(thumbs):
        x = pad + (i % cols) * (thumb + pad) + (thumb - im.width) // 2
        y = pad + (i // cols) * (thumb + pad) + (thumb - im.height) // 2
        sheet.paste(im, (x, y))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False, compress_level=9)
    return out.getvalue()
