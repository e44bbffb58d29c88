"""The sizes of the media files records name, for planning's estimate of a shard's output bytes."""

from __future__ import annotations

import os
import posixpath
from typing import Any

from .remote import is_remote_media, is_url, join_under, url_fs, url_size

__all__ = ["MediaSizes"]


class MediaSizes:
    """The sizes of the media files records name, for planning's estimate of a shard's output bytes.

    ``os.stat`` once per distinct path (a bounded cache: records often reuse an image of a record
    near them). A path resolves against its root as the reader resolves a relative path, without the
    reader's checks (symlinks, the root's bounds): this is an estimate, and the reader judges every
    file. Under a URL root the sizes come from a listing of the file's folder, one per folder (an object
    store lists 1,000 keys a request where it would answer one request per file); under an ``http(s)``
    root, which cannot be listed, from each file's ``HEAD``. A missing file, a record's URL, and an
    absolute path (unless ``allow_outside_root``) count 0.
    """

    CACHE_LIMIT = 1 << 16

    def __init__(self, allow_outside_root: bool = False) -> None:
        self.allow_outside_root = allow_outside_root
        self._cache: dict[str, int] = {}
        self._listed: dict[str, dict[str, int]] = {}  # a URL folder -> its files' sizes by name

    @staticmethod
    def prefix(root: str) -> str | None:
        """What :meth:`of_record` takes for a root: the root ending in a separator (``/`` for a URL)."""
        if is_url(root):
            return root.rstrip("/") + "/"
        return root if root.endswith(os.sep) else root + os.sep

    def of_record(
        self,
        value: dict[str, object],
        image_prefix: str | None,
        video_prefix: str | None,
        audio_prefix: str | None = None,
    ) -> int:
        """The bytes of the media a raw record names (``image(s)``, ``video(s)``, ``audio(s)``)."""
        total = 0
        for key, prefix in (
            ("image", image_prefix),
            ("images", image_prefix),
            ("video", video_prefix),
            ("videos", video_prefix),
            ("audio", audio_prefix),
            ("audios", audio_prefix),
        ):
            paths = value.get(key)
            if paths is None or prefix is None:
                continue
            if isinstance(paths, str):
                total += self.size(prefix, paths)
            elif isinstance(paths, list):
                for path in paths:
                    if isinstance(path, str):
                        total += self.size(prefix, path)
                    elif isinstance(path, list):  # a video given as its frames
                        total += sum(self.size(prefix, p) for p in path if isinstance(p, str))
        return total

    def size(self, prefix: str, path: str) -> int:
        """The size of ``path`` under the root ``prefix`` (see :meth:`prefix`); 0 when it does not count."""
        full = prefix + path
        size = self._cache.get(full)
        if size is not None:
            return size
        size = 0
        if is_url(prefix):
            url = join_under(prefix, path)
            if url is None:
                size = 0
            elif is_remote_media(url):
                size = url_size(url) or 0
            else:
                folder, name = posixpath.split(url)
                size = self._listing(folder).get(name, 0)
        elif "://" not in path:
            if os.path.isabs(path) or path.startswith("~"):
                full = os.path.expanduser(path) if self.allow_outside_root else ""  # else never written
            if full:
                try:
                    size = os.stat(full).st_size
                except (OSError, ValueError):  # missing (not written: counts 0), a NUL in the name
                    pass
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[prefix + path] = size
        return size

    def _listing(self, folder: str) -> dict[str, int]:
        """The sizes of the files in the URL ``folder`` by name ({} when it cannot be listed)."""
        listed = self._listed.get(folder)
        if listed is None:
            listed = {}
            try:
                fs, inner = url_fs(folder)
                entries: list[dict[str, Any]] = fs.ls(inner, detail=True)
            except ImportError:
                raise
            except Exception:  # a size for planning: unknown is an answer
                entries = []
            for entry in entries:
                if entry.get("type") == "file" and entry.get("size") is not None:
                    listed[posixpath.basename(str(entry["name"]).rstrip("/"))] = int(entry["size"])
            if len(self._listed) >= self.CACHE_LIMIT:
                self._listed.clear()
            self._listed[folder] = listed
        return listed
