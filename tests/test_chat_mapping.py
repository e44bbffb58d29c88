"""llava_hf.chat.to_messages / from_messages: exact, pure, loud; on rows, batches and datasets."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from llava_hf.chat import DEFAULT_ROLES, as_messages, from_messages, to_messages
from llava_hf.errors import ChatTemplateError, UsageError
from llava_hf.schema import features_for
from tests.fixtures.chat_rows import schema_rows


def _row(*turns: tuple[str, str], images: int = 0, videos: int = 0, rid: str = "r1") -> dict[str, Any]:
    return {
        "id": rid,
        "images": [f"img{i}.jpg" for i in range(images)],
        "videos": [f"vid{i}.mp4" for i in range(videos)],
        "conversations": [{"from": who, "value": value} for who, value in turns],
    }


# -- the part layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        (
            "<image>\nWhat is it?",
            [{"type": "image", "text": "<image>\n"}, {"type": "text", "text": "What is it?"}],
        ),
        (
            "What is it?\n<image>",
            [{"type": "text", "text": "What is it?"}, {"type": "image", "text": "\n<image>"}],
        ),
        ("What is it?<image>", [{"type": "text", "text": "What is it?"}, {"type": "image"}]),
        ("<image>What is it?", [{"type": "image"}, {"type": "text", "text": "What is it?"}]),
        (
            "Compare <image> and\n<image>",
            [
                {"type": "text", "text": "Compare "},
                {"type": "image"},
                {"type": "text", "text": " and"},
                {"type": "image", "text": "\n<image>"},
            ],
        ),
        (
            "<image>\n<image>\nBoth?",
            [
                {"type": "image", "text": "<image>\n"},
                {"type": "image", "text": "<image>\n"},
                {"type": "text", "text": "Both?"},
            ],
        ),
        (
            "A\n<image>\nB",
            [
                {"type": "text", "text": "A"},
                {"type": "image", "text": "\n<image>\n"},
                {"type": "text", "text": "B"},
            ],
        ),
        (
            "<image>\n\nTwo newlines",
            [{"type": "image", "text": "<image>\n"}, {"type": "text", "text": "\nTwo newlines"}],
        ),
        (
            "<video>\nWhat happens?",
            [{"type": "video", "text": "<video>\n"}, {"type": "text", "text": "What happens?"}],
        ),
        ("<image>", [{"type": "image"}]),
        ("Say hi.", [{"type": "text", "text": "Say hi."}]),
    ],
)
def test_tags_become_parts_where_they_stood(value: str, parts: list[dict[str, str]]) -> None:
    n_images, n_videos = value.count("<image>"), value.count("<video>")
    row = _row(("human", value), ("gpt", "ok"), images=n_images, videos=n_videos)
    out = to_messages(row)
    assert out["messages"][0] == {"role": "user", "content": parts}
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    assert from_messages(out) == row


def test_roles_system_first_and_every_column_kept() -> None:
    row = _row(("system", "Be brief."), ("human", "Hi <image>"), ("gpt", "Hello."), images=1)
    row["source"] = "a.json"
    row["metadata"] = {"task": "x"}
    out = to_messages(row)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    assert "conversations" not in out
    assert out["id"] == "r1" and out["source"] == "a.json" and out["metadata"] == {"task": "x"}
    assert out["images"] == row["images"] and out["videos"] == []
    assert from_messages(out) == row


def test_i_th_image_part_is_images_i_in_processor_format() -> None:
    images = [Image.new("RGB", (4, 4), c) for c in ("red", "green", "blue")]
    row = {
        "id": "multi",
        "images": images,
        "videos": [],
        "conversations": [
            {"from": "human", "value": "<image>\nFirst, then <image>"},
            {"from": "gpt", "value": "Yes."},
            {"from": "human", "value": "And\n<image>"},
            {"from": "gpt", "value": "Blue."},
        ],
    }
    out = to_messages(row, format="processor")
    held = [p["image"] for m in out["messages"] for p in m["content"] if p["type"] == "image"]
    assert [id(x) for x in held] == [id(x) for x in images]
    assert from_messages(out) == row
    trl = to_messages(row)
    assert all("image" not in p for m in trl["messages"] for p in m["content"])


def test_pure_input_untouched_and_output_new() -> None:
    row = _row(("human", "<image>\nQ"), ("gpt", "A"), images=1)
    before = copy.deepcopy(row)
    out = to_messages(row)
    assert row == before
    out["images"].append("extra")
    out["messages"][0]["content"].clear()
    assert row == before
    back_input = copy.deepcopy(to_messages(row))
    msgs = to_messages(row)
    back = from_messages(msgs)
    assert msgs == back_input
    back["conversations"][0]["value"] = "changed"
    assert msgs == back_input and row == before


def test_custom_role_map_round_trips() -> None:
    roles = {"USER": "user", "ASSISTANT": "assistant"}
    row = _row(("USER", "<image>\nQ"), ("ASSISTANT", "A"), images=1)
    out = to_messages(row, roles=roles)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"]
    assert from_messages(out, roles=roles) == row
    with pytest.raises(ChatTemplateError, match="'USER'"):
        to_messages(row)  # the default map does not know USER


# -- loud failures --------------------------------------------------------------------------------


def test_unknown_role_names_the_record() -> None:
    row = _row(("human", "Q"), ("bot", "A"), rid="rec-7")
    with pytest.raises(ChatTemplateError, match="rec-7") as info:
        to_messages(row)
    assert info.value.id == "rec-7"
    assert "bot" in str(info.value) and info.value.hint


@pytest.mark.parametrize(
    ("value", "images", "videos", "what"),
    [
        ("<image>\nQ", 0, 0, "image"),
        ("Q", 1, 0, "image"),
        ("<image><image>", 1, 0, "image"),
        ("<video>\nQ", 0, 0, "video"),
        ("Q", 0, 2, "video"),
    ],
)
def test_tag_media_count_mismatch_names_the_record(value: str, images: int, videos: int, what: str) -> None:
    row = _row(("human", value), ("gpt", "A"), images=images, videos=videos, rid="rec-9")
    with pytest.raises(ChatTemplateError, match="rec-9") as info:
        to_messages(row)
    assert what in str(info.value)
    assert info.value.id == "rec-9"


def test_from_messages_checks_too() -> None:
    good = to_messages(_row(("human", "<image>\nQ"), ("gpt", "A"), images=1, rid="m1"))
    with pytest.raises(ChatTemplateError, match="m1"):
        from_messages({**good, "images": []})
    with pytest.raises(ChatTemplateError, match="m1"):
        from_messages({**good, "messages": [{"role": "tool", "content": "x"}]})
    bad_part = copy.deepcopy(good)
    bad_part["messages"][0]["content"][0]["text"] = "not a tag"
    with pytest.raises(ChatTemplateError, match="m1"):
        from_messages(bad_part)
    with pytest.raises(UsageError, match="both"):
        from_messages(good, roles={"human": "user", "USER": "user", "gpt": "assistant"})
    with pytest.raises(UsageError):
        to_messages(_row(("human", "Q")), format="openai")  # type: ignore[arg-type]


def test_string_content_and_arrow_null_keys_map_back() -> None:
    """Messages as other tools store them: string content, and parts with every key (None when unset)."""
    row = {
        "id": "s",
        "images": ["a.jpg"],
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Q"}]},
            {"role": "assistant", "content": "A"},
        ],
    }
    assert from_messages(row)["conversations"] == [
        {"from": "human", "value": "<image>Q"},
        {"from": "gpt", "value": "A"},
    ]


# -- property: exact round trip -------------------------------------------------------------------

_PIECES = st.sampled_from(["<image>", "<video>", "\n", "\n\n", " ", "text", "a b", "<", "image>", "é"])
_VALUE = st.lists(_PIECES, max_size=8).map("".join)
_TURN = st.tuples(st.sampled_from(["human", "gpt", "system"]), _VALUE)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TURN, max_size=6))
def test_round_trip_is_exact_for_any_layout(turns: list[tuple[str, str]]) -> None:
    n_images = sum(v.count("<image>") for _, v in turns)
    n_videos = sum(v.count("<video>") for _, v in turns)
    row = _row(*turns, images=n_images, videos=n_videos)
    out = to_messages(row)
    assert from_messages(out) == row
    parts = [p for m in out["messages"] for p in m["content"]]
    assert sum(p["type"] == "image" for p in parts) == n_images
    assert sum(p["type"] == "video" for p in parts) == n_videos
    for p in parts:
        if p["type"] == "text":
            assert p["text"] and "<image>" not in p["text"] and "<video>" not in p["text"]
    processor_out = to_messages(row, format="processor")
    assert from_messages(processor_out) == row


# -- batches and datasets -------------------------------------------------------------------------


def test_batch_dict_of_lists() -> None:
    rows = [
        _row(("human", "<image>\nQ"), ("gpt", "A"), images=1, rid="a"),
        _row(("human", "Q"), ("gpt", "A"), rid="b"),
    ]
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    out = to_messages(batch)
    assert out["messages"] == [to_messages(r)["messages"] for r in rows]
    assert out["images"] == [["img0.jpg"], []]
    assert from_messages(out) == batch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_dataset_map_batched_or_not_and_with_transform() -> None:
    rows = schema_rows()
    ds = datasets.Dataset.from_list(rows, features=features_for())
    for batched in (False, True):
        mapped = ds.map(to_messages, batched=batched, remove_columns=["conversations"])
        assert mapped.column_names == [c for c in ds.column_names if c != "conversations"] + ["messages"]
        assert mapped.features["images"] == ds.features["images"]
        first = mapped[0]
        assert isinstance(first["images"][0], Image.Image)
        assert first["messages"][0]["content"][0] == {"type": "image", "text": "<image>\n"}
        assert [from_messages(r)["conversations"] for r in mapped] == [r["conversations"] for r in rows]

    lazy = ds.with_transform(to_messages)
    assert lazy[0]["messages"] == to_messages(rows[0])["messages"]
    assert isinstance(lazy[1]["images"][1], Image.Image)
    proc = ds.with_transform(lambda b: to_messages(b, format="processor"))
    part = proc[1]["messages"][1]["content"][1]
    assert part["type"] == "image" and isinstance(part["image"], Image.Image)


def test_iterable_dataset_map_batched_or_not() -> None:
    rows = schema_rows()
    ids = datasets.Dataset.from_list(rows, features=features_for()).to_iterable_dataset(num_shards=2)
    for batched in (False, True):
        mapped = ids.map(to_messages, batched=batched, batch_size=2, remove_columns=["conversations"])
        got = list(mapped)
        assert [r["id"] for r in got] == [r["id"] for r in rows]
        assert all(isinstance(img, Image.Image) for r in got for img in r["images"])
        assert [from_messages(r)["conversations"] for r in got] == [r["conversations"] for r in rows]


def test_as_messages_keeps_stored_bytes_and_schema() -> None:
    rows = schema_rows()
    ds = datasets.Dataset.from_list(rows, features=features_for())
    out = as_messages(ds, decode=False)
    assert out.features["messages"] == features_for("messages")["messages"]
    assert out.features["images"] == features_for(decode=False)["images"]
    for row, got in zip(rows, out):
        assert [_sha(i["bytes"]) for i in got["images"]] == [_sha(i["bytes"]) for i in row["images"]]
        assert [i["path"] for i in got["images"]] == [i["path"] for i in row["images"]]
        assert from_messages(got)["conversations"] == row["conversations"]
    decoded = as_messages(ds)
    assert isinstance(decoded[0]["images"][0], Image.Image)
    assert decoded.features["images"] == ds.features["images"]

    streamed = as_messages(ds.to_iterable_dataset())
    got_rows = list(streamed)
    assert [from_messages(r)["conversations"] for r in got_rows] == [r["conversations"] for r in rows]
    assert [r["messages"] for r in got_rows] == [to_messages(r)["messages"] for r in rows]
    assert isinstance(got_rows[0]["images"][0], Image.Image)
    proc = as_messages(ds, format="processor")
    assert isinstance(proc[0]["messages"][0]["content"][0]["image"], Image.Image)


def test_stored_messages_row_maps_back_to_conversations(tmp_path: Any) -> None:
    """A ``--format messages`` row, after Parquet and back (image parts gain ``text: None``), restores
    the conversations exactly."""
    rows = schema_rows()
    stored = []
    for row in rows:
        mapped = to_messages(row)
        stored.append({k: mapped[k] for k in features_for("messages")})
    ds = datasets.Dataset.from_list(stored, features=features_for("messages"))
    path = tmp_path / "train-00000-of-00001.parquet"
    ds.to_parquet(str(path))
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    for row, got in zip(rows, loaded.cast(features_for("messages", decode=False))):
        assert from_messages(got)["conversations"] == row["conversations"]
        assert all(set(p) == {"type", "text"} for m in got["messages"] for p in m["content"])


def test_builder_messages_format_maps_back(llava_dir: Any, write_json: Any, sample_records: Any) -> None:
    """``LlavaBuilder(format="messages")`` stores what from_messages turns back into the source turns."""
    from llava_hf import load_llava

    path = write_json(sample_records)
    conv = load_llava(
        str(path), image_folder=llava_dir / "images", video_folder=llava_dir / "videos", split="train"
    )
    msgs = load_llava(
        str(path),
        image_folder=llava_dir / "images",
        video_folder=llava_dir / "videos",
        split="train",
        format="messages",
    )
    assert "messages" in msgs.column_names and "conversations" not in msgs.column_names
    by_id = {r["id"]: r["conversations"] for r in conv.select_columns(["id", "conversations"])}
    back = [
        from_messages(r)
        for r in msgs.select_columns(["id", "messages", "images", "videos"]).cast(
            datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "messages": features_for("messages")["messages"],
                    "images": features_for(decode=False)["images"],
                    "videos": features_for(decode=False)["videos"],
                }
            )
        )
    ]
    assert {r["id"]: r["conversations"] for r in back} == by_id
    assert by_id == {str(r["id"]): r["conversations"] for r in sample_records}


def test_default_roles_are_llava_speakers() -> None:
    assert dict(DEFAULT_ROLES) == {"human": "user", "gpt": "assistant", "system": "system"}


def test_render_without_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """render, token_length and ChatCollator need the train extra, and say so (runs with or without it)."""
    import sys

    from llava_hf.chat import ChatCollator, render, token_length
    from llava_hf.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    row = _row(("human", "Q"), ("gpt", "A"))
    for call in (
        lambda: render(row, object()),
        lambda: token_length(row, object()),
        lambda: ChatCollator(object()),
    ):
        with pytest.raises(MissingDependencyError) as info:
            call()
        hint = info.value.hint or ""
        assert info.value.extra == "train" and hint.startswith("pip install transformers ")
        assert "pip install -e '.[train]'" in hint


def test_builder_stream_with_videos_as_messages(llava_dir: Any, write_json: Any, sample_records: Any) -> None:
    """Every record shape of the builder's stream (images, a GIF, a video, text-only) maps, and maps back."""
    from llava_hf import LlavaBuilder

    path = write_json(sample_records)
    builder = LlavaBuilder(
        data_files=str(path), image_folder=str(llava_dir / "images"), video_folder=str(llava_dir / "videos")
    )
    rows = list(as_messages(builder.as_streaming_dataset(split="train")))
    assert [r["id"] for r in rows] == [str(r["id"]) for r in sample_records]
    video_row = next(r for r in rows if r["id"] == "vid-1")
    assert video_row["messages"][0]["content"][0] == {"type": "video", "text": "<video>\n"}
    assert len(video_row["videos"]) == 1 and video_row["video_info"][0]["num_frames"] > 0
    for record, row in zip(sample_records, rows):
        assert "conversations" not in row
        assert from_messages(row)["conversations"] == record["conversations"]
        assert all(isinstance(image, Image.Image) for image in row["images"])


