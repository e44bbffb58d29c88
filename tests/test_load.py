"""load_llava: LLaVA JSON + media → Dataset / IterableDataset / DatasetDict in one call, with the
on_error policies (duplicates across shards and files, errors across processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

from llava_hf import load_llava
from llava_hf.errors import RecordError, UsageError
from tests.fixtures.build_corpus import (
    expected_rows,
    make_corpus,
    shape_records,
    summaries,
    turns,
    write_records,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_corpus(tmp_path_factory.mktemp("load_corpus"))


def test_load_llava_returns_dataset_iterable_and_dict(corpus: dict[str, Any], tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "image_folder": corpus["images"],
        "video_folder": corpus["videos"],
        "cache_dir": str(tmp_path / "cache"),
        "records_per_shard": 4,
    }
    ds = load_llava(str(corpus["json"]), num_proc=2, **common)
    assert isinstance(ds, datasets.Dataset)
    assert summaries(ds) == corpus["expected"]

    stream = load_llava(str(corpus["json"]), streaming=True, **common)
    assert isinstance(stream, datasets.IterableDataset)
    assert summaries(stream) == corpus["expected"]

    small = write_records(tmp_path / "val.json", shape_records()[:2])
    splits = {"train": str(corpus["json"]), "validation": str(small)}
    dd = load_llava(splits, **common)
    assert isinstance(dd, datasets.DatasetDict)
    assert set(dd) == {"train", "validation"}
    assert [r["id"] for r in dd["validation"].select_columns(["id"])] == ["000000033471", "42"]
    assert dd["train"].num_rows == len(corpus["expected"])
    sdd = load_llava(splits, streaming=True, **common)
    assert isinstance(sdd, datasets.IterableDatasetDict)
    assert [r["id"] for r in sdd["validation"].select_columns(["id"])] == ["000000033471", "42"]
    one = load_llava(splits, split="validation", **common)
    assert isinstance(one, datasets.Dataset) and one.num_rows == 2


def test_duplicate_ids_across_shards_and_files_are_dropped_after_the_first(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    def rec(rid: str, text: str) -> dict[str, Any]:
        return {"id": rid, "conversations": turns(("human", text), ("gpt", "ok"))}

    a = write_records(
        tmp_path / "a.json", [rec("x", "a0"), rec("y", "a1"), rec("z", "a2"), rec("x", "a3"), rec("w", "a4")]
    )
    b = write_records(tmp_path / "b.json", [rec("w", "b0"), rec("v", "b1"), rec("y", "b2")])
    ds = load_llava(
        {"train": [str(a), str(b)]},
        cache_dir=str(tmp_path / "cache"),
        records_per_shard=2,
        num_proc=2,
        on_error="skip",
    )
    kept = [(r["id"], r["conversations"][0]["value"]) for r in ds.select_columns(["id", "conversations"])]
    # x (a3) duplicates a0 in another shard; w (b0) and y (b2) duplicate records of a.json
    assert kept == [("x", "a0"), ("y", "a1"), ("z", "a2"), ("w", "a4"), ("v", "b1")]


def test_raise_policy_stops_at_the_first_bad_record_across_processes(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    records = [{"id": f"r{i}", "conversations": turns(("human", f"q{i}"), ("gpt", "a"))} for i in range(8)]
    records[5] = {"id": "bad", "conversations": turns(("gpt", "answer first"), ("human", "q"))}
    path = write_records(tmp_path / "bad.json", records)
    with pytest.raises(RecordError) as info:
        load_llava(str(path), cache_dir=str(tmp_path / "cache"), records_per_shard=2, num_proc=2)
    err = info.value
    assert (err.code, err.index, err.id, err.file) == ("bad_turn_order", 5, "bad", str(path))
    assert "bad.json" in str(err) and err.hint


def test_missing_image_folder_is_a_usage_error_in_load_llava(corpus: dict[str, Any]) -> None:
    """From Python the messages name the Python argument, never the CLI's flag (issue 21, point 13)."""
    with pytest.raises(UsageError, match="does not exist") as info:
        load_llava(str(corpus["json"]), image_folder="/no/such/images")
    assert str(info.value) == "image_folder='/no/such/images': that folder does not exist"
    assert info.value.hint == "check image_folder="


