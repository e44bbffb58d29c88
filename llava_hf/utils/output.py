"""Atomic output: a file or folder is complete or absent, never half-written, and never another's.

``atomic_dir(OUT)`` writes the folder inside a working folder of llava-hf's own beside it,
``.OUT.llava-hf-incomplete/OUT``, and renames it to ``OUT`` when the block succeeds. A previous output
that is replaced is first moved into ``.OUT.llava-hf-replaced/OUT`` and deleted only once the new one is
in place. Both working folders hold a mark file (:data:`MARK`) naming the process that made them: a
folder of those names without the mark is not llava-hf's and is never deleted (:class:`UsageError`).
A run killed half-way leaves its marked working folders; the next run into the same ``OUT`` removes
them (and puts back a previous output that had already been moved aside).

One run at a time writes to an ``OUT``: :func:`output_lock` takes an exclusive lock on the file
``.OUT.llava-hf-lock`` (``flock``; released by the kernel if the process dies, and the file is removed
when the run ends). A second run fails at once with :class:`OutputLockedError` naming the first one's
pid, or waits for it (``wait=True``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..errors import OutputLockedError, UsageError

__all__ = ["MARK", "atomic_dir", "atomic_text_file", "final_path", "output_lock", "refuse_foreign_output"]

#: The file that marks a working folder as llava-hf's (JSON: pid, host).
MARK = ".llava-hf-partial"
_INCOMPLETE = ".llava-hf-incomplete"
_REPLACED = ".llava-hf-replaced"
_LOCK = ".llava-hf-lock"


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}{suffix}")


def final_path(path: str | os.PathLike[str]) -> Path:
    """The output that a folder yielded by :func:`atomic_dir` becomes (any other path: itself)."""
    folder = Path(path)
    if folder.parent.name == f".{folder.name}{_INCOMPLETE}":
        return folder.parent.parent / folder.name
    return folder


def refuse_foreign_output(path: str | os.PathLike[str], *, manifest: str | None = None) -> None:
    """Refuse (:class:`UsageError`) an existing ``path`` that writing the output there would replace:
    a file, or a folder with something in it, unless it holds ``manifest`` (the file that marks an
    output llava-hf wrote, which may be replaced). An empty folder or no ``path`` at all is fine."""
    out = Path(path)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if manifest is not None and out.is_dir() and (out / manifest).is_file():
        return
    what = f"is not a llava-hf build (no {manifest})" if manifest is not None else "is not empty"
    raise UsageError(
        f"output folder {str(out)!r} exists and {what}; refusing to replace it",
        hint="choose a new output_dir=, or remove that folder first",
    )


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str] | None) -> Iterator[TextIO | None]:
    """Yield a text file that becomes ``path`` only if the block succeeds (None if path is None).

    The temporary file has a random name of its own (``tempfile.mkstemp``), so it never meets a
    user's file.
    """
    if path is None:
        yield None
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_INCOMPLETE, dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str], *, wait: bool = False) -> Iterator[None]:
    """Hold the exclusive lock of the output ``path`` for the block (see the module docstring)."""
    import fcntl

    target = Path(path)
    lock = _sibling(target, _LOCK)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise OutputLockedError(target, owner) from None
        except BaseException:
            os.close(fd)
            raise
        # the file may have been removed (and made anew) by the holder we waited for: lock the one
        # that is at the path now
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: a waiter then re-checks the path (above)
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = True, wait: bool = False) -> Iterator[Path]:
    """Yield a new empty folder named like ``path``; on success it becomes ``path``, on failure it is removed.

    ``overwrite=False`` refuses (``FileExistsError``) to replace an existing ``path``. ``wait``: wait for
    another run writing to ``path`` instead of failing (:func:`output_lock`).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a part of the path is a file
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target)) from None
    holder, backup = _sibling(target, _INCOMPLETE), _sibling(target, _REPLACED)
    with output_lock(target, wait=wait):
        _clear_leftovers(target, holder, backup)
        _make_holder(holder)
        tmp = holder / target.name
        try:
            tmp.mkdir()
            yield tmp
            if target.exists() or target.is_symlink():
                if not overwrite:
                    raise FileExistsError(target)
                _make_holder(backup)
                os.replace(target, backup / target.name)
                try:
                    os.replace(tmp, target)
                except BaseException:
                    os.replace(backup / target.name, target)
                    raise
                shutil.rmtree(backup)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(holder, ignore_errors=True)


def _make_holder(folder: Path) -> None:
    folder.mkdir()
    mark = {"pid": os.getpid(), "host": socket.gethostname()}
    (folder / MARK).write_text(json.dumps(mark) + "\n", encoding="utf-8")


def _clear_leftovers(target: Path, holder: Path, backup: Path) -> None:
    """Remove the working folders of an earlier run that was killed (they carry the mark).

    A previous output already moved aside, whose replacement never arrived, is put back first.
    """
    for folder in (holder, backup):
        if not (folder.exists() or folder.is_symlink()):
            continue
        if folder.is_symlink() or not folder.is_dir() or not (folder / MARK).is_file():
            raise UsageError(
                f"{str(folder)!r} is in the way of the output {str(target)!r} and was not made by "
                f"llava-hf (it has no {MARK} mark); refusing to delete it",
                hint="move or rename it, or choose another output folder",
            )
    previous = backup / target.name
    if not (target.exists() or target.is_symlink()) and previous.exists():
        os.replace(previous, target)
    for folder in (holder, backup):
        if folder.exists():
            shutil.rmtree(folder)
