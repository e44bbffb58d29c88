"""An output folder on an fsspec URL (``s3://``, ``gs://``, ``hf://``, ``file://``): written, then published.

:func:`published_folder` makes a temporary prefix beside the target, ``OUT.llava-hf-tmp-<uuid>/`` (marked with
:data:`~llava_hf.utils.output.MARK`), and yields a :class:`Staging`: that prefix, where the build's workers
write the data files themselves (each on its own node), and a local folder (in the system's temporary
folder) for the small files the driver writes (manifest, card, rejected records). On success the local
files are copied under the prefix, and every file there is moved to ``OUT``: the data files first, the files
named ``last`` (the manifest, the card) last; the prefix is removed. Object stores have no atomic rename of a
folder, so while files move ``OUT`` holds the mark file: a build interrupted there leaves ``OUT`` without its
manifest and card (nothing that looks complete), and the next build into ``OUT`` replaces it. A killed build
leaves its marked prefix, which the next build into ``OUT`` removes. An existing ``OUT`` that has neither the
manifest nor the mark was not made by llava-hf and is refused (:class:`UsageError`); a previous build is
replaced (its manifest and card removed first). Unlike a local output, no lock keeps two runs from writing
the same URL at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..media.remote import is_remote_media, is_url, redact_url, url_fs
from .logging import get_logger
from .output import MARK

__all__ = ["TMP_INFIX", "Staging", "published_folder", "refuse_foreign_url_output"]

logger = get_logger(__name__)

#: A temporary prefix beside the target ``OUT`` is ``OUT`` + this + a uuid.
TMP_INFIX = ".llava-hf-tmp-"


def _mark() -> bytes:
    return (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode()


def refuse_foreign_url_output(url: str, *, manifest: str) -> None:
    """Refuse (:class:`UsageError`) an existing ``url`` that llava-hf did not make: a file, or a folder
    with files but neither ``manifest`` nor the mark of an interrupted publication."""
    fs, target = url_fs(url)
    target = target.rstrip("/")
    if not fs.exists(target):
        return
    if fs.isfile(target):
        what = "is a file"
    else:
        names = {posixpath.basename(str(p).rstrip("/")) for p in fs.ls(target, detail=False)}
        if not names or manifest in names or MARK in names:
            return
        what = f"is not a llava-hf build (no {manifest})"
    raise UsageError(
        f"output {redact_url(url)!r} exists and {what}; refusing to replace it",
        hint="choose a new --output-dir, or remove that folder first",
    )


@dataclass(frozen=True)
class Staging:
    """Where a build into a URL writes: ``local``, a folder on this machine that does not exist yet (the
    caller creates it, as a build creates its output; named like the target), and ``prefix``, the
    temporary prefix on ``fs`` (a path of that file system) where the data files go. ``moves``: each data
    file's path in the published folder -> where it is under the prefix; publication moves each once (an
    object store moves by copying). Picklable."""

    local: Path
    fs: Any
    prefix: str
    moves: dict[str, str] = field(default_factory=dict)

    def url(self, rel: str = "") -> str:
        """The URL of ``rel`` under the prefix (for code that opens URLs, as fsspec.open does)."""
        return str(self.fs.unstrip_protocol(f"{self.prefix}/{rel}" if rel else self.prefix))

    def urls(self, folder: str = "") -> dict[str, str]:
        """The URL of each data file to publish under ``folder`` (all when empty), by its path relative to it."""
        start = f"{folder}/" if folder else ""
        return {rel[len(start) :]: self.url(at) for rel, at in self.moves.items() if rel.startswith(start)}


@contextlib.contextmanager
def published_folder(url: str, *, manifest: str, last: Sequence[str]) -> Iterator[Staging]:
    """Yield a :class:`Staging` to fill (the files under its prefix are published as its ``moves`` say,
    the local folder's as they are); on success publish it at ``url`` (see the module docstring).

    On failure nothing is published, and the prefix and the local folder are removed.
    """
    if not is_url(url):
        raise UsageError(f"{url!r} is not a URL")
    if is_remote_media(url):
        raise UsageError(
            f"output {redact_url(url)!r}: http(s) URLs are read-only",
            hint="write to a folder, or to s3://, gs://, hf:// or file:// URL",
        )
    refuse_foreign_url_output(url, manifest=manifest)
    fs, target = url_fs(url)
    target = target.rstrip("/")
    _clear_stale_prefixes(fs, target)
    prefix = f"{target}{TMP_INFIX}{uuid.uuid4().hex}"
    local = Path(tempfile.mkdtemp(prefix="llava-hf-staging-"))
    try:
        fs.makedirs(prefix, exist_ok=True)
        fs.pipe_file(f"{prefix}/{MARK}", _mark())
        staging = Staging(local / (posixpath.basename(target) or "output"), fs, prefix)
        yield staging
        _publish(staging, target, manifest=manifest, last=last)
    finally:
        shutil.rmtree(local, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(prefix, recursive=True)


def _publish(staging: Staging, target: str, *, manifest: str, last: Sequence[str]) -> None:
    fs, prefix, local = staging.fs, staging.prefix, staging.local
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    for rel in files:  # the copy that may fail half-way goes to the temporary prefix
        _makedirs(fs, f"{prefix}/{rel}")
        fs.put_file(str(local / rel), f"{prefix}/{rel}")
    moves = {**{rel: rel for rel in files}, **staging.moves}  # published path -> its path under the prefix
    order = sorted(
        moves,
        key=lambda rel: (2 if rel in last else 0 if rel in staging.moves else 1, _rank(rel, last), rel),
    )
    fs.makedirs(target, exist_ok=True)
    fs.pipe_file(f"{target}/{MARK}", _mark())
    _remove_previous(fs, target, manifest=manifest, last=last)
    for rel in order:
        _makedirs(fs, f"{target}/{rel}")
        fs.mv(f"{prefix}/{moves[rel]}", f"{target}/{rel}")
    fs.rm_file(f"{target}/{MARK}")
    logger.debug("published %d file(s) to %s", len(order), target)


def _rank(rel: str, last: Sequence[str]) -> int:
    return list(last).index(rel) if rel in last else 0


def _makedirs(fs: Any, path: str) -> None:
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)


def _remove_previous(fs: Any, target: str, *, manifest: str, last: Sequence[str]) -> None:
    """Remove what a previous build left at ``target``: its manifest and card first (it then no longer
    looks complete), then the rest; the mark stays."""
    found = [str(p) for p in fs.find(target)]
    rel = {p: posixpath.relpath(p, target) for p in found}
    first = [p for p in found if rel[p] in (manifest, *last)]
    rest = [p for p in found if p not in first and rel[p] != MARK]
    for path in first + rest:
        fs.rm_file(path)


def _clear_stale_prefixes(fs: Any, target: str) -> None:
    """Remove the temporary prefixes of earlier runs that were killed (they carry the mark)."""
    for path in fs.glob(f"{target}{TMP_INFIX}*"):
        path = str(path).rstrip("/")
        if fs.exists(f"{path}/{MARK}"):
            fs.rm(path, recursive=True)