def test_as_messages_on_a_messages_format_dataset() -> None:
    """A ``--format messages`` dataset is TRL's layout already: as_messages only decodes, or fills parts."""
    rows = schema_rows()
    stored = [{k: to_messages(row)[k] for k in features_for("messages")} for row in rows]
    ds = datasets.Dataset.from_list(stored, features=features_for("messages"))
    for source in (ds, ds.to_iterable_dataset()):
        trl_rows = list(as_messages(source))
        assert [from_messages(r)["conversations"] for r in trl_rows] == [r["conversations"] for r in rows]
        assert isinstance(trl_rows[0]["images"][0], Image.Image)
        proc_rows = list(as_messages(source, format="processor"))
        part = proc_rows[1]["messages"][1]["content"][1]
        assert part["type"] == "image" and isinstance(part["image"], Image.Image)
        raw = list(as_messages(source, decode=False))
        assert raw[0]["images"][0]["bytes"] == rows[0]["images"][0]["bytes"]


def test_label_offsets_edges() -> None:
    """Tokens wholly inside a span are trained, zero-width ones go with where they stand, and a token
    across a span edge is an error (pure helper: no tokenizer needed)."""
    from llava_hf.chat._render import _labels_from_offsets
    from llava_hf.errors import LabelMaskError

    text = "USER: hi ASSISTANT: yo</s>"
    a = text.index(" yo")
    spans = [(a, len(text))]
    ids = [1, 2, 3, 4, 5, 6]
    offsets = [(0, 5), (5, 8), (8, 19), (a, a), (a, a + 3), (a + 3, len(text))]
    assert _labels_from_offsets(ids, offsets, spans, text, "r") == [-100, -100, -100, 4, 5, 6]
    with pytest.raises(LabelMaskError, match="straddles"):
        _labels_from_offsets([1, 2], [(0, a + 1), (a + 1, len(text))], spans, text, "r")
    with pytest.raises(LabelMaskError, match="owns no token"):
        _labels_from_offsets([1], [(0, a)], spans, text, "r")


