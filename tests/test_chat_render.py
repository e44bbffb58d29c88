"""llava_hf.chat.render: chat templates, assistant-only labels, LLaVA's own formats, lengths.

Real transformers tokenizers and processors, built locally (tests/fixtures/tiny_vlm.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("torch")

from PIL import Image

from llava_hf.chat import IGNORE_INDEX, TEMPLATES, ChatCollator, render, to_messages, token_length
from llava_hf.chat._templates import LLAVA_V1_SYSTEM, VICUNA_V1_SYSTEM
from llava_hf.errors import ChatTemplateError, LabelMaskError
from tests.fixtures.tiny_vlm import make_processor, make_tokenizer

pytestmark = pytest.mark.train

# A ChatML-like template with no {% generation %} markers: labels must come from prefixes.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% else %}<image>{% endif %}{% endfor %}{% endif %}</s>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def processor() -> Any:
    return make_processor()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return make_tokenizer()


def _multi_turn() -> dict[str, Any]:
    return {
        "id": "000000033471",
        "images": ["coco/1.jpg"],
        "videos": [],
        "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."},
            {"from": "human", "value": "Is it moving?"},
            {"from": "gpt", "value": "It is parked."},
        ],
    }


def _llava_two_sep_prompt(system: str, turns: list[tuple[str, str]]) -> str:
    """LLaVA's SeparatorStyle.TWO, re-implemented from conversation.py for the comparison."""
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(turns):
        ret += role + ": " + message + seps[i % 2]
    return ret


