"""The package logger and progress bars.

One logger, ``llava_hf``; its level comes from ``LLAVA_HF_VERBOSITY`` (debug, info, warning, error).
Progress bars are ``datasets``' tqdm, so ``HF_DATASETS_DISABLE_PROGRESS_BARS=1`` and
``datasets.disable_progress_bars()`` switch ours off too (without importing ``datasets`` for it).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

__all__ = ["get_logger", "tqdm"]

_ROOT = "llava_hf"


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


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``datasets``' tqdm: honours ``HF_DATASETS_DISABLE_PROGRESS_BARS`` and ``disable_progress_bars()``.

    Until something imports ``datasets`` (``llava-hf validate`` never does: it costs ~1 s of CPU),
    ``disable_progress_bars()`` cannot have been called, and only the environment variable applies,
    read as ``datasets.config`` reads it.
    """
    if "datasets" in sys.modules:
        from datasets.utils.tqdm import tqdm as datasets_tqdm

        return datasets_tqdm(*args, **kwargs)
    from tqdm.auto import tqdm as plain_tqdm

    if os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS", "").upper() in {"1", "ON", "YES", "TRUE"}:
        kwargs["disable"] = True
    return plain_tqdm(*args, **kwargs)
