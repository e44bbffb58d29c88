"""How far a reader has come in its input files (:class:`ReadMeter`), and their sizes: for progress bars."""

from __future__ import annotations

import gzip
import os
from typing import Any

__all__ = ["ReadMeter", "file_size"]


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