def _trained_runs(tokenizer: Any, input_ids: list[int], labels: list[int]) -> list[str]:
    """Decode each maximal run of trained tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = trained
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize(("name", "system"), [("vicuna_v1", VICUNA_V1_SYSTEM), ("llava_v1", LLAVA_V1_SYSTEM)])
def test_v1_templates_render_as_llava(tokenizer: Any, name: str, system: str) -> None:
    row = _multi_turn()
    out = render(row, tokenizer, template=name, tokenize=True)
    roles = {"human": "USER", "gpt": "ASSISTANT"}
    expected = _llava_two_sep_prompt(system, [(roles[t["from"]], t["value"]) for t in row["conversations"]])
    assert out["text"] == tokenizer.bos_token + expected
    assert out["input_ids"] == tokenizer(out["text"], add_special_tokens=False)["input_ids"]
    # every assistant turn, and only those, is trained: " answer</s>" as LLaVA's preprocess_v1 masks it
    answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
    assert _trained_runs(tokenizer, out["input_ids"], out["labels"]) == [f" {a}</s>" for a in answers]


def test_v1_system_turn_replaces_default_prompt(tokenizer: Any) -> None:
    row = {
        "id": "s1",
        "images": [],
        "conversations": [
            {"from": "system", "value": "You are terse."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello."},
        ],
    }
    out = render(row, tokenizer, template="vicuna_v1", tokenize=True)
    assert out["text"] == "<s>You are terse. USER: Hi ASSISTANT: Hello.</s>"
    assert _trained_runs(tokenizer, out["input_ids"], out["labels"]) == [" Hello.</s>"]


def test_plain_trains_only_the_caption(tokenizer: Any) -> None:
    row = {
        "id": "cap-1",
        "images": ["a.jpg"],
        "conversations": [
            {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
            {"from": "gpt", "value": "a red bus parked on a street"},
        ],
    }
    out = render(row, tokenizer, template="plain", tokenize=True)
    assert out["text"] == "<s><image>a red bus parked on a street\n"  # LLaVA's preprocess_plain
    assert _trained_runs(tokenizer, out["input_ids"], out["labels"]) == ["a red bus parked on a street\n"]
    three = {**row, "conversations": [*row["conversations"], {"from": "human", "value": "more"}]}
    with pytest.raises(ChatTemplateError, match="cap-1"):
        render(three, tokenizer, template="plain")


def test_template_without_generation_markers_masks_every_turn(tokenizer: Any) -> None:
    assert "{% generation %}" not in CHATML
    row = _multi_turn()
    out = render(row, tokenizer, template=CHATML, tokenize=True)
    answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
    assert _trained_runs(tokenizer, out["input_ids"], out["labels"]) == [f"{a}</s>\n" for a in answers]
    assert out["text"].count("<|im_start|>assistant\n") == 3


@pytest.mark.parametrize("template", ["vicuna_v1", "llava_v1", "plain", None])
def test_labels_match_transformers_generation_masks(tokenizer: Any, template: str | None) -> None:
    """Where a template has {% generation %} markers, transformers' own assistant mask agrees with ours."""
    row = _multi_turn()
    if template == "plain":
        row = {**row, "conversations": row["conversations"][:2]}
    ours = render(row, tokenizer, template=template, tokenize=True)
    theirs = tokenizer.apply_chat_template(
        to_messages(row)["messages"],
        chat_template=None if template is None else TEMPLATES[template],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    assert theirs["input_ids"] == ours["input_ids"]
    assert theirs["assistant_masks"] == [int(label != IGNORE_INDEX) for label in ours["labels"]]


def test_same_text_from_conversations_and_messages(processor: Any) -> None:
    row = _multi_turn()
    messages_row = to_messages(row, format="processor")
    before, messages_before = copy.deepcopy(row), copy.deepcopy(messages_row)
    a = render(row, processor, tokenize=True)
    b = render(messages_row, processor, tokenize=True)
    assert a == b
    assert row == before and messages_row == messages_before  # render never touches its input
    assert a["text"] == processor.apply_chat_template(to_messages(row)["messages"], tokenize=False)


def test_prefix_mismatch_is_an_error_naming_the_record(tokenizer: Any) -> None:
    # a template that renders earlier assistant turns differently once the conversation goes on
    rewriting = (
        "{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}[old]"
        "{% else %}{{ message['role'] }}: {% for p in message['content'] %}{% if p['type'] == 'text' %}"
        "{{ p['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    )
    with pytest.raises(LabelMaskError, match="000000033471") as info:
        render(_multi_turn(), tokenizer, template=rewriting, tokenize=True)
    assert info.value.id == "000000033471"
    # no assistant turn: never a silently all-masked sample
    only_user = {"id": "u1", "images": [], "conversations": [{"from": "human", "value": "Hi"}]}
    assert render(only_user, tokenizer, template="vicuna_v1")["text"].endswith("USER: Hi ")
    with pytest.raises(LabelMaskError, match="u1"):
        render(only_user, tokenizer, template="vicuna_v1", tokenize=True)


def test_conversation_starting_with_the_assistant_is_loud(tokenizer: Any) -> None:
    """transformers renders no empty conversation, so the prompt before a leading assistant turn is
    unknown: an error naming the record (LLaVA's preprocessing drops such a turn)."""
    row = {"id": "g1", "images": [], "conversations": [{"from": "gpt", "value": "Welcome."}]}
    assert render(row, tokenizer, template="vicuna_v1")["text"].endswith("ASSISTANT: Welcome.</s>")
    with pytest.raises(LabelMaskError, match="g1") as info:
        render(row, tokenizer, template="vicuna_v1", tokenize=True)
    assert "leading assistant turn" in (info.value.hint or "")


def test_token_straddling_a_span_edge_is_an_error(tokenizer: Any) -> None:
    # The generation prompt stops in the middle of a word the tokenizer keeps whole.
    assert tokenizer.tokenize("Hi") == ["Hi"]
    straddle = (
        "{% for message in messages %}{% if message['role'] == 'assistant' %}H"
        "{% for p in message['content'] %}{{ p['text'] }}{% endfor %}{% else %}"
        "{% for p in message['content'] %}{{ p['text'] }}{% endfor %}{{ '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}H{% endif %}"
    )
    row = {
        "id": "edge",
        "images": [],
        "conversations": [{"from": "human", "value": "Say"}, {"from": "gpt", "value": "i."}],
    }
    with pytest.raises(LabelMaskError, match="straddles"):
        render(row, tokenizer, template=straddle, tokenize=True)


def test_unknown_template_and_no_template(tokenizer: Any) -> None:
    with pytest.raises(ChatTemplateError, match="vicuna"):
        render(_multi_turn(), tokenizer, template="vicuna_v9")
    bare = make_tokenizer(chat_template=None)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        render(_multi_turn(), bare)


def test_batch_render(tokenizer: Any) -> None:
    rows = [_multi_turn(), {**_multi_turn(), "id": "b"}]
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    out = render(batch, tokenizer, template="vicuna_v1", tokenize=True)
    assert out["labels"] == [
        render(r, tokenizer, template="vicuna_v1", tokenize=True)["labels"] for r in rows
    ]


def test_collator_expands_image_tokens_and_keeps_masks(processor: Any) -> None:
    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (20, 20), "blue")]
    rows = [
        {**_multi_turn(), "images": [images[0]]},
        {
            "id": "two",
            "images": images,
            "videos": [],
            "conversations": [
                {"from": "human", "value": "Compare <image> and\n<image>"},
                {"from": "gpt", "value": "The first is red."},
            ],
        },
        {
            "id": "text",
            "images": [],
            "videos": [],
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi."}],
        },
    ]
    batch = ChatCollator(processor, template="vicuna_v1")(rows)
    image_id = processor.image_token_id
    assert batch["pixel_values"].shape == (3, 3, 28, 28)
    for i, row in enumerate(rows):
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1].tolist()
        labels = batch["labels"][i][batch["attention_mask"][i] == 1].tolist()
        assert ids.count(image_id) == 4 * len(row["images"])  # 2x2 patches per 28x28 image
        assert all(label == IGNORE_INDEX for token, label in zip(ids, labels) if token == image_id)
        answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
        assert _trained_runs(processor.tokenizer, ids, labels) == [f" {a}</s>" for a in answers]
        assert (batch["labels"][i][batch["attention_mask"][i] == 0] == IGNORE_INDEX).all()


