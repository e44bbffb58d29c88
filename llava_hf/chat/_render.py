"""Render a conversation with a model's chat template, and mask everything but the assistant turns.

The assistant spans come from rendering prefixes of the conversation, not from ``{% generation %}``
markers, so any template works: for assistant message ``k``, the span starts where
``render(messages[:k], add_generation_prompt=True)`` ends and stops where ``render(messages[:k + 1])``
ends. Both must be prefixes of the full text, every token must fall wholly inside or wholly outside
the spans (offsets from the fast tokenizer), and every assistant turn must own at least one token;
otherwise :class:`~llava_hf.errors.LabelMaskError` names the record. A sample is never silently
all-masked (LLaVA's "tokenization mismatch" warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ChatTemplateError, LabelMaskError, MissingDependencyError
from ._mapping import is_batch, media_of, to_messages
from ._templates import TEMPLATES

__all__ = ["IGNORE_INDEX", "expand_labels", "render", "resolve_template", "token_length"]

#: The label of a token that is not trained (PyTorch's ``CrossEntropyLoss`` default).
IGNORE_INDEX = -100

_MEDIA_TOKEN_NAMES = ("image_token", "video_token")


def _require_transformers(purpose: str) -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("transformers", "train", purpose) from exc


def _tokenizer_of(tokenizer_or_processor: Any) -> Any:
    return getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)


def _where(rid: str | None) -> str:
    return f"record {rid!r}" if rid is not None else "record (no id)"


def resolve_template(tokenizer_or_processor: Any, template: str | None) -> str:
    """The Jinja source to render with: a built-in name, a template string, or the model's own."""
    if template is None:
        own = getattr(tokenizer_or_processor, "chat_template", None)
        if own is None:
            own = getattr(_tokenizer_of(tokenizer_or_processor), "chat_template", None)
        if isinstance(own, Mapping):
            own = own.get("default")
        if not isinstance(own, str) or not own:
            raise ChatTemplateError(
                f"{type(tokenizer_or_processor).__name__} has no chat template",
                hint=f"pass template= one of {sorted(TEMPLATES)} (LLaVA's own formats) or a Jinja template",
            )
        return own
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{{" in template or "{%" in template:
        return template
    raise ChatTemplateError(
        f"unknown chat template {template!r}",
        hint=f"use one of {sorted(TEMPLATES)}, a Jinja template string, or None for the model's own",
    )


def _messages_of(example: Mapping[str, Any], roles: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """Fresh message dicts (templates and transformers may touch them; the row stays as it was)."""
    if "messages" not in example:
        return list(to_messages(example, roles=roles)["messages"])
    messages = []
    for message in example["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            content = [dict(part) for part in content]
        messages.append({**message, "content": content})
    return messages


def _apply(
    renderer: Any,
    messages: Sequence[Mapping[str, Any]],
    chat_template: str,
    add_generation_prompt: bool,
    rid: str | None,
    template_kwargs: Mapping[str, Any],
) -> str:
    try:
        text = renderer.apply_chat_template(
            list(messages),
            chat_template=chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **template_kwargs,
        )
    except ChatTemplateError:
        raise
    except Exception as exc:  # jinja2 TemplateError, raise_exception(), ValueError from transformers
        raise ChatTemplateError(
            f"{_where(rid)}: the chat template failed on {len(messages)} message(s): {exc}", id=rid
        ) from exc
    if isinstance(text, list):  # a batched call; we always pass one conversation
        text = text[0]
    return str(text)


def _assistant_spans(
    renderer: Any,
    messages: Sequence[Mapping[str, Any]],
    text: str,
    chat_template: str,
    rid: str | None,
    template_kwargs: Mapping[str, Any],
) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        try:
            before = _apply(renderer, messages[:k], chat_template, True, rid, template_kwargs)
        except ChatTemplateError as exc:
            if k:
                raise
            raise LabelMaskError(
                f"{_where(rid)}: the conversation starts with an assistant turn and the template cannot "
                "render the prompt before it (an empty conversation)",
                id=rid,
                hint="drop the leading assistant turn (LLaVA's preprocessing skips it) or use a template "
                "that renders an empty conversation",
            ) from exc
        through = _apply(renderer, messages[: k + 1], chat_template, False, rid, template_kwargs)
        if not text.startswith(before) or not text.startswith(through) or len(through) <= len(before):
            raise LabelMaskError(
                f"{_where(rid)}: assistant turn {k} does not line up: rendering the first {k} message(s) "
                f"(with the generation prompt) gives {before[-40:]!r}... and the first {k + 1} give "
                f"{through[-40:]!r}..., which are not nested prefixes of the whole conversation",
                id=rid,
                hint="the template renders a conversation differently from its prefixes (e.g. it rewrites "
                "earlier turns); use a template that renders turns independently, or one with "
                "{% generation %} markers via TRL",
            )
        spans.append((len(before), len(through)))
    if not spans:
        raise LabelMaskError(
            f"{_where(rid)}: the conversation has no assistant turn, so every label would be masked",
            id=rid,
            hint="drop records without an assistant turn, or check the role map (roles=)",
        )
    return spans


def _labels_from_offsets(
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    text: str,
    rid: str | None,
) -> list[int]:
    labels = [IGNORE_INDEX] * len(input_ids)
    owned = [0] * len(spans)
    for i, (start, end) in enumerate(offsets):
        for s, (a, b) in enumerate(spans):
            inside = a <= start < b if end == start else (start >= a and end <= b)
            if inside:  # a zero-width token (e.g. a bare SentencePiece "▁") goes with where it stands
                labels[i] = input_ids[i]
                owned[s] += 1
                break
            if start < b and end > a and end > start:
                raise LabelMaskError(
                    f"{_where(rid)}: token {i} ({text[start:end]!r}, characters {start}-{end}) straddles the "
                    f"edge of an assistant span ({a}-{b})",
                    id=rid,
                    hint="the tokenizer merges template text with the assistant's text; LLaVA would have "
                    "trained on a shifted mask here",
                )
    for s, count in enumerate(owned):
        if count == 0:
            a, b = spans[s]
            raise LabelMaskError(f"{_where(rid)}: assistant span {s} ({text[a:b]!r}) owns no token", id=rid)
    return labels


def render(
    example: Mapping[str, Any],
    tokenizer_or_processor: Any,
    *,
    template: str | None = None,
    tokenize: bool = False,
    roles: Mapping[str, str] | None = None,
    add_generation_prompt: bool = False,
    **template_kwargs: Any,
) -> dict[str, Any]:
    """Render one row with a chat template; with ``tokenize=True`` also give ``input_ids`` and ``labels``.

    Args:
        example: a row with ``conversations`` (mapped with :func:`to_messages`) or ``messages``; or a
            batch of such rows (a dict of lists), which gives a batch back.
        tokenizer_or_processor: a transformers tokenizer or processor; its chat template is used
            unless ``template`` is given.
        template: ``None`` (the model's own), a built-in name (``"plain"``, ``"vicuna_v1"``,
            ``"llava_v1"``, see :data:`llava_hf.chat.TEMPLATES`) or a Jinja template string.
        tokenize: also return ``input_ids`` (the fast tokenizer's, no special tokens added: the
            template writes them; each ``<image>``/``<video>`` is one token, which a processor then
            expands, see :func:`expand_labels`) and ``labels``: ``-100`` everywhere except the
            assistant turns (their text and end-of-turn marker as the template writes them).
        roles: speaker -> role map for ``conversations`` rows.
        add_generation_prompt: passed to the template (for inference prompts; labels need a full
            conversation).

    Returns:
        ``{"text": str}``, plus ``input_ids`` and ``labels`` (lists of int) when ``tokenize``.

    Raises:
        MissingDependencyError: transformers is not installed (the ``train`` extra).
        ChatTemplateError: the row cannot be mapped or the template fails on it (names the record).
        LabelMaskError: the assistant spans do not line up with the rendered text or the tokens.
    """
    _require_transformers("llava_hf.chat.render")
    if is_batch(example, "messages" if "messages" in example else "conversations"):
        column = "messages" if "messages" in example else "conversations"
        n = len(example[column])
        rows = [
            render(
                {key: values[i] for key, values in example.items()},
                tokenizer_or_processor,
                template=template,
                tokenize=tokenize,
                roles=roles,
                add_generation_prompt=add_generation_prompt,
                **template_kwargs,
            )
            for i in range(n)
        ]
        keys = ["text", "input_ids", "labels"] if tokenize else ["text"]
        return {key: [row[key] for row in rows] for key in keys}

    rid = None if example.get("id") is None else str(example["id"])
    chat_template = resolve_template(tokenizer_or_processor, template)
    messages = _messages_of(example, roles)
    text = _apply(
        tokenizer_or_processor, messages, chat_template, add_generation_prompt, rid, template_kwargs
    )
    if not tokenize:
        return {"text": text}
    tokenizer = _tokenizer_of(tokenizer_or_processor)
    if not getattr(tokenizer, "is_fast", False):
        raise ChatTemplateError(
            f"render(tokenize=True) needs a fast tokenizer with offsets; got {type(tokenizer).__name__}",
            id=rid,
            hint="load the tokenizer with use_fast=True",
        )
    spans = _assistant_spans(tokenizer_or_processor, messages, text, chat_template, rid, template_kwargs)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    offsets = [tuple(o) for o in encoding["offset_mapping"]]
    labels = _labels_from_offsets(input_ids, offsets, spans, text, rid)
    return {"text": text, "input_ids": input_ids, "labels": labels}


def media_token_ids(tokenizer_or_processor: Any) -> set[int]:
    """Ids of the placeholder tokens a processor expands (``<image>``, ``<video>``)."""
    ids: set[int] = set()
    tokenizer = _tokenizer_of(tokenizer_or_processor)
    for name in _MEDIA_TOKEN_NAMES:
        token_id = getattr(tokenizer_or_processor, f"{name}_id", None)
        if token_id is None:
            token = getattr(tokenizer_or_processor, name, None) or getattr(tokenizer, name, None)
            if isinstance(token, str):
                converted = tokenizer.convert_tokens_to_ids(token)
                token_id = None if converted == tokenizer.unk_token_id else converted
        if isinstance(token_id, int):
            ids.add(token_id)
    return ids


def expand_labels(
    input_ids: Sequence[int],
    labels: Sequence[int],
    expanded_ids: Sequence[int],
    media_ids: set[int],
    *,
    record_id: str | None = None,
) -> list[int]:
    """Carry ``labels`` over to the processor's ``expanded_ids``, where each media token became a run.

    Every non-media token must match one to one; media tokens (and their expansion) are never
    trained. A mismatch raises :class:`LabelMaskError`.
    """
    out: list[int] = []
    i = j = 0
    while i < len(input_ids):
        token = input_ids[i]
        if token in media_ids:
            run = 1
            while i + run < len(input_ids) and input_ids[i + run] == token:
                run += 1
            expanded = 0
            while j + expanded < len(expanded_ids) and expanded_ids[j + expanded] == token:
                expanded += 1
            if expanded < run:
                raise LabelMaskError(
                    f"{_where(record_id)}: {run} media token(s) at position {i} became {expanded} after the "
                    "processor expanded them",
                    id=record_id,
                )
            out.extend([IGNORE_INDEX] * expanded)
            i += run
            j += expanded
            continue
        if j >= len(expanded_ids) or expanded_ids[j] != token:
            raise LabelMaskError(
                f"{_where(record_id)}: the processor's tokens differ from the rendered text's at position {i} "
                f"(expected id {token}, got {expanded_ids[j] if j < len(expanded_ids) else 'the end'})",
                id=record_id,
                hint="the processor must tokenize the rendered text without adding special tokens",
            )
        out.append(labels[i])
        i += 1
        j += 1
    if j != len(expanded_ids):
        raise LabelMaskError(
            f"{_where(record_id)}: the processor produced {len(expanded_ids) - j} extra token(s)",
            id=record_id,
        )
    return out


def _image_size(image: Any) -> tuple[int, int] | None:
    """(height, width) of a PIL image or an undecoded ``{"bytes", "path"}`` image, reading only its header."""
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[1]), int(size[0])
    shape = getattr(image, "shape", None)  # a video frame as an (H, W, 3) array
    if isinstance(shape, tuple) and len(shape) == 3:
        return int(shape[0]), int(shape[1])
    if isinstance(image, Mapping) and image.get("bytes"):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(image["bytes"])) as opened:
            return opened.height, opened.width
    return None


def _vision_tokens(processor: Any, images: Sequence[Any]) -> int | None:
    if not images:
        return None
    counter = getattr(processor, "_get_num_multimodal_tokens", None)
    if counter is None:
        per_image = getattr(processor, "image_seq_length", None)  # fixed-size processors (PaliGemma, ...)
        return per_image * len(images) if isinstance(per_image, int) else None
    sizes = [_image_size(image) for image in images]
    if any(size is None for size in sizes):
        return None
    try:
        data = counter(image_sizes=[list(size) for size in sizes if size is not None])
        counts = data["num_image_tokens"] if isinstance(data, Mapping) else data.num_image_tokens
    except Exception:  # a processor that cannot say: count placeholders only
        return None
    return int(sum(counts))


def token_length(
    example: Mapping[str, Any],
    tokenizer_or_processor: Any,
    *,
    template: str | None = None,
    roles: Mapping[str, str] | None = None,
) -> int:
    """Tokens the model will see for one row: rendered text tokens, plus vision tokens when the
    processor can say (``processor._get_num_multimodal_tokens``, else ``processor.image_seq_length``;
    otherwise each image counts as its one placeholder). A decoded video counts as its frames through
    the image processor, as :class:`~llava_hf.chat.ChatCollator` expands it, unless the processor has a
    video processor of its own (then it counts as its one placeholder). For length grouping and
    truncation-safe filtering, e.g. ``ds.map(lambda row: {"length": token_length(row, processor)})``.
    """
    _require_transformers("llava_hf.chat.token_length")
    rendered = render(example, tokenizer_or_processor, template=template, roles=roles)
    tokenizer = _tokenizer_of(tokenizer_or_processor)
    ids = tokenizer(rendered["text"], add_special_tokens=False)["input_ids"]
    images, videos = media_of(example)
    placeholder_ids = {getattr(tokenizer_or_processor, "image_token_id", None)}
    if videos and not hasattr(tokenizer_or_processor, "video_processor"):
        if not any(
            isinstance(video, (Mapping, str, bytes)) for video in videos
        ):  # decoded: frames are images
            images = [*images, *(frame for video in videos for frame in video)]
            placeholder_ids |= media_token_ids(tokenizer_or_processor)
    vision = _vision_tokens(tokenizer_or_processor, images)
    if vision is None:
        return len(ids)
    placeholders = sum(1 for token in ids if token in placeholder_ids)
    return len(ids) - placeholders + vision
