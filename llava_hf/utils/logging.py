"""The package logger and progress bars.

One logger, ``llava_hf``; its level comes from ``LLAVA_HF_VERBOSITY`` (debug, info, warning, error).
Progress bars are ``datasets``' tqdm, so ``HF_DATASETS_DISABLE_PROGRESS_BARS=1`` and
``datasets.disable_progress_bars()`` switch ours off too (without importing ``datasets`` for it).
On a terminal a bar updates in place; written anywhere else (a log file, a pipe, CI) it prints a plain
line every :data:`LINE_INTERVAL` seconds instead, and never a carriage return.
"""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["LINE_INTERVAL", "Progress", "get_logger", "tqdm"]

_ROOT = "llava_hf"

#: Seconds between two progress lines when the bar's stream is not a terminal.
LINE_INTERVAL = 5.0


def _configure_root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    level = os.environ.get("LLAVA_HF_VERBOSITY", "").upper()
    if level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        root.setLevel(level)
    return root


_configure_root()


def get_logger(name: str) -> logging.Logger:
    """A child of the package logger (``llava_hf.<module>``)."""
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def _tqdm_class() -> Any:
    """``datasets``' tqdm class once ``datasets`` is imported, else ``tqdm.auto``'s."""
    if "datasets" in sys.modules:
        from datasets.utils.tqdm import tqdm as datasets_tqdm

        return datasets_tqdm
    from tqdm.auto import tqdm as plain_tqdm

    return plain_tqdm


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``datasets``' tqdm: honours ``HF_DATASETS_DISABLE_PROGRESS_BARS`` and ``disable_progress_bars()``.

    Until something imports ``datasets`` (``llava-hf validate`` never does: it costs ~1 s of CPU),
    ``disable_progress_bars()`` cannot have been called, and only the environment variable applies,
    read as ``datasets.config`` reads it. A stream that is not a terminal gets plain lines (see the
    module's docstring).
    """
    return _make(_tqdm_class(), args, kwargs)


def _make(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if "datasets" not in sys.modules and os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS", "").upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }:
        kwargs["disable"] = True
    stream = kwargs.get("file") or sys.stderr
    if stream is not None and not _is_terminal(stream) and not _in_notebook():
        kwargs["file"] = _Lines(stream)
        kwargs["mininterval"] = max(float(kwargs.get("mininterval") or 0), LINE_INTERVAL)
        kwargs["maxinterval"] = max(float(kwargs.get("maxinterval") or 0), 2 * LINE_INTERVAL)
    return cls(*args, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


def _in_notebook() -> bool:
    """``tqdm.auto`` chose the notebook widget: it draws no text, so there are no lines to keep."""
    if "ipykernel" not in sys.modules:
        return False
    from tqdm.auto import tqdm as auto_tqdm

    return any(c.__module__ == "tqdm.notebook" for c in auto_tqdm.__mro__)


class _Lines:
    """The stream tqdm writes to when the real one is not a terminal: each update becomes one plain
    line (tqdm's carriage return and the spaces that would erase a longer line are dropped; a line
    equal to the one before is not repeated)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line and line != self._last:  # closing draws the last update again
            self.stream.write(line + "\n")
            self._last = line

    def flush(self) -> None:
        self.stream.flush()


_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]"
_bar_classes: dict[Any, Any] = {}


def _records_bar(base: Any) -> Any:
    """A subclass of tqdm class ``base`` whose line also shows the records counted and their rate
    (formatted only when the line is drawn)."""
    cls = _bar_classes.get(base)
    if cls is None:

        def format_dict(self: Any) -> dict[str, Any]:
            info = dict(base.format_dict.fget(self))
            records, elapsed = self.records, info.get("elapsed") or 0
            rate = f"{records / elapsed:,.0f}" if elapsed else "?"
            info["postfix"] = f"{records:,} records, {rate} records/s"
            return info

        cls = _bar_classes[base] = type(
            "RecordsBar", (base,), {"records": 0, "format_dict": property(format_dict)}
        )
    return cls


class Progress:
    """Progress through input files of a known total size, counting records too.

    The bar moves in bytes of the input, so it has a total and an ETA from the start (also when the
    number of records is unknown until the end), and its line shows the records counted and the
    records per second. Use it as a context manager; :meth:`finish` once the work is done.
    """

    def __init__(self, desc: str, total: int | None, *, file: TextIO | None = None) -> None:
        self.records = 0
        kwargs: dict[str, Any] = {"desc": desc, "total": total, "unit": "B", "unit_scale": True, "file": file}
        if total is not None:
            kwargs["bar_format"] = _BAR_FORMAT
        self.bar = _make(_records_bar(_tqdm_class()), (), kwargs)

    def update(self, position: int | None = None, records: int = 0) -> None:
        """Count ``records`` more; ``position``: bytes of the input done, if it moved (never back)."""
        self.records += records
        self.bar.records = self.records
        step = position - self.bar.n if position is not None and position > self.bar.n else 0
        if step or records:
            self.bar.update(step)

    def finish(self) -> None:
        """The work is done: the bar shows its whole total (an input may end early, e.g. invalid JSON)."""
        if self.bar.total is not None:
            self.update(self.bar.total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bar.close()
