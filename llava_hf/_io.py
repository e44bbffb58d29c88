"""Atomic output: write to a temporary sibling, rename on success, remove on failure.

Nothing that looks complete is ever left behind by an interrupted or failed run. Also how far a
reader has come in its input files (:class:`ReadMeter`), for progress bars.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ReadMeter", "atomic_dir", "atomic_text_file", "file_size"]


def file_size(path: str) -> int | None:
    """The size in bytes of an input file (local or an fsspec URL); None when it cannot be known."""
    try:
        if "://" not in path:
            return os.path.getsize(path)
        import fsspec

        fs, inner = fsspec.core.url_to_fs(path)
        return int(fs.size(inner))
    except Exception:  # a size for a progress bar: unknown is an answer
        return None


class ReadMeter:
    """How many bytes of its input files a reader has read so far (of a ``.gz``, compressed bytes).

    :func:`llava_hf.records.iter_items` attaches each file it opens and detaches it when done;
    :attr:`position` asks the open file where it is, so reading costs nothing extra. Positions run
    on across files: a progress bar over the input files' total size.
    """

    def __init__(self) -> None:
        self._done = 0  # bytes read of the files detached already
        self._raw: Any = None

    def attach(self, stream: Any) -> None:
        self._raw = stream.fileobj if isinstance(stream, gzip.GzipFile) else stream

    def detach(self) -> None:
        self._done += self._tell()
        self._raw = None

    @property
    def position(self) -> int:
        return self._done + self._tell()

    def _tell(self) -> int:
        raw = self._raw
        if raw is None:
            return 0
        try:
            return int(raw.tell())
        except (OSError, ValueError):  # closed, or a stream that cannot tell
            return 0


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str] | None) -> Iterator[TextIO | None]:
    """Yield a text file that becomes ``path`` only if the block succeeds (None if path is None)."""
    if path is None:
        yield None
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".incomplete", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield ``<path>.incomplete``; on success it replaces ``path``, on failure it is removed."""
    target = Path(path)
    tmp = target.with_name(target.name + ".incomplete")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(target)
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
