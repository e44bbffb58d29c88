"""Media files: resolve paths inside their roots, check that they open, probe videos.

Security: a path from a JSON file is joined to its root (``--image-folder``/``--video-folder``/``--audio-folder``, by
default the JSON file's folder) and must stay inside it after symlinks are resolved. Absolute paths,
URLs and ``..`` escapes are refused as ``media_outside_root`` unless the user allows it: a JSON file
from an untrusted source must not pull ``/etc/passwd`` or ``~/.ssh`` into a published dataset. A root may be
an fsspec URL (``s3://``, ``file://``, ``https://``): a path is joined to it and may not leave it. A record's
own ``http(s)://`` media is ``remote_media`` unless ``allow_remote_media`` (:mod:`llava_hf.media.remote`).
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import stat
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

from ..errors import UsageError
from ..problems import Problem, locate
from .images import quick_image_size
from .remote import (
    DEFAULT_MAX_REMOTE_BYTES,
    DEFAULT_REMOTE_TIMEOUT,
    FetchError,
    fetch_url,
    is_remote_media,
    is_url,
    redact_url,
    resolve_remote,
    resolve_under_url,
)

__all__ = [
    "MediaKind",
    "MediaReadError",
    "MediaRoots",
    "RemoteFetchError",
    "VideoInfo",
    "check_image",
    "check_video",
    "inspect_image",
    "media_size",
    "open_media",
    "probe_video",
    "read_media",
    "resolve_media",
]

#: ``frame``: an image that is a frame of a video given as its frames (``"videos": [["f1.jpg", ...]]``):
#: judged as an image, resolved against the videos' folder
MediaKind = Literal["image", "video", "audio", "frame"]


@dataclass(frozen=True)
class MediaRoots:
    """The folders relative media paths resolve against, and whether paths may leave them.

    The real paths of the roots and of the folders under them are looked up once per instance (media
    share few folders, and stat calls are slow on some file systems). Each build, shard and validation
    run makes its own instance, so a folder changed between two runs of one process (a folder replaced
    by a symlink that leaves the root) is judged afresh.
    """

    image_folder: str | None = None
    video_folder: str | None = None
    allow_outside_root: bool = False
    audio_folder: str | None = None
    #: fetch a record's own http(s) media (within the limits below) instead of refusing it as remote_media
    allow_remote_media: bool = False
    max_remote_bytes: int = DEFAULT_MAX_REMOTE_BYTES
    remote_timeout: float = DEFAULT_REMOTE_TIMEOUT
    #: ``realpath`` of a root (key ``(root,)``) and of a folder under a real root (``(real_root, head)``)
    _real: dict[tuple[str, ...], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_remote_bytes, int) or self.max_remote_bytes < 1:
            raise UsageError(
                f"max_remote_bytes={self.max_remote_bytes!r} is not a positive number of bytes",
                hint=f"for example max_remote_bytes={DEFAULT_MAX_REMOTE_BYTES}",
            )
        if not isinstance(self.remote_timeout, (int, float)) or not self.remote_timeout > 0:
            raise UsageError(
                f"remote_timeout={self.remote_timeout!r} is not a positive number of seconds",
                hint=f"for example remote_timeout={DEFAULT_REMOTE_TIMEOUT:g}",
            )

    def root_for(self, kind: MediaKind, json_file: str) -> str:
        folder = (
            self.image_folder
            if kind == "image"
            else self.video_folder
            if kind in ("video", "frame")
            else self.audio_folder
        )
        if folder is not None:
            return folder
        if json_file.startswith("file://"):  # its folder, as a local path (an explicit file:// root is not)
            json_file = json_file[len("file://") :]
        elif is_url(json_file):  # the folder of a JSON file on object storage: a URL root
            return json_file.rsplit("/", 1)[0]
        return os.path.dirname(os.path.abspath(json_file))


def resolve_media(
    path: str,
    kind: MediaKind,
    roots: MediaRoots,
    *,
    file: str,
    index: int,
    id: str,
    field: str,
    check_file: bool = True,
) -> tuple[str | None, Problem | None]:
    """The absolute path (or URL) of a media file, or a ``media_outside_root``/``missing_media``/
    ``remote_media``/``remote_fetch_failed`` problem.

    With ``check_file=False`` nothing about the file itself is asked of the file system (its folder's
    real path is, once per folder): the caller opens it with :func:`read_media`, which refuses a
    symlink, and calls this again with ``check_file=True`` to judge one. Stat calls are slow on some
    file systems, and the open has to happen anyway.
    """
    root = roots.root_for(kind, file)
    # the Python argument; the CLI shows its flag (llava_hf.cli.cli_text)
    flag = f"{'video' if kind == 'frame' else kind}_folder="
    if "\x00" in path:
        return None, Problem(
            "missing_media",
            f"{locate(file, index, id, field)}: {path!r} is not a valid file name (NUL character)",
            file,
            index,
            id,
            field,
        )
    if is_remote_media(path):
        return resolve_remote(path, kind, roots, file, index, id, field, check_file=check_file)
    if is_url(root) and not (os.path.isabs(path) or path.startswith("~") or "://" in path):
        return resolve_under_url(path, kind, root, file, index, id, field, check_file=check_file)
    if "://" in path or os.path.isabs(path) or path.startswith("~"):
        if not roots.allow_outside_root:
            return None, Problem(
                "media_outside_root",
                f"{locate(file, index, id, field)}: {path!r} is absolute; media paths must be relative to {flag}{root!r}. "
                f"Pass allow_outside_root=True only if you trust this JSON file",
                file,
                index,
                id,
                field,
            )
        full = os.path.expanduser(path)
    else:
        real_root = roots._real.get((root,))
        if real_root is None:
            real_root = roots._real[(root,)] = os.path.realpath(root)
        full = _resolve_under(real_root, path, roots._real, follow=check_file)
        if not roots.allow_outside_root and not _is_under(full, real_root):
            return None, Problem(
                "media_outside_root",
                f"{locate(file, index, id, field)}: {path!r} resolves to {full}, outside {flag}{root!r}. "
                f"Pass allow_outside_root=True only if you trust this JSON file",
                file,
                index,
                id,
                field,
            )
    if "://" in full or not check_file:
        return full, None
    if not os.path.isfile(full):
        hint = f"check {flag} (now {root!r})" if not os.path.exists(full) else "it is not a regular file"
        return None, Problem(
            "missing_media",
            f"{locate(file, index, id, field)}: {kind} {path!r} not found at {full}; {hint}",
            file,
            index,
            id,
            field,
        )
    return full, None


def _is_under(full: str, real_root: str) -> bool:
    """``full`` (normalized, absolute) is ``real_root`` or inside it: component-wise, as commonpath."""
    return full == real_root or full.startswith(
        real_root if real_root.endswith(os.sep) else real_root + os.sep
    )


def _resolve_under(
    real_root: str, path: str, folders: dict[tuple[str, ...], str], *, follow: bool = True
) -> str:
    """``realpath(root/path)`` with the folder part looked up once in ``folders``; only the file itself
    is checked each time (and not at all with ``follow=False``: a symlink is then left for
    :func:`read_media` to refuse)."""
    head, _, name = path.rpartition(os.sep)  # as os.path.split: the name after the last separator
    if name in ("", ".", "..") or (os.altsep and os.altsep in name):
        return os.path.realpath(os.path.join(real_root, path))
    folder = folders.get((real_root, head))
    if folder is None:
        folder = os.path.realpath(os.path.join(real_root, head)) if head else real_root
        folders[(real_root, head)] = folder
    full = folder + name if folder.endswith(os.sep) else folder + os.sep + name
    if not follow:
        return full
    try:
        is_link = stat.S_ISLNK(os.lstat(full).st_mode)
    except OSError:
        return full  # missing: reported by the caller
    return os.path.realpath(full) if is_link else full


class MediaReadError(OSError):
    """A resolved media file could not be read as a regular file (missing, a symlink, a folder...)."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO named like an image must not hang the build (no effect on regular files)
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def open_media(full: str) -> int:
    """A file descriptor of a local media file resolved by :func:`resolve_media`, not yet checked.

    The last path component must not be a symlink (``O_NOFOLLOW``). :func:`media_size` checks that
    the descriptor is a regular file. The caller closes it.
    """
    try:
        return os.open(full, _OPEN_FLAGS)
    except OSError as err:
        raise MediaReadError(err.errno, err.strerror, full) from None


