"""llava-hf: LLaVA-format vision-language training data as a first-class Hugging Face dataset.

The data's path: JSON → :mod:`~llava_hf.records` → :mod:`~llava_hf.validate` → :class:`LlavaBuilder`
→ Parquet (:func:`build_folder`) → Hub (:mod:`llava_hf.hub`) → trainer (:mod:`llava_hf.chat`,
:func:`decode_media`).

Not re-exported on purpose: the submodules ``chat``, ``hub``, ``card`` and ``mixture`` are used by
their module name (``llava_hf.chat.to_messages``, ``llava_hf.hub.push_to_hub``), which keeps their
optional dependencies optional. The names below are imported on first use, so ``import llava_hf``
stays light (no ``datasets``) until one is.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ChatTemplateError,
    HubError,
    InputFileError,
    LabelMaskError,
    LlavaHFError,
    MediaDecodeError,
    MissingDependencyError,
    OutputLockedError,
    PushConflictError,
    RecordError,
    TagExistsError,
    UsageError,
)

# Imported on first use (PEP 562), as huggingface_hub does: `datasets` alone takes ~1 s of CPU to
# import, and `llava-hf validate` or `--help` need none of it.
_LAZY = {
    "BuildResult": "build",
    "build_folder": "build",
    "LlavaBuilder": "build",
    "LlavaConfig": "build",
    "decode_media": "decode",
    "load_llava": "load",
    "Problem": "problems",
    "Record": "records",
    "Turn": "records",
    "features_for": "schema",
}

if TYPE_CHECKING:
    from .build import BuildResult, LlavaBuilder, LlavaConfig, build_folder
    from .decode import decode_media
    from .load import load_llava
    from .problems import Problem
    from .records import Record, Turn
    from .schema import features_for


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BuildResult",
    "ChatTemplateError",
    "HubError",
    "InputFileError",
    "LabelMaskError",
    "LlavaBuilder",
    "LlavaConfig",
    "LlavaHFError",
    "MediaDecodeError",
    "MissingDependencyError",
    "OutputLockedError",
    "Problem",
    "PushConflictError",
    "Record",
    "RecordError",
    "TagExistsError",
    "Turn",
    "UsageError",
    "__version__",
    "build_folder",
    "decode_media",
    "features_for",
    "load_llava",
]