def test_public_api() -> None:
    import llava_hf.chat as chat

    assert all(hasattr(chat, name) for name in chat.__all__)
    assert {"to_messages", "from_messages", "render", "as_messages", "ChatCollator", "TEMPLATES"} <= set(
        chat.__all__
    )
    assert set(chat.TEMPLATES) == {"plain", "vicuna_v1", "llava_v1"}


# -- videos for trainers -------------------------------------------------------------------------


def _video_dataset() -> datasets.Dataset:
    """Rows of the stored schema holding the real MP4 and AVI (bytes + path, video_info probed with av)."""
    from pathlib import Path

    from llava_hf.media.files import probe_video

    real = Path(__file__).parent / "data" / "real"
    clips = {name: (real / name).read_bytes() for name in ("1.mp4", "2.avi")}
    info = {name: probe_video(name, data=data).to_dict() for name, data in clips.items()}
    rows = [
        {
            "id": "one",
            "images": [],
            "videos": [{"bytes": clips["1.mp4"], "path": "clips/1.mp4"}],
            "video_frames": [[]],
            "video_info": [info["1.mp4"]],
            "audios": [],
            "audio_info": [],
            "conversations": [
                {"from": "human", "value": "<video>\nWhat happens?"},
                {"from": "gpt", "value": "A baby reads."},
            ],
            "source": "v.json",
            "metadata": {},
        },
        {
            "id": "two",
            "images": [],
            "videos": [{"bytes": clips[n], "path": f"clips/{n}"} for n in ("2.avi", "1.mp4")],
            "video_frames": [[], []],
            "video_info": [info["2.avi"], info["1.mp4"]],
            "audios": [],
            "audio_info": [],
            "conversations": [
                {"from": "human", "value": "<video> or <video>?"},
                {"from": "gpt", "value": "The first."},
            ],
            "source": "v.json",
            "metadata": {},
        },
    ]
    return datasets.Dataset.from_list(rows, features=features_for())