def media_size(fd: int, full: str) -> int:
    """The size of an open media file; :class:`MediaReadError` unless it is a regular file."""
    try:
        st = os.fstat(fd)
    except OSError as err:
        raise MediaReadError(err.errno, err.strerror, full) from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaReadError(0, "not a regular file", full)
    return st.st_size


class RemoteFetchError(MediaReadError):
    """A URL's bytes could not be fetched (too big, too slow, a server or network failure)."""


def read_media(full: str, *, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
    """The bytes of a media file resolved by :func:`resolve_media`, read once.

    A URL is read through fsspec (:func:`~llava_hf.media.remote.fetch_url`; ``max_bytes`` and
    ``timeout`` bound an http(s) fetch): a missing file is :class:`MediaReadError`, a failed fetch
    :class:`RemoteFetchError`.

    The last path component must not be a symlink (``O_NOFOLLOW``) and the file must be regular:
    otherwise :class:`MediaReadError`, and the caller judges the path with
    ``resolve_media(..., check_file=True)`` (a symlink inside the root is fine; one out is not).
    """
    if is_url(full):
        try:
            return fetch_url(full, max_bytes=max_bytes, timeout=timeout)
        except FileNotFoundError:
            raise MediaReadError(errno.ENOENT, "not found", redact_url(full)) from None
        except FetchError as err:
            raise RemoteFetchError(errno.EIO, str(err), redact_url(full)) from None
    fd = open_media(full)
    try:
        media_size(fd, full)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except MediaReadError:
        raise
    except OSError as err:
        raise MediaReadError(err.errno, err.strerror, full) from None
    finally:
        os.close(fd)


def _open_bytes(full: str, data: bytes | memoryview | None) -> io.BytesIO | str:
    return io.BytesIO(data) if data is not None else full


def check_image(full: str, *, deep: bool = False, data: bytes | memoryview | None = None) -> str | None:
    """None if Pillow opens the image (and, with ``deep``, decodes it fully), else the reason.

    A GIF named ``.jpg`` is a readable image: Pillow sniffs the content, not the name. Given the
    bytes, the cheap check first asks :func:`~llava_hf.media.images.quick_image_ok`, which walks JPEG
    and PNG headers as Pillow does at a fraction of its cost and answers only when Pillow certainly
    accepts; anything else goes through Pillow itself.
    """
    return inspect_image(full, deep=deep, data=data)[0]


def inspect_image(
    full: str, *, deep: bool = False, data: bytes | memoryview | None = None
) -> tuple[str | None, tuple[int, int] | None]:
    """:func:`check_image`'s verdict, and the size Pillow gives the image when it opens it."""
    if data is not None and not deep:
        size = quick_image_size(data)
        if size is not None:
            return None, size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(_open_bytes(full, data)) as im:
            size = im.size
            if deep:
                im.load()
            else:
                im.verify()
    except UnidentifiedImageError:
        return "not an image Pillow can identify", None
    except Exception as err:  # damaged files make Pillow raise many types (IndexError, struct.error...)
        return f"{type(err).__name__}: {err}", None
    return None, size


_STILL_IMAGE_DEMUXERS = ("image2",)
#: Image formats ffmpeg demuxes as video: a video only when animated (TGIF-QA's GIFs are videos).
_ANIMATED_IMAGE_DEMUXERS = ("gif", "apng")


def _open_container(full: str, data: bytes | None):  # type: ignore[no-untyped-def]
    import av

    return av.open(io.BytesIO(data) if data is not None else full, mode="r")


def check_video(full: str, *, deep: bool = False, data: bytes | None = None) -> str | None:
    """None if av opens the file with at least one video stream (``deep``: decodes the first frames).

    A still image is not a video whatever its name, although ffmpeg opens it through its ``image2``
    or ``*_pipe`` demuxers.
    """
    import av

    try:
        with _open_container(full, data) as container:
            name = container.format.name
            if name in _STILL_IMAGE_DEMUXERS or name.endswith("_pipe"):
                return f"a still image ({name}), not a video"
            if not container.streams.video:
                return "no video stream"
            if name in _ANIMATED_IMAGE_DEMUXERS:
                frames = sum(1 for _ in itertools.islice(container.decode(video=0), 2))
                if frames < 2:
                    return f"a still image ({name}, one frame), not a video"
                return None
            if deep:
                frames = 0
                for _ in container.decode(video=0):
                    frames += 1
                    if frames >= 3:
                        break
                if frames == 0:
                    return "no frame could be decoded"
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as err:
        return f"{type(err).__name__}: {_naming_the_file(err, full)}"
    return None


def _naming_the_file(err: Exception, full: str) -> str:
    """av's message, naming ``full`` where av read bytes from memory (it says ``input: '<none>'``)."""
    text = str(err)
    if getattr(err, "filename", None) == "<none>":
        text = text.replace(repr("<none>"), repr(full), 1)
    return text


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video probed at build time, stored beside it for reproducible frame sampling."""

    duration: float | None
    fps: float | None
    num_frames: int | None
    width: int
    height: int
    codec: str

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "duration": self.duration,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
        }


def probe_video(full: str, *, data: bytes | None = None) -> VideoInfo:
    """Duration (s), average fps, frame count, size and codec of the first video stream, from headers.

    The frame count comes from the container when it says it (MP4, AVI), otherwise from
    duration × fps, rounded.
    """
    with _open_container(full, data) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate
        fps = float(rate) if rate else None
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * Fraction(stream.time_base))
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        frames = int(stream.frames) if stream.frames else None
        if frames is None and duration is not None and fps is not None:
            frames = round(duration * fps)
        return VideoInfo(
            duration=round(duration, 6) if duration is not None else None,
            fps=round(fps, 6) if fps is not None else None,
            num_frames=frames,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            codec=str(stream.codec_context.name),
        )


def relative_media_path(path: str) -> str:
    """The path kept next to the stored bytes: the record's own relative path, normalized to ``/``."""
    if os.path.isabs(path) or "://" in path:
        return path
    if "//" in path or path.startswith("./") or "/./" in path or path.endswith(("/", "/.")) or path == ".":
        return Path(path).as_posix()  # normalized as pathlib does (repeated and "." parts dropped)
    return path
