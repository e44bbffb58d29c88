"""Media and folders named by URL: joining a path under a URL root, reading bytes through fsspec, and
fetching a record's own ``http(s)://`` media with a size limit and a timeout.

Two kinds of URL reach the media code. A *URL root* (``--image-folder s3://bucket/images``,
``file:///data/images``, ``https://host/images``) is a folder like any other: a record's relative path is
joined to it and must stay inside it. A *remote media path* is a record whose ``image``/``video``/``audio``
is itself an ``http(s)://`` URL: fetched only when the user allows it (``allow_remote_media``), never more
than ``max_remote_bytes`` and never longer than ``remote_timeout`` seconds.

fsspec's http filesystem needs ``aiohttp`` (the ``remote`` extra): without it an http URL is an
:class:`ImportError` naming the extra. Credentials in a URL (``https://user:token@host/...?sig=...``) are
never put in a message: :func:`redact_url` drops the user part and the query.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Any

from ..problems import Problem, locate

__all__ = [
    "DEFAULT_MAX_REMOTE_BYTES",
    "DEFAULT_REMOTE_TIMEOUT",
    "FetchError",
    "fetch_url",
    "is_remote_media",
    "is_url",
    "join_under",
    "redact_url",
    "remote_problem",
    "resolve_remote",
    "resolve_under_url",
    "url_fs",
    "url_size",
]

#: The most bytes one remote media file may have (``--max-remote-bytes``).
DEFAULT_MAX_REMOTE_BYTES = 50_000_000
#: Seconds one remote fetch may take, connection to last byte (``--remote-timeout``).
DEFAULT_REMOTE_TIMEOUT = 30.0

_CHUNK = 1 << 20


class FetchError(OSError):
    """A URL's bytes could not be fetched: too big, too slow, or the server or network failed."""


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (``scheme://...``), as fsspec reads one."""
    return "://" in path


def is_remote_media(path: str) -> bool:
    """Whether a record's media path is an ``http://``/``https://`` URL (fetched only when allowed)."""
    return path[:8].lower().startswith(("http://", "https://"))


def redact_url(url: str) -> str:
    """``url`` without its user part (``user:token@``) and query (``?sig=...``): fit for a message."""
    if not is_url(url):
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://<url>"
    netloc = parts.netloc.rpartition("@")[2]
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def join_under(root: str, path: str) -> str | None:
    """The URL of the relative ``path`` under the URL ``root``; None if the path is absolute or leaves it.

    The path is normalized as a POSIX path (``a/./b``, ``a/../b``); under an ``http(s)`` root it is
    percent-encoded (a ``#`` or a space in a file name is part of the name, not of the URL's syntax).
    """
    if not path or path.startswith(("/", "\\", "~")) or is_url(path) or "\\" in path:
        return None
    norm = posixpath.normpath(path)
    if norm in (".", "..") or norm.startswith("../"):
        return None
    if is_remote_media(root):
        norm = urllib.parse.quote(norm)
    return root.rstrip("/") + "/" + norm


def _http_fs(timeout: float | None) -> Any:
    """fsspec's http filesystem, every request bounded by ``timeout`` seconds (None: aiohttp's default)."""
    try:
        import aiohttp
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "aiohttp", "remote", "reading http(s) URLs (fsspec's http filesystem)"
        ) from None
    import fsspec

    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["client_kwargs"] = {
            "timeout": aiohttp.ClientTimeout(total=timeout, sock_connect=timeout, sock_read=timeout)
        }
    return fsspec.filesystem("http", **kwargs)


