"""A built output folder as the card reads it: its splits and schema (from the Parquet footers), the
statistics of its rows (read column by column), image sizes from the headers of a sample, the rejected
counts and the mixture summary."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow.parquet.core import ParquetReader

from ..build.layout import REJECTED as _REJECTED
from ..build.layout import read_manifest, split_files
from ..build.parquet import leaf_index, leaf_indices, open_reader
from ..build.stats import CardStats, add_batch, sample_image_sizes, text_column
from ..errors import UsageError
from ..media.images import quick_image_size
from ..media.remote import url_fs
from ..utils.logging import get_logger

logger = get_logger(__name__)

_MIXTURE = "mixture.json"
_SPLIT_ORDER = ("train", "validation", "test")
#: Bytes per read when only the first rows of a row group are wanted (media pages are ~1 MB).
_READ_BUFFER = 256 << 10


@dataclass
class _Split:
    name: str
    files: list[Path]
    num_rows: int
    num_bytes: int
    download_size: int


@dataclass
class _Folder:
    root: Path
    manifest: dict[str, Any]
    splits: list[_Split]
    schema: pa.Schema
    #: where the data files are when not under root: their URL (fsspec) by their path relative to root
    data_urls: Mapping[str, str] | None = None

    @property
    def files(self) -> Iterator[Path]:
        for split in self.splits:
            yield from split.files

    def source(self, path: Path) -> Any:
        """What pyarrow opens to read the data file ``path``: itself, or the file at its URL."""
        if self.data_urls is None:
            return str(path)
        fs, inner = self._remote(path)
        return pa.PythonFile(fs.open(inner, "rb"), mode="r")

    def size(self, path: Path) -> int:
        """The size of the data file ``path`` in bytes."""
        if self.data_urls is None:
            return path.stat().st_size
        fs, inner = self._remote(path)
        return int(fs.size(inner))

    def _remote(self, path: Path) -> tuple[Any, str]:
        assert self.data_urls is not None
        return url_fs(self.data_urls[path.relative_to(self.root).as_posix()])


def _split_key(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER), name)


def _open_folder(folder: str | Path, data_urls: Mapping[str, str] | None = None) -> _Folder:
    """A built folder; ``data_urls``: the URL of each data file its manifest names, by its path relative to
    the folder, when they are not in it (a build into a URL)."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(
            f"{root}: not a folder; make_card needs a built output folder",
            hint="build one with `llava-hf build DATA.json --output-dir OUT`",
        )
    manifest = read_manifest(root)
    manifest_splits = manifest.get("splits")
    built = _Folder(root, manifest, [], pa.schema([]), data_urls)
    if data_urls is None:
        by_split = split_files(root)
    else:
        assert isinstance(manifest_splits, dict)  # a build into a URL writes its manifest first
        by_split = {str(k): [root / f for f in v["files"]] for k, v in manifest_splits.items() if v["files"]}
    for name in sorted(by_split, key=_split_key):
        files = sorted(by_split[name])
        rows = 0
        nbytes = 0
        size = 0
        for path in files:
            with contextlib.closing(open_reader(built.source(path), buffer_size=0)) as reader:
                meta = reader.metadata
                if not built.schema.names:
                    built.schema = reader.schema_arrow
            size += built.size(path)
            rows += meta.num_rows
            nbytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        entry = (manifest_splits or {}).get(name) if isinstance(manifest_splits, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("num_bytes"), int):
            nbytes = entry["num_bytes"]
        built.splits.append(_Split(name, files, rows, nbytes, size))
    return built


def _buffered(built: _Folder, path: Path) -> ParquetReader:
    """A reader of ``path`` whose column chunks are read page by page (a few rows of media read little)."""
    return open_reader(built.source(path), buffer_size=_READ_BUFFER)


def _collect_stats(folder: _Folder) -> CardStats:
    stats = CardStats()
    texts = text_column(folder.schema.names)
    for path in folder.files:
        with contextlib.closing(open_reader(folder.source(path), buffer_size=0)) as reader:
            columns = leaf_indices(reader, (texts, "source"))
            for name, leaf in (
                ("images", "path"),
                ("videos", "path"),
                ("video_frames", "path"),
                ("video_info", "duration"),
                ("audios", "path"),
                ("audio_info", "duration"),
            ):
                index = leaf_index(reader, name, leaf)
                if index is not None:
                    columns.append(index)
            groups = range(reader.num_row_groups)
            for batch in reader.iter_batches(4096, row_groups=groups, column_indices=sorted(columns)):
                add_batch(stats, batch, texts)
    if stats.images:
        _sample_image_sizes(folder, stats)
    return stats


def _sample_image_sizes(folder: _Folder, stats: CardStats) -> None:
    """Width × height of a sample of images (see :func:`sample_image_sizes`), read from their headers."""
    with contextlib.ExitStack() as readers:
        groups: list[tuple[ParquetReader, int]] = []
        for path in folder.files:
            reader = readers.enter_context(contextlib.closing(_buffered(folder, path)))
            meta = reader.metadata
            groups.extend((reader, i) for i in range(meta.num_row_groups) if meta.row_group(i).num_rows)
        sample_image_sizes(stats, groups, _first_sizes)


def _first_sizes(group: tuple[ParquetReader, int], k: int) -> Iterator[tuple[int, int] | None]:
    """The sizes of the first ``k`` images of a row group (None: Pillow cannot open it); only the
    pages that hold them are read (a buffered reader)."""
    reader, index = group
    leaf = leaf_index(reader, "images", "bytes")
    if leaf is None:
        return
    taken = 0
    for chunk in reader.iter_batches(k, row_groups=[index], column_indices=[leaf]):
        for value in pc.list_flatten(chunk.column(0)).field("bytes")[: k - taken]:
            taken += 1
            yield _header_size(value.as_py())
        if taken >= k:
            return


def _header_size(data: bytes | None) -> tuple[int, int] | None:
    """The size Pillow reads from an image's header (as a build's image check does), or None."""
    from PIL import Image, UnidentifiedImageError

    if data is None:
        return None
    size = quick_image_size(data)
    if size is not None:
        return size
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _llava_version(folder: _Folder) -> str:
    from .. import __version__

    return str(folder.manifest.get("llava_hf_version") or __version__)


def _folder_name(root: Path) -> str:
    """The folder as ``load_dataset`` will see it (a build writes it in a working folder, renamed at the end)."""
    from ..utils.output import final_path

    return final_path(root).as_posix()


def _rejected(built: _Folder) -> dict[str, int]:
    counts = built.manifest.get("rejected")
    if isinstance(counts, dict):
        return {str(k): int(v) for k, v in counts.items() if int(v)}
    path = built.root / _REJECTED
    found: Counter[str] = Counter()
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        found[str(json.loads(line).get("code", "unknown"))] += 1
                    except (ValueError, AttributeError):
                        found["unknown"] += 1
    return dict(found)


def _mixture(built: _Folder) -> tuple[str, str]:
    """The mixture summary table (:meth:`llava_hf.mixture.Mixture.to_markdown`) and the manifest's name."""
    from ..errors import LlavaHFError
    from ..mixture import Mixture

    name = built.manifest.get("mixture") or _MIXTURE
    path = built.root / str(name)
    if not path.is_file():
        return "", ""
    try:
        return Mixture.from_file(path).to_markdown(), path.name
    except LlavaHFError as e:
        logger.warning("the card does not summarize the mixture: %s", e)
        return "", ""
