"""Each media file checked once per run: one open, fstat and read per distinct file, verdicts cached.

:class:`MediaChecks` is what :class:`~llava_hf.validate.Validator` asks about a record's media paths.
The first time a ``(kind, root, path)`` is seen, its file is opened without following a symlink
(``O_NOFOLLOW``, ``O_NONBLOCK``), ``fstat``-ed (it must be a regular file), and, for the cheap image
check, its first :data:`HEAD` bytes read and walked by :func:`~llava_hf._imagecheck.quick_image_size`
(the whole file when the header does not settle it). The verdict -- the reason it does not open, or
None -- is kept for every later reference to the same path: a LLaVA mixture names each COCO image
tens of times.

Anything the fast path does not settle goes through the code that judged every reference before:
a file that does not open this way (missing, a symlink, a folder, a FIFO, no permission) is judged
by :func:`~llava_hf.media.resolve_media` with ``check_file=True`` at every reference (its problems
name the record), and an image the header walk is not sure about, a video, and every file under
``deep`` by :func:`~llava_hf.media.files.check_image` / :func:`~llava_hf.media.files.check_video` on its path. So
the problems, their codes and messages are those of the per-reference checks. Under ``deep``, a JPEG
or PNG is first decoded from its bytes, read in one call (as ``build`` decodes it); only a failure is
decoded again from its path, for its reason.

Memory: at most :attr:`MediaChecks.LIMIT` verdicts are kept (about 250 bytes each); past it the cache
starts again empty, which costs time, never a verdict.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from ..problems import Problem
from .audio import check_audio
from .files import (
    MediaKind,
    MediaReadError,
    MediaRoots,
    check_image,
    check_video,
    inspect_image,
    open_media,
    read_media,
    resolve_media,
)
from .images import quick_image_size
from .remote import is_remote_media, remote_problem

#: The readability check of each media kind.
_CHECKS = {"image": check_image, "video": check_video, "audio": check_audio, "frame": check_image}

__all__ = ["HEAD", "MediaChecks"]

#: Bytes read first from each image: a JPEG header up to SOS fits in it but for huge EXIF/ICC segments.
HEAD: Final = 1 << 16

_JPEG_SOI: Final = b"\xff\xd8\xff"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"

#: A file the fast path does not judge: ask resolve_media(check_file=True) at each reference.
_SLOW: Final = "\x00slow"


class MediaChecks:
    """The media checks of one run in one process: each path resolved, each file judged, once."""

    LIMIT = 1 << 18

    def __init__(self, roots: MediaRoots, *, deep: bool = False) -> None:
        self.roots = roots
        self.deep = deep
        #: (kind, root, path) -> (full path, verdict): None (opens), a reason, or _SLOW
        self._seen: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._roots: dict[tuple[str, str], str] = {}
        #: a record's own http(s) media fetched (allow_remote_media), and their bytes
        self.fetched = 0
        self.fetched_bytes = 0

    def root(self, kind: MediaKind, json_file: str) -> str:
        root = self._roots.get((kind, json_file))
        if root is None:
            root = self._roots[(kind, json_file)] = self.roots.root_for(kind, json_file)
        return root

    def resolve(
        self, path: str, kind: MediaKind, *, file: str, index: int, id: str, field: str
    ) -> tuple[str | None, Problem | None]:
        """What ``resolve_media(..., check_file=True)`` returns for this reference."""
        key = (kind, self.root(kind, file), path)
        seen = self._seen.get(key)
        if seen is not None and seen[1] is not _SLOW:
            return seen[0], None
        if seen is None:
            full, problem = resolve_media(
                path, kind, self.roots, file=file, index=index, id=id, field=field, check_file=False
            )
            if problem is not None or full is None:
                return full, problem
            if "://" not in full:
                verdict = self._judge(kind, full)
            else:
                verdict, error = self._judge_url(kind, full, remote=is_remote_media(path))
                if error is not None and is_remote_media(path):  # said at once: not fetched again
                    return None, remote_problem(path, kind, error, file=file, index=index, id=id, field=field)
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()
            self._seen[key] = (full, verdict)
            if verdict is not _SLOW:
                return full, None
        return resolve_media(path, kind, self.roots, file=file, index=index, id=id, field=field)

    def reason(self, kind: MediaKind, json_file: str, path: str, full: str) -> str | None:
        """Why the resolved file ``full`` of ``path`` does not open (None: it does), judged once."""
        seen = self._seen.get((kind, self.root(kind, json_file), path))
        if seen is not None and seen[0] == full and seen[1] is not _SLOW:
            return seen[1]
        if "://" in full:
            verdict, _ = self._judge_url(kind, full, remote=is_remote_media(path))
            return "its bytes could not be read" if verdict is _SLOW else verdict
        return _CHECKS[kind](full, deep=self.deep)

    def _judge(self, kind: MediaKind, full: str) -> str | None:
        """The file's verdict, or _SLOW when it is not a regular file this process can open."""
        try:
            fd = open_media(full)
        except (OSError, ValueError):
            return _SLOW
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return _SLOW
            if kind in ("image", "frame") and not self.deep:
                data = os.read(fd, min(HEAD, st.st_size) or 1)  # no 64 KB buffer for a 1 KB file
                if quick_image_size(data) is not None:
                    return None
                if len(data) < st.st_size:  # PNG checksums to IEND, a header longer than HEAD
                    data += _read_rest(fd, st.st_size - len(data))
                    if quick_image_size(data) is not None:
                        return None
            elif kind in ("image", "frame"):
                # --deep: a JPEG or PNG decoded from its bytes, read in one call (Pillow reading the
                # path makes dozens of small reads); a failure is judged again on the path below, so
                # that its reason reads as before
                data = _read_rest(fd, st.st_size)
                if data[:3] == _JPEG_SOI or data[:8] == _PNG_MAGIC:
                    if inspect_image(full, deep=True, data=data)[0] is None:
                        return None
        except OSError:
            return _SLOW
        finally:
            os.close(fd)
        return _CHECKS[kind](full, deep=self.deep)

    def _judge_url(
        self, kind: MediaKind, full: str, *, remote: bool
    ) -> tuple[str | None, MediaReadError | None]:
        """A URL's verdict on its bytes, read once through fsspec (``remote``: a record's own http(s) URL,
        within ``max_remote_bytes``); (_SLOW, the error) when they cannot be read."""
        roots = self.roots
        limit = roots.max_remote_bytes if remote else None
        try:
            data = read_media(full, max_bytes=limit, timeout=roots.remote_timeout)
        except MediaReadError as err:
            return _SLOW, err
        if remote:
            self.fetched += 1
            self.fetched_bytes += len(data)
        if kind == "image":
            return inspect_image(full, deep=self.deep, data=data)[0], None
        return _CHECKS[kind](full, deep=self.deep, data=data), None


def _read_rest(fd: int, size: int) -> bytes:
    parts = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)