def _video_parts(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for m in row["messages"] for p in m["content"] if p["type"] == "video"]


@pytest.mark.parametrize("streaming", [False, True])
def test_processor_video_parts_hold_frames_times_and_metadata(streaming: bool) -> None:
    """The data contract of transformers' video processors, checked with transformers' own helpers
    (transformers.video_utils; the processors themselves need torchvision): a (T, H, W, 3) uint8 array
    (or its list of frames), and metadata whose timestamps are the sampled frames' times."""
    import numpy as np

    video_utils = pytest.importorskip("transformers.video_utils")
    validators = pytest.importorskip("transformers.utils.type_validators")

    ds = _video_dataset()
    source = ds.to_iterable_dataset() if streaming else ds
    rows = list(as_messages(source, format="processor", num_frames=4))
    assert [len(_video_parts(r)) for r in rows] == [1, 2]
    for row, stored in zip(rows, ds.cast(features_for(decode=False))):
        assert from_messages(row)["conversations"] == stored["conversations"]
        for k, part in enumerate(_video_parts(row)):
            frames, info = part["video"], stored["video_info"][k]
            assert frames is row["videos"][k]
            assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8
            assert frames.shape == (4, info["height"], info["width"], 3)
            assert part["timestamps"] == row["video_timestamps"][k] and len(part["timestamps"]) == 4
            assert video_utils.is_valid_video(frames)
            batched = video_utils.make_batched_videos([list(frames)])  # a list of frames is one video too
            assert len(batched) == 1 and np.array_equal(batched[0], frames)
            metadata = part["video_metadata"]
            validators.video_metadata_validator(metadata)  # only keys transformers knows
            md = video_utils.VideoMetadata(**metadata)
            assert md.total_num_frames == info["num_frames"] and md.fps == info["fps"]
            assert md.timestamps == pytest.approx(part["timestamps"], abs=1e-6)


def test_trl_format_keeps_decoded_videos_and_times_as_columns() -> None:
    rows = list(as_messages(_video_dataset(), fps=1.0))
    assert [len(t) for t in rows[0]["video_timestamps"]] == [len(v) for v in rows[0]["videos"]] == [10]
    assert rows[0]["video_timestamps"][0][:3] == pytest.approx([0.0, 1.0, 2.0])
    assert all("video" not in p for p in _video_parts(rows[1]))  # TRL's placeholders


def test_processor_format_without_decoding_leaves_media_as_stored() -> None:
    ds = _video_dataset()
    row = as_messages(ds, format="processor", decode=False)[1]
    assert [p["video"]["path"] for p in _video_parts(row)] == ["clips/2.avi", "clips/1.mp4"]
    assert "timestamps" not in _video_parts(row)[0] and "video_timestamps" not in row
    assert row["metadata"] == {}  # other columns still decode
