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

    Videos (rows decoded by :func:`llava_hf.decode_media`: each a ``(T, H, W, 3)`` array of sampled
    frames) are treated as LLaVA-NeXT's training code treats them: their frames go through the image
    processor, and each ``<video>`` tag becomes ``T`` image tags, so the processor expands it to ``T``
    times its token count per image. Those tokens are never trained. This takes any processor with an
    image processor (a plain LLaVA model trains on video this way); for a processor's own video path
    (LLaVA-NeXT-Video, Qwen2-VL), see :func:`llava_hf.chat.to_messages`.

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
        texts: list[str] = []
        images: list[list[Any]] = []
        for example, r in zip(examples, rendered):
            text, row_images = self._frames_as_images(example, r)
            texts.append(text)
            images.append(row_images)
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

    def _frames_as_images(self, example: Mapping[str, Any], r: dict[str, Any]) -> tuple[str, list[Any]]:
        """The row's text and images for the processor, its videos' frames as images in place.

        ``r`` (the rendered row) gets each video token replaced by ``T`` image tokens (labels
        ``IGNORE_INDEX``), so :func:`expand_labels` lines it up with the processor's expansion.
        """
        rid = None if example.get("id") is None else str(example["id"])
        row_images, videos = media_of(example)
        audios = example.get("audios") or [
            part
            for message in example.get("messages") or []
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if part.get("type") == "audio"
        ]
        if audios:
            raise ChatTemplateError(
                f"record {rid!r} has {len(audios)} audio file(s): ChatCollator gives images and video "
                "frames to a vision-language processor and has no audio path",
                id=rid,
                hint="drop audio rows (ds.filter(lambda r: not r['audios'])), or use an audio model's "
                "processor on to_messages(row, format='processor') parts (audio decoded by decode_media)",
            )
        for kind, items in (("images", row_images), ("videos", videos)):
            if any(item is None or isinstance(item, (Mapping, str, bytes)) for item in items):
                raise ChatTemplateError(
                    f"record {rid!r}: {kind} are not decoded",
                    id=rid,
                    hint="decode them first: llava_hf.decode_media(ds) (or as_messages(ds), which does)",
                )
        if not videos:
            return r["text"], row_images
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        image_token = getattr(self.processor, "image_token", None)
        video_token = getattr(self.processor, "video_token", None) or getattr(tokenizer, "video_token", None)
        if not isinstance(image_token, str) or not isinstance(video_token, str):
            raise ChatTemplateError(
                f"record {rid!r} has videos, but {type(self.processor).__name__} has no image token and video "
                "token: ChatCollator gives a video's frames to the image processor",
                id=rid,
                hint="use a vision-language processor (e.g. LlavaProcessor) whose tokenizer knows <video>",
            )
        image_id = tokenizer.convert_tokens_to_ids(image_token)
        video_id = tokenizer.convert_tokens_to_ids(video_token)
        pieces = r["text"].split(video_token)
        if len(pieces) - 1 != len(videos) or r["input_ids"].count(video_id) != len(videos):
            raise ChatTemplateError(
                f"record {rid!r}: {len(pieces) - 1} {video_token} token(s) in the rendered text for "
                f"{len(videos)} video(s)",
                id=rid,
                hint="the chat template must render each video part as the processor's video token",
            )
        lengths = [len(video) for video in videos]
        text = pieces[0] + "".join(image_token * n + piece for n, piece in zip(lengths, pieces[1:]))
        ids: list[int] = []
        labels: list[int] = []
        media: list[Any] = []
        next_image = next_video = 0
        for token, label in zip(r["input_ids"], r["labels"]):
            if token == video_id:
                ids.extend([image_id] * lengths[next_video])
                labels.extend([IGNORE_INDEX] * lengths[next_video])
                media.extend(list(videos[next_video]))
                next_video += 1
                continue
            if token == image_id and next_image < len(row_images):
                media.append(row_images[next_image])
                next_image += 1
            ids.append(token)
            labels.append(label)
        media.extend(row_images[next_image:])  # the processor reports a count mismatch
        r["input_ids"], r["labels"] = ids, labels
        return text, media