def _decoded_video(name: str, frames: int) -> Any:
    from pathlib import Path

    from llava_hf.media.video import VideoSampling, decode_video

    data = (Path(__file__).parent / "data" / "real" / name).read_bytes()
    return decode_video(data, VideoSampling.from_options(num_frames=frames)).frames


def _video_rows() -> list[dict[str, Any]]:
    """A real MP4 (3 frames) before an image, two videos (a real AVI and MP4, 2 frames each), text only."""
    image = Image.new("RGB", (40, 30), "red")
    return [
        {
            "id": "clip-then-image",
            "images": [image],
            "videos": [_decoded_video("1.mp4", 3)],
            "conversations": [
                {"from": "human", "value": "<video>\nWhat happens? Compare with <image>"},
                {"from": "gpt", "value": "A baby reads a book."},
                {"from": "human", "value": "And then?"},
                {"from": "gpt", "value": "Nothing."},
            ],
        },
        {
            "id": "two-clips",
            "images": [],
            "videos": [_decoded_video("2.avi", 2), _decoded_video("4.mp4", 2)],
            "conversations": [
                {"from": "human", "value": "<video><video>\nCompare the clips."},
                {"from": "gpt", "value": "Both move."},
            ],
        },
        {
            "id": "text",
            "images": [],
            "videos": [],
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi."}],
        },
    ]


@pytest.mark.parametrize("template", ["vicuna_v1", None])
def test_collator_gives_video_frames_to_the_image_processor(processor: Any, template: str | None) -> None:
    """LLaVA-NeXT's way: each frame is an image, a <video> tag becomes T x the tokens per image."""
    import torch

    rows = _video_rows()
    batch = ChatCollator(processor, template=template)(rows)
    image_id, video_id = processor.image_token_id, processor.tokenizer.convert_tokens_to_ids("<video>")
    in_order = [[*rows[0]["videos"][0], rows[0]["images"][0]], [*rows[1]["videos"][0], *rows[1]["videos"][1]]]
    expected_pixels = processor.image_processor([im for row in in_order for im in row], return_tensors="pt")
    assert torch.equal(batch["pixel_values"], expected_pixels["pixel_values"])  # frames in text order
    for i, row in enumerate(rows):
        mask = batch["attention_mask"][i] == 1
        ids, labels = batch["input_ids"][i][mask].tolist(), batch["labels"][i][mask].tolist()
        frames = sum(len(video) for video in row["videos"])
        assert video_id not in ids
        assert ids.count(image_id) == 4 * (len(row["images"]) + frames)  # 2x2 patches per frame
        assert all(label == IGNORE_INDEX for token, label in zip(ids, labels) if token == image_id)
        answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
        # both templates train " answer</s>" after "ASSISTANT:"
        assert _trained_runs(processor.tokenizer, ids, labels) == [f" {a}</s>" for a in answers]
        assert token_length(row, processor, template=template) == len(ids)


def test_collator_refuses_undecoded_videos(processor: Any) -> None:
    row = _video_rows()[1]
    row["videos"] = [{"bytes": b"...", "path": "clip.mp4"}, row["videos"][1]]
    with pytest.raises(ChatTemplateError, match="'two-clips': videos are not decoded") as err:
        ChatCollator(processor)([row])
    assert "decode_media" in (err.value.hint or "")


