"""The peer trainers' layouts (LLaMA-Factory, ms-swift): validate, build, load with plain datasets, and
export back to the same JSON value with byte-identical media."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest

from llava_hf import build_folder
from llava_hf.cli import main
from llava_hf.export import export_llava
from llava_hf.records import LAYOUT_KEY, iter_records
from llava_hf.records.layouts import LayoutError, canonical, detect, render, shape_of

PEERS = Path(__file__).parent / "data" / "peers"


def read_any(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def media_paths(record: dict[str, Any]) -> list[str]:
    paths: list[str] = []
    for key in ("image", "images", "video", "videos"):
        value = record.get(key)
        paths += [value] if isinstance(value, str) else list(value or [])
    for turn in record.get("messages", []):
        for part in turn.get("content") if isinstance(turn.get("content"), list) else []:
            if part.get("type") in ("image_url", "video_url"):
                paths.append(part["value"])
    return paths


def copy_peer(tmp_path: Path, name: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(PEERS / "mllm_demo_data", data / "mllm_demo_data")
    shutil.copy(PEERS / name, data / name)
    return data / name


def round_trip(tmp_path: Path, name: str, **export: Any) -> tuple[list[Any], Path]:
    source = copy_peer(tmp_path, name)
    assert main(["validate", str(source)]) == 0
    built = tmp_path / "built"
    build_folder(str(source), built)
    loaded = datasets.load_dataset(str(built), split="train")
    rows = list(loaded.select_columns(["id", "conversations", "metadata"]))  # videos decode with torchcodec
    assert len(rows) == len(read_any(source))
    out = tmp_path / "export"
    export_llava(built, out, **export)
    return rows, out


@pytest.mark.parametrize("name", ["lf_v1.jsonl", "messages.json", "swift.jsonl", "sharegpt.json"])
def test_a_peer_layout_builds_loads_and_exports_as_it_came(tmp_path: Path, name: str) -> None:
    rows, out = round_trip(tmp_path, name)
    original = read_any(PEERS / name)
    exported = json.loads((out / "train.json").read_text(encoding="utf-8"))
    assert exported == original
    for record in original:  # media beside the JSON, at their paths, byte for byte
        for path in media_paths(record):
            assert (out / path).read_bytes() == (PEERS / path).read_bytes()
    assert all(row["conversations"] for row in rows)


def test_v1_parts_become_tags_and_media_in_order() -> None:
    raw = read_any(PEERS / "lf_v1.jsonl")[0]
    assert detect(raw) == "lf_v1"
    records = [r for r, problems in iter_records(PEERS / "lf_v1.jsonl") if not problems]
    first = records[0]
    assert first is not None
    assert first.images == ("mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg")
    assert [t.value for t in first.conversations][::2] == [
        "<image>Who is in the picture?",
        "And here?<image>",
    ]
    assert first.extra[LAYOUT_KEY] == {"layout": "lf_v1", "id": False}
    assert records[1] is not None and records[1].videos == ("mllm_demo_data/4.mp4",)


def test_swift_query_response_history_become_turns() -> None:
    records = [r for r, _ in iter_records(PEERS / "swift.jsonl")]
    first = records[0]
    assert first is not None
    assert [(t.role, t.value) for t in first.conversations] == [
        ("system", "You are a helpful assistant."),
        ("human", "Hi"),
        ("gpt", "Hello, ask me anything."),
        ("human", "<image>What is this?"),
        ("gpt", "Two players."),
    ]
    assert first.extra == {LAYOUT_KEY: {"layout": "swift", "id": False}}  # a list under images: the default


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"query": ["not", "text"], "response": "x"}, "query"),
        ({"query": "q", "response": "r", "history": [["only one"]]}, "history"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "value": 3}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_a_bad_peer_record_is_refused_by_field(tmp_path: Path, raw: dict[str, Any], field: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(raw) + "\n", encoding="utf-8")
    [(record, problems)] = list(iter_records(path))
    assert record is None
    assert problems[0].field == field
    assert field in problems[0].message and "record 0" in problems[0].message


def test_the_layout_key_is_llava_hfs_own(tmp_path: Path) -> None:
    path = tmp_path / "own.jsonl"
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], LAYOUT_KEY: 1}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [(record, problems)] = list(iter_records(path))
    assert record is None and problems[0].code == "invalid_record" and problems[0].field == LAYOUT_KEY


def test_a_llava_record_keeps_no_shape_unless_it_differs_from_llavas_default() -> None:
    plain = {"id": "a", "image": "x.jpg", "conversations": []}
    assert shape_of(plain, detect(plain)) is None
    listed = {"id": "a", "image": ["x.jpg"], "conversations": []}
    assert shape_of(listed, detect(listed)) == {"layout": "llava", "media": {"image": "list"}}


def test_a_peer_record_keeps_only_what_differs_from_its_layouts_default() -> None:
    listed = {"id": "a", "images": ["x.jpg"], "conversations": []}
    assert shape_of(listed, detect(listed)) == {"layout": "sharegpt"}
    one = {"images": "x.jpg", "audio": ["a.wav"], "messages": []}
    assert shape_of(one, detect(one)) == {
        "layout": "messages",
        "media": {"images": "str", "audio": "list"},
        "id": False,
    }


def test_v1_parts_of_every_kind_come_back_in_their_turns() -> None:
    raw = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "audio_url", "value": "a.wav"}, {"type": "text", "value": "?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "value": "A tone."}]},
            {
                "role": "user",
                "content": [{"type": "image_url", "value": "1.jpg"}, {"type": "video_url", "value": "v.mp4"}],
            },
            {"role": "assistant", "content": [{"type": "text", "value": "Both."}]},
        ]
    }
    record, failed = canonical(raw, detect(raw))
    assert failed is None and detect(raw) == "lf_v1"
    assert (record["images"], record["videos"], record["audios"]) == (["1.jpg"], ["v.mp4"], ["a.wav"])
    turns = [("human" if m["role"] == "user" else "gpt", m["content"]) for m in record["messages"]]
    paths = {k: record[k] for k in ("images", "videos", "audios")}
    assert render("r", paths, turns, {}, {"layout": "lf_v1", "id": False}) == raw


def test_export_in_another_layout(tmp_path: Path) -> None:
    _, out = round_trip(tmp_path, "swift.jsonl", layout="messages")
    exported = json.loads((out / "train.json").read_text(encoding="utf-8"))
    assert exported[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert exported[0]["images"] == ["mllm_demo_data/1.jpg"]
    assert "id" not in exported[0]  # a generated id is not added
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["train"]["file_name"] == "train.json"
    assert info["train"]["columns"] == {"messages": "messages", "images": "images"}
    assert info["train"]["tags"]["user_tag"] == "user"


def test_a_layout_that_cannot_hold_the_turns_is_refused() -> None:
    raw = {"messages": [{"role": "user", "content": "q"}, {"role": "tool_call", "content": "{}"}]}
    record, _ = canonical(raw, detect(raw))
    with pytest.raises(LayoutError, match="alternating human/gpt"):
        render("r", {}, [("human", "q"), ("tool_call", "{}")], {}, None, "swift")
    assert record is raw


def test_tool_turns_validate_build_and_export_as_they_came(tmp_path: Path) -> None:
    rows, out = round_trip(tmp_path, "tools.json")
    assert json.loads((out / "train.json").read_text(encoding="utf-8")) == read_any(PEERS / "tools.json")
    assert [t["from"] for t in rows[0]["conversations"]][1:5] == [
        "tool_call",
        "tool_call",
        "tool_response",
        "tool_response",
    ]
    assert rows[0]["metadata"]["tools"].startswith("[{")


def test_tool_turns_map_to_transformers_roles() -> None:
    from llava_hf.chat import from_messages, to_messages

    [record] = [r for r, _ in iter_records(PEERS / "tools.json")][1:]
    assert record is not None
    row = {"id": record.id, "conversations": [{"from": r, "value": v} for r, v in record.conversations]}
    messages = to_messages(row)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    ]
    back = from_messages({**row, "messages": messages, "conversations": None})["conversations"]
    assert [t["from"] for t in back] == ["human", "tool_call", "tool", "gpt"]


def test_pretrain_records_need_task_pretrain(tmp_path: Path) -> None:
    source = copy_peer(tmp_path, "pretrain.json")
    assert main(["validate", str(source)]) != 0  # refused by default
    assert main(["validate", "--task", "pretrain", str(source)]) == 0
    built = tmp_path / "built"
    build_folder(str(source), built, task="pretrain")
    export_llava(built, tmp_path / "export")
    exported = json.loads((tmp_path / "export" / "train.json").read_text(encoding="utf-8"))
    assert exported == read_any(PEERS / "pretrain.json")


def test_tool_calls_survive_a_messages_build_and_export(tmp_path: Path) -> None:
    source = copy_peer(tmp_path, "tools.json")
    built = tmp_path / "built"
    build_folder(str(source), built, format="messages")
    rows = list(datasets.load_dataset(str(built), split="train").select_columns(["messages", "metadata"]))
    call = rows[1]["messages"][1]
    assert call["role"] == "assistant" and call["content"] == []
    assert call["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    ]
    assert [m["role"] for m in rows[0]["messages"]] == [
        "user",
        "assistant",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert all(
        m["tool_calls"] is None for m in rows[0]["messages"] if m["role"] != "assistant" or m["content"]
    )
    assert rows[0]["metadata"]["tools"].startswith('[{"name": "get_weather"')  # the declaration, in the row
    export_llava(built, tmp_path / "export")
    assert json.loads((tmp_path / "export" / "train.json").read_text(encoding="utf-8")) == read_any(source)


# A template with tool support, as transformers' chat templates write it (tools declared, calls rendered).
TOOL_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<|{{ m.role }}|>"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}"
    "{% for c in m.tool_calls or [] %}<call>{{ c.function.name }} {% if c.function.arguments is string %}"
    "{{ c.function.arguments }}{% else %}{{ c.function.arguments | tojson }}{% endif %}</call>{% endfor %}\n"
    "{% endfor %}"
)


def test_a_tool_template_renders_a_tool_call_row(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from llava_hf.chat import to_messages
    from tests.fixtures.tiny_vlm import make_tokenizer

    source = copy_peer(tmp_path, "tools.json")
    built = tmp_path / "built"
    build_folder(str(source), built, format="messages")
    row = datasets.load_dataset(str(built), split="train")[0]
    tokenizer = make_tokenizer(TOOL_TEMPLATE)
    tools = json.loads(row["metadata"]["tools"])
    text = tokenizer.apply_chat_template(row["messages"], tools=tools, tokenize=False)
    assert '<call>get_weather {"city": "Paris"}</call>' in text and '<|tool|>{"temp": 20}' in text
    assert text.startswith("<tools>") and "get_weather" in text.split("</tools>")[0]
    [record] = [r for r, _ in iter_records(source)][1:]
    assert record is not None
    mapped = to_messages(
        {"id": record.id, "conversations": [{"from": r, "value": v} for r, v in record.conversations]}
    )
    rendered = tokenizer.apply_chat_template(mapped["messages"], tokenize=False)
    assert '<|assistant|><call>get_weather {"city": "Oslo"}</call>' in rendered  # dict arguments
