"""llava-hf: LLaVA-format vision-language training data as a first-class Hugging Face dataset.

The data's path: JSON → :mod:`~llava_hf.records` → :mod:`~llava_hf.validate` → :class:`LlavaBuilder`
→ Parquet (:func:`build_folder`) → Hub (:mod:`llava_hf.hub`) → trainer (:mod:`llava_hf.chat`,
:func:`decode_media`).

Not re-exported on purpose: the submodules ``chat``, ``hub``, ``card`` and ``mixture`` are used by
their module name (``llava_hf.chat.to_messages``, ``llava_hf.hub.push_to_hub``), which keeps
``import llava_hf`` light and their optional dependencies optional.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .build import BuildResult, build_folder
from .builder import LlavaBuilder, LlavaConfig
from .decode import decode_media
from .errors import (
    ChatTemplateError,
    HubError,
    InputFileError,
    LabelMaskError,
    LlavaHFError,
    MissingDependencyError,
    PushConflictError,
    RecordError,
    TagExistsError,
    UsageError,
)
from .load import load_llava
from .problems import Problem
from .records import Record, Turn
from .schema import features_for

__all__ = [
    "BuildResult",
    "ChatTemplateError",
    "HubError",
    "InputFileError",
    "LabelMaskError",
    "LlavaBuilder",
    "LlavaConfig",
    "LlavaHFError",
    "MissingDependencyError",
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
