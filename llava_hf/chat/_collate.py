"""A training collator built on :func:`render`: assistant-only labels for any template, any processor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ChatTemplateError
from ._mapping import media_of
from ._render import IGNORE_INDEX, _require_transformers, expand_labels, media_token_ids, render

__all__ = ["ChatCollator"]


class ChatCollator:
    """Collate rows (``conversations``, or ``messages`` + ``images``) into a padded training batch.

    Each row is rendered with :func:`render` (``tokenize=True``), so the labels are ``-100`` except
    on the assistant turns, for templates with or without ``{% generation %}`` markers (including
    the built-in ``"plain"``, ``"vicuna_v1"`` and ``"llava_v1"``). The processor then tokenizes the
    rendered texts and processes the images; the labels are carried over to its expanded media
    tokens (:func:`expand_labels`), which are never trained.

    Use it with TRL's ``SFTTrainer`` as ``data_collator=ChatCollator(processor, template=...)`` with
    ``SFTConfig(remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True})``, or with
    a plain ``torch.utils.data.DataLoader``.

    Args:
        processor: a transformers processor (or a tokenizer, for text-only data).
        template: as in :func:`render`.
        roles: speaker -> role map for ``conversations`` rows.
        pad_to_multiple_of: passed to the processor's padding.
    """

    def __init__(
        self,
        processor: Any,
        *,
        template: str | None = None,
        roles: Mapping[str, str] | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        _require_transformers("llava_hf.chat.ChatCollator")
        self.processor = processor
        self.template = template
        self.roles = roles
        self.pad_to_multiple_of = pad_to_multiple_of
        self.media_ids = media_token_ids(processor)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        rendered = [
            render(example, self.processor, template=self.template, tokenize=True, roles=self.roles)
            for example in examples
        ]
        texts = [r["text"] for r in rendered]
        images = [media_of(example)[0] for example in examples]
        for example, row_images in zip(examples, images):
            if any(isinstance(image, Mapping) for image in row_images):
                raise ChatTemplateError(
                    f"record {example.get('id')!r}: images are not decoded",
                    id=None if example.get("id") is None else str(example["id"]),
                    hint="decode them first: llava_hf.decode_media(ds)",
                )
        kwargs: dict[str, Any] = {
            "padding": True,
            "padding_side": "right",
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "add_special_tokens": False,
            "return_tensors": "pt",
        }
        if any(images):
            out = self.processor(text=texts, images=images, **kwargs)
        else:
            out = self.processor(text=texts, **kwargs)
        input_ids = out["input_ids"]
        attention = out["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for i, (example, r) in enumerate(zip(examples, rendered)):
            length = int(attention[i].sum())
            expanded = input_ids[i, :length].tolist()
            rid = None if example.get("id") is None else str(example["id"])
            row_labels = expand_labels(r["input_ids"], r["labels"], expanded, self.media_ids, record_id=rid)
            labels[i, :length] = torch.tensor(row_labels, dtype=labels.dtype)
        batch = dict(out)
        batch["labels"] = labels
        return batch