def url_fs(url: str, *, timeout: float | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path it takes (an http URL stays whole)."""
    if is_remote_media(url):
        return _http_fs(timeout), url
    import fsspec

    fs, inner = fsspec.core.url_to_fs(url)
    return fs, inner


def url_size(url: str, *, timeout: float | None = None) -> int | None:
    """The size of the file at ``url`` (fsspec's info), or None when it is unknown or missing."""
    try:
        fs, inner = url_fs(url, timeout=timeout)
        size = fs.info(inner).get("size")
    except ImportError:
        raise
    except Exception:  # a size for planning: unknown is an answer
        return None
    return int(size) if size is not None else None


def fetch_url(url: str, *, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
    """The bytes at ``url``, read through fsspec.

    An http(s) URL is streamed and refused (:class:`FetchError`) past ``max_bytes`` or ``timeout``
    seconds; other filesystems read the whole file. A missing file is :class:`FileNotFoundError`;
    any other failure :class:`FetchError` with the reason (the URL redacted).
    """
    try:
        fs, inner = url_fs(url, timeout=timeout)
        if not is_remote_media(url):
            return bytes(fs.cat_file(inner))
        chunks: list[bytes] = []
        total = 0
        # one streaming GET (block_size=0); a size given skips fsspec's HEAD request, whose failures
        # (a timeout too) it reports as FileNotFoundError
        with fs.open(inner, "rb", block_size=0, size=-1) as f:
            length = getattr(getattr(f, "r", None), "content_length", None)
            if max_bytes is not None and length is not None and length > max_bytes:
                raise FetchError(f"it has {length} bytes, more than the limit of {max_bytes}")
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise FetchError(f"it sends more than the limit of {max_bytes} bytes")
                chunks.append(chunk)
        return b"".join(chunks)
    except (FetchError, FileNotFoundError, ImportError):
        raise
    except TimeoutError:
        raise FetchError(f"it took longer than {timeout} s") from None
    except Exception as err:  # aiohttp's and fsspec's errors: one reason, never a traceback
        reason = str(err).replace(url, redact_url(url)) or type(err).__name__
        if type(err).__name__ in ("ServerTimeoutError", "FSTimeoutError"):
            reason = f"it took longer than {timeout} s"
        raise FetchError(reason) from None


def resolve_remote(
    path: str, kind: str, roots: Any, file: str, index: int, id: str, field: str, *, check_file: bool
) -> tuple[str | None, Problem | None]:
    """A record's own http(s) URL (``roots``: a MediaRoots): refused unless allowed; with ``check_file``, fetched to judge it."""
    if not roots.allow_remote_media:
        return None, Problem(
            "remote_media",
            f"{locate(file, index, id, field)}: {kind} {redact_url(path)!r} is a URL; pass "
            f"allow_remote_media=True to fetch it (only if you trust this JSON file)",
            file,
            index,
            id,
            field,
        )
    if check_file:
        try:
            fetch_url(path, max_bytes=roots.max_remote_bytes, timeout=roots.remote_timeout)
        except (FetchError, FileNotFoundError) as err:
            return None, remote_problem(path, kind, err, file=file, index=index, id=id, field=field)
    return path, None


def remote_problem(
    path: str, kind: str, err: OSError, *, file: str, index: int, id: str, field: str
) -> Problem:
    """The ``remote_fetch_failed`` problem of a record's URL that could not be fetched."""
    return Problem(
        "remote_fetch_failed",
        f"{locate(file, index, id, field)}: {kind} {redact_url(path)!r} could not be fetched: "
        f"{str(err.strerror or err).replace(path, redact_url(path))}; check the URL, or raise "
        f"max_remote_bytes=/remote_timeout=",
        file,
        index,
        id,
        field,
    )


def resolve_under_url(
    path: str, kind: str, root: str, file: str, index: int, id: str, field: str, *, check_file: bool
) -> tuple[str | None, Problem | None]:
    """A relative path under a URL root: joined to it, refused if it leaves it; with ``check_file``,
    a missing file is ``missing_media``."""
    full = join_under(root, path)
    flag = f"{kind}_folder="
    if full is None:
        return None, Problem(
            "media_outside_root",
            f"{locate(file, index, id, field)}: {path!r} leaves {flag}{redact_url(root)!r}; media paths "
            f"must be relative paths inside it",
            file,
            index,
            id,
            field,
        )
    if check_file:
        try:
            fs, inner = url_fs(full)
            found = fs.isfile(inner)
        except ImportError:
            raise
        except Exception:  # judged by reading it
            found = True
        if not found:
            return None, Problem(
                "missing_media",
                f"{locate(file, index, id, field)}: {kind} {path!r} not found at {redact_url(full)}; "
                f"check {flag} (now {redact_url(root)!r})",
                file,
                index,
                id,
                field,
            )
    return full, None