def test_token_length_counts_vision_tokens(processor: Any) -> None:
    image = Image.new("RGB", (64, 48), "red")
    row = {**_multi_turn(), "images": [image]}
    text_ids = render(row, processor, tokenize=True)["input_ids"]
    assert token_length(row, processor) == len(text_ids) - 1 + 4
    undecoded = {**row, "images": [{"bytes": _jpeg_bytes(image), "path": "x.jpg"}]}
    assert token_length(undecoded, processor) == token_length(row, processor)
    assert token_length(row, processor.tokenizer) == len(text_ids)  # a tokenizer cannot say


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def test_length_column_for_grouping_and_filtering(processor: Any) -> None:
    import datasets

    from llava_hf.schema import features_for
    from tests.fixtures.chat_rows import schema_rows

    ds = datasets.Dataset.from_list(schema_rows(), features=features_for())
    with_length = ds.map(lambda row: {"length": token_length(row, processor)})
    lengths = with_length["length"]
    for row, length in zip(ds, lengths):
        text_ids = render(row, processor, tokenize=True)["input_ids"]
        assert length == len(text_ids) + 3 * len(row["images"])  # each <image> becomes 4 tokens
    limit = sorted(lengths)[1]
    short = with_length.filter(lambda row: row["length"] <= limit)
    assert sorted(short["length"]) == [n for n in sorted(lengths) if n <= limit]


def test_trl_and_processor_take_the_parts_as_they_are(processor: Any) -> None:
    """TRL fills the ``{"type": "image"}`` placeholders (a recorded newline is harmless); the processor
    format goes straight into ``processor.apply_chat_template``."""
    from trl.data_utils import prepare_multimodal_messages

    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (30, 40), "blue")]
    row = {
        "id": "two",
        "images": images,
        "videos": [],
        "conversations": [
            {"from": "human", "value": "<image>\nCompare with\n<image>"},
            {"from": "gpt", "value": "Red, then blue."},
        ],
    }
    trl_row = to_messages(row)
    filled = prepare_multimodal_messages(trl_row["messages"], images=trl_row["images"])
    held = [p["image"] for m in filled for p in m["content"] if p["type"] == "image"]
    assert held == images

    proc_row = to_messages(row, format="processor")
    out = processor.apply_chat_template(
        proc_row["messages"], tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert list(out["pixel_values"].shape) == [2, 3, 28, 28]
    assert list(out["input_ids"][0]).count(processor.image_token_id) == 8


# The chat template shipped with llava-hf/llava-1.5-7b-hf (images first in each turn, text after).
LLAVA_15_HF = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def test_a_hub_model_template_against_its_generation_masks(tokenizer: Any) -> None:
    """This template's generation prompt is ``ASSISTANT:`` but its markers open after ``ASSISTANT: ``.
    The model, prompted with ``ASSISTANT:``, must generate the space, so render trains it; otherwise
    the masks agree token for token."""
    row = _multi_turn()
    ours = render(row, tokenizer, template=LLAVA_15_HF, tokenize=True)
    assert ours["text"].startswith("USER: <image>\nWhat are the colors")
    theirs = tokenizer.apply_chat_template(
        to_messages(row)["messages"],
        chat_template=LLAVA_15_HF,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    assert theirs["input_ids"] == ours["input_ids"]
    mask = [int(label != IGNORE_INDEX) for label in ours["labels"]]
    extra = [i for i, (a, b) in enumerate(zip(mask, theirs["assistant_masks"])) if a != b]
    assert all(mask[i] == 1 and theirs["assistant_masks"][i + 1] == 1 for i in extra)
    # only where the space is a token of its own (" It"); " The" is one token, trained by both
    assert extra and all(tokenizer.decode([ours["input_ids"][i]]) == " " for i in extra)
    answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
    assert _trained_runs(tokenizer, ours["input_ids"], ours["labels"]) == [f" {a} " for a in answers]


def test_token_length_from_image_seq_length(processor: Any) -> None:
    """Processors without ``_get_num_multimodal_tokens`` but a fixed ``image_seq_length`` (PaliGemma-like)."""
    from transformers import LlavaProcessor

    class FixedLengthProcessor(LlavaProcessor):
        _get_num_multimodal_tokens = None  # type: ignore[assignment]
        image_seq_length = 7

    fixed = FixedLengthProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=processor.chat_template,
    )
    row = {**_multi_turn(), "images": [Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))]}
    row["conversations"] = [
        {"from": "human", "value": "<image><image>\nTwo?"},
        {"from": "gpt", "value": "Yes."},
    ]
    text_ids = render(row, fixed, tokenize=True)["input_ids"]
    assert token_length(row, fixed) == len(text_ids) - 2 + 2 * 7
