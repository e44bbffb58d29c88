"""The package logger and progress bars.

One logger, ``llava_hf``; its level comes from ``LLAVA_HF_VERBOSITY`` (debug, info, warning, error).
Progress bars are ``datasets``' tqdm, so ``HF_DATASETS_DISABLE_PROGRESS_BARS=1`` and
``datasets.disable_progress_bars()`` switch ours off too.
"""

from __future__ import annotations

import logging
import os
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
    """``datasets``' tqdm: honours ``HF_DATASETS_DISABLE_PROGRESS_BARS`` and ``disable_progress_bars()``."""
    from datasets.utils.tqdm import tqdm as _tqdm

    return _tqdm(*args, **kwargs)