def test_load_llava_messages_name_python_arguments_not_flags(tmp_path: Path) -> None:
    """A missing video under the default root: the error and its hint say video_folder= and on_error=."""
    (tmp_path / "clips").mkdir()
    path = write_records(
        tmp_path / "v.json",
        [{"id": "v1", "video": "clip.mp4", "conversations": [{"from": "human", "value": "<video>\nq"}]}],
    )
    with pytest.raises(RecordError) as info:
        load_llava(str(path), video_folder=str(tmp_path / "clips"), cache_dir=str(tmp_path / "cache"))
    message, hint = str(info.value), info.value.hint or ""
    assert f"check video_folder= (now {str(tmp_path / 'clips')!r})" in message
    assert "on_error='skip'" in hint
    assert "--" not in message + hint


@pytest.mark.parametrize("name", ["shapes.jsonl", "shapes.json.gz", "shapes.jsonl.gz"])
def test_jsonl_and_gzip_inputs_in_several_shards(
    corpus: dict[str, Any], tmp_path: Path, write_json: Any, name: str
) -> None:
    records = shape_records()
    path = write_json(records, name)
    expected = expected_rows(records, name, corpus["images"], corpus["videos"])
    common: dict[str, Any] = {
        "image_folder": corpus["images"],
        "video_folder": corpus["videos"],
        "cache_dir": str(tmp_path / "cache"),
        "records_per_shard": 2,
    }
    stream = load_llava(str(path), streaming=True, **common)
    assert stream.n_shards == 6
    assert summaries(stream) == expected
    assert summaries(load_llava(str(path), num_proc=2, **common)) == expected


def test_skip_and_raise_are_the_same_streaming_or_not(tmp_path: Path) -> None:
    from tests.fixtures.build_corpus import bad_corpus, make_media

    images, videos = make_media(tmp_path)
    files, _, _, kept = bad_corpus(tmp_path)
    common: dict[str, Any] = {
        "image_folder": images,
        "video_folder": videos,
        "cache_dir": str(tmp_path / "cache"),
        "records_per_shard": 3,
    }
    built = load_llava(files, on_error="skip", num_proc=2, **common)
    streamed = load_llava(files, on_error="skip", streaming=True, **common)
    assert [r["id"] for r in built.select_columns(["id"])] == kept
    assert [r["id"] for r in streamed.select_columns(["id"])] == kept
    stream = load_llava(files, streaming=True, **common)
    with pytest.raises(RecordError) as info:
        for _ in stream.select_columns(["id"]):
            pass
    assert (info.value.code, info.value.index, info.value.id) == ("missing_media", 1, "missing")


def test_messages_format_streaming_and_built_agree(corpus: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("llava_hf.chat", reason="llava_hf.chat.to_messages is not written yet")
    common: dict[str, Any] = {
        "image_folder": corpus["images"],
        "video_folder": corpus["videos"],
        "cache_dir": str(tmp_path / "cache"),
        "format": "messages",
        "records_per_shard": 4,
    }
    from llava_hf import features_for

    built = load_llava(str(corpus["json"]), num_proc=2, **common)
    stream = load_llava(str(corpus["json"]), streaming=True, **common)
    assert built.features == features_for("messages") and "conversations" not in built.column_names
    columns = ["id", "messages", "source", "metadata"]
    assert list(built.select_columns(columns)) == list(stream.select_columns(columns))
    assert [r["id"] for r in built.select_columns(["id"])] == [r["id"] for r in corpus["expected"]]


def test_a_missing_input_file_is_an_input_file_error(tmp_path: Path) -> None:
    from llava_hf import build_folder
    from llava_hf.errors import InputFileError

    missing = str(tmp_path / "nope.json")
    with pytest.raises(InputFileError, match=r"nope\.json"):
        load_llava(missing)
    with pytest.raises(InputFileError, match=r"nope\.json"):
        build_folder({"train": [missing]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
