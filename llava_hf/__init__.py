"""llava-hf: LLaVA-format vision-language training data as a first-class Hugging Face dataset."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import LlavaHFError

__all__ = ["LlavaHFError", "__version__"]
