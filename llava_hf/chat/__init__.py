"""Chat messages for trainers: LLaVA ``conversations`` <-> ``messages``, rendering, assistant-only labels.

* :func:`to_messages` / :func:`from_messages`: pure, exact mapping of one row (or a batch) between
  LLaVA's ``conversations`` and chat ``messages`` with typed parts; ``format="trl"`` is what TRL's
  ``SFTTrainer`` takes as-is, ``format="processor"`` what ``processor.apply_chat_template`` takes.
* :func:`as_messages`: the same for a whole ``Dataset`` or streaming ``IterableDataset``.
* :func:`render`: the model's chat template (or a built-in LLaVA one, :data:`TEMPLATES`) with
  ``labels`` masked to the assistant turns; :class:`ChatCollator` batches it for training;
  :func:`token_length` counts text and vision tokens for length grouping and filtering.

Everything that needs transformers imports it inside the call (llava-hf's ``train`` extra: ``pip install -e '.[train]'`` in a clone).
"""

from __future__ import annotations

from ._collate import ChatCollator
from ._datasets import as_messages
from ._mapping import DEFAULT_ROLES, from_messages, to_messages
from ._render import IGNORE_INDEX, expand_labels, render, token_length
from ._templates import TEMPLATES

__all__ = [
    "DEFAULT_ROLES",
    "IGNORE_INDEX",
    "TEMPLATES",
    "ChatCollator",
    "as_messages",
    "expand_labels",
    "from_messages",
    "render",
    "to_messages",
    "token_length",
]
