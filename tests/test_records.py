"""The reader: every file shape, every record shape, positions of bad JSON, offsets, memory, properties."""

from __future__ import annotations

import copy
import dataclasses
import gc
import gzip
import json
import os
import re
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llava_hf.records.scanner as records_mod
from llava_hf.errors import InputFileError
from llava_hf.problems import Problem
from llava_hf.records import (
    LAYOUT_KEY,
    PACK_KEY,
    RawProblem,
    Record,
    Turn,
    count_records,
    file_kind,
    file_stem,
    id_stems,
    iter_items,
    iter_records,
    normalize,
    record_id,
    scan_offsets,
)
from llava_hf.validate import Validator
from tests.fixtures.records import SUFFIXES, G, H, demo_folder, dump, read_all, records_of, write

POSITION = re.compile(r"line (\d+) column (\d+) \(byte (\d+)\)")


def _good(n: int = 5) -> list[dict[str, Any]]:
    """Good records with non-ASCII text, so byte offsets differ from character offsets."""
    return [
        {
            "id": f"r{i}",
            "image": f"coco/{i}.jpg",
            "conversations": [
                H(f"<image>\nQu'est-ce que c'est ? ✓ {'é' * i}"),
                G(f"C'est un chat 🐈 n°{i}."),
            ],
        }
        for i in range(n)
    ]


def _file_problem(path: Path) -> str:
    """The message of the single whole-file problem that ends the stream."""
    items = list(iter_items(path))
    last = items[-1]
    assert last.index is None and last.error is not None, items[-3:]
    assert all(i.error is None for i in items[:-1])
    return last.error


def _json_position(text: str) -> tuple[int, int]:
    """(line, column) where the standard library says the text stops being JSON."""
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(text)
    return info.value.lineno, info.value.colno


# ----------------------------------------------------------------------------------------- invalid_json


def test_truncated_array_keeps_earlier_records_and_names_the_position(tmp_path: Path) -> None:
    text = json.dumps(_good(5), ensure_ascii=False, indent=1)
    cut = text.rindex('"id": "r3"')
    path = tmp_path / "trunc.json"
    path.write_text(text[:cut], encoding="utf-8")
    pairs = read_all(path)
    assert [r.id for r, _ in pairs if r is not None] == ["r0", "r1", "r2"]
    record, problems = pairs[-1]
    assert record is None and len(problems) == 1
    p = problems[0]
    assert (p.code, p.severity, p.file, p.index) == ("invalid_json", "error", str(path), None)
    assert str(path) in p.message and "truncated" in p.message
    m = POSITION.search(p.message)
    assert m, p.message
    line = int(m[1])
    assert line == text[:cut].count("\n") + 1
    assert int(m[3]) == len(text[:cut].encode("utf-8"))


def test_garbled_middle_reports_the_same_position_as_json(tmp_path: Path) -> None:
    text = json.dumps(_good(6), ensure_ascii=False, indent=2)
    at = text.index('"id": "r4"')
    bad = text[:at] + '"id" "r4"' + text[at + len('"id": "r4"') :]  # a colon lost
    path = tmp_path / "garbled.json"
    path.write_text(bad, encoding="utf-8")
    message = _file_problem(path)
    m = POSITION.search(message)
    assert m, message
    assert (int(m[1]), int(m[2])) == _json_position(bad)
    assert int(m[3]) == len(bad[: bad.index('"id" "r4"') + len('"id" ')].encode("utf-8"))
    assert [r.id for r, _ in read_all(path) if r is not None] == ["r0", "r1", "r2", "r3"]


def test_object_at_top_level_says_to_use_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(_good(1)[0]))
    message = _file_problem(path)
    assert "expected a JSON array" in message and "found an object" in message and ".jsonl" in message
    assert "line 1 column 1" in message


@pytest.mark.parametrize("tail", [" xyz", "]", ",", '[{"id": 1}]'])
def test_trailing_garbage(tmp_path: Path, tail: str) -> None:
    text = json.dumps(_good(2), ensure_ascii=False)
    path = tmp_path / "trail.json"
    path.write_text(text + tail, encoding="utf-8")
    message = _file_problem(path)
    assert "after the closing ']'" in message
    m = POSITION.search(message)
    assert m and int(m[2]) == len(text) + len(tail) - len(tail.lstrip()) + 1
    assert len([r for r, _ in read_all(path) if r is not None]) == 2


@pytest.mark.parametrize("content", ["", "   \n\t ", "\ufeff"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(content, encoding="utf-8")
    assert "empty" in _file_problem(path)


@pytest.mark.parametrize("content", ["[]", " [ \n ] \n"])
def test_empty_array_is_no_record_and_no_problem(tmp_path: Path, content: str) -> None:
    path = tmp_path / "none.json"
    path.write_text(content)
    assert list(iter_items(path)) == []
    assert count_records(path) == 0


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + dump(_good(3), ".json"))
    assert [r.id for r in records_of(path)] == ["r0", "r1", "r2"]


def test_invalid_utf8_names_the_exact_byte(tmp_path: Path) -> None:
    data = dump(_good(4), ".json")
    at = data.index(b"r2")
    path = tmp_path / "latin1.json"
    path.write_bytes(data[:at] + b"\xe9" + data[at + 1 :])
    message = _file_problem(path)
    assert "not valid UTF-8" in message and f"byte {at}" in message


def test_invalid_utf8_beyond_the_first_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_mod, "_CHUNK", 64)
    data = dump(_good(20), ".json")
    at = data.index(b"r17")
    path = tmp_path / "late.json"
    path.write_bytes(data[:at] + b"\xff" + data[at + 1 :])
    assert f"not valid UTF-8 at byte {at}" in _file_problem(path)


def test_truncated_inside_a_multibyte_character(tmp_path: Path) -> None:
    data = dump(_good(3), ".json")
    at = data.index("✓".encode()) + 1  # cut after the first byte of a 3-byte character
    path = tmp_path / "cut.json"
    path.write_bytes(data[:at])
    assert f"byte {at - 1}" in _file_problem(path)


MARK = "@MARK@"


def _marked(records: list[Any], suffix: str, token: str, *, indent: int | None = None) -> tuple[bytes, str]:
    """``records`` written as ``suffix`` with the string ``MARK`` (once, anywhere) replaced by the JSON
    text ``token``; and the position (line, column, byte) of that token as the reader must give it."""
    if ".jsonl" in suffix:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=indent)
    at = text.index(json.dumps(MARK))
    text = text[:at] + token + text[at + len(json.dumps(MARK)) :]
    line = text.count("\n", 0, at) + 1
    position = f"line {line} column {at - text.rfind(chr(10), 0, at)} (byte {len(text[:at].encode())})"
    data = text.encode("utf-8")
    return (gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data), position


def _defect(path: Path, n: int, bad: int) -> RawProblem:
    """The one item of ``path`` (of ``n``) that is a problem, at index ``bad``; the others read."""
    items = list(iter_items(path))
    assert [i.index for i in items] == list(range(n)), items
    assert [i.error is None for i in items] == [i != bad for i in range(n)], items
    item = items[bad]
    assert isinstance(item, RawProblem), item
    return item


_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",  # out of range: Python reads it as inf
    "-2.5E+400",
    "1" + "0" * 400 + ".5",
    "7" * 5000,  # more digits than Python's int() reads (it raises ValueError)
]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("token", _NUMBERS)
def test_non_finite_numbers_are_invalid_number_at_their_place(
    tmp_path: Path, suffix: str, token: str
) -> None:
    records = _good(3)
    records[1]["meta"] = {"scores": [0.5, MARK], "after": "kept"}
    data, position = _marked(records, suffix, token, indent=1)
    path = tmp_path / f"n{suffix}"
    path.write_bytes(data)
    item = _defect(path, 3, 1)
    assert (item.code, item.id, item.field) == ("invalid_number", "r1", "meta.scores[1]")
    assert item.error is not None and f"at {position}," in item.error, (position, item.error)
    assert "record 1 (id 'r1'), field 'meta.scores[1]'" in item.error and "write" in item.error
    ((_, problems),) = [p for p in read_all(path) if p[0] is None]
    assert [(p.code, p.index, p.id, p.field, p.message) for p in problems] == [
        ("invalid_number", 1, "r1", "meta.scores[1]", item.error)
    ]


@pytest.mark.parametrize("token", ["NaN", "-Infinity", "1e400"])
def test_a_non_finite_number_anywhere_in_a_record(tmp_path: Path, token: str) -> None:
    # an id, a turn, the item itself, a pack's sample: the same problem wherever it is
    for value, field, rid in [
        ({"id": MARK, "conversations": [H("q"), G("a")]}, "id", None),
        (
            {"id": "t", "conversations": [H("q"), {"from": "gpt", "value": MARK}]},
            "conversations[1].value",
            "t",
        ),
        (MARK, None, None),
        ([{"id": "p", "conversations": [H("q"), G("a")], "w": [[MARK]]}], "[0].w[0][0]", None),
    ]:
        data, position = _marked([value], ".json", token)
        path = tmp_path / "a.json"
        path.write_bytes(data)
        (item,) = list(iter_items(path))
        assert isinstance(item, RawProblem)
        assert (item.code, item.index, item.field, item.id) == ("invalid_number", 0, field, rid)
        assert f"at {position}," in str(item.error)


_SURROGATES = [
    ('"q\\ud800"', 2, "\\ud800"),  # a high surrogate at the end
    ('"\\uDC00 first"', 1, "\\uDC00"),  # a low surrogate alone
    ('"ok \\ud83d\\ude00 pair, then \\ud83d lone"', 28, "\\ud83d"),
    ('"\\ud800\\ud800"', 1, "\\ud800"),  # two highs: the first is lone
    ('"\\\\ud800\\udc00"', 8, "\\udc00"),  # a backslash, "ud800", then a lone low surrogate
]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(("token", "offset", "escape"), _SURROGATES)
def test_lone_surrogates_are_invalid_text_at_their_place(
    tmp_path: Path, suffix: str, token: str, offset: int, escape: str
) -> None:
    records = _good(3)
    records[2]["conversations"][1]["value"] = MARK
    data, position = _marked(records, suffix, token, indent=1)
    line, rest = position.split(" column ")
    column, byte = rest.split(" (byte ")
    position = f"{line} column {int(column) + offset} (byte {int(byte[:-1]) + offset})"
    path = tmp_path / f"s{suffix}"
    path.write_bytes(data)
    item = _defect(path, 3, 2)
    assert (item.code, item.id, item.field) == ("invalid_text", "r2", "conversations[1].value")
    assert item.error is not None and f"at {position}," in item.error, (position, item.error)
    assert f"lone UTF-16 surrogate {escape} " in item.error


@pytest.mark.parametrize(
    ("value", "field", "rid"),
    [
        ({"id": "q\ud800", "conversations": [H("q"), G("a")]}, "id", "q\\ud800"),
        ({"id": "m", "image": "a\udfff.jpg", "conversations": [H("<image>q"), G("a")]}, "image", "m"),
        (
            {"id": "v", "videos": ["ok.mp4", "\udc80.mp4"], "conversations": [H("q"), G("a")]},
            "videos[1]",
            "v",
        ),
        ({"id": "k", "conversations": [H("q"), G("a")], "ex\ud800tra": 1}, "ex\\ud800tra", "k"),
        (
            {"id": "d", "conversations": [H("q"), G("a")], "meta": {"a": [{"\udbff": 1}]}},
            "meta.a[0].\\udbff",
            "d",
        ),
        ({"id": "x", "conversations": [H("q"), G("a")], "meta": ["\ud800"]}, "meta[0]", "x"),
        (
            {"id": "r", "conversations": [{"from": "hu\ud800man", "value": "q"}, G("a")]},
            "conversations[0].from",
            "r",
        ),
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_lone_surrogates_in_every_kind_of_string(
    tmp_path: Path, value: dict[str, Any], field: str, rid: str, suffix: str
) -> None:
    # json.dumps writes a lone surrogate as its \\uXXXX escape (ensure_ascii)
    good = {"id": "g", "conversations": [H("q"), G("a")]}
    path = tmp_path / f"s{suffix}"
    lines = [json.dumps(v) for v in (good, value, good | {"id": "h"})]
    path.write_text("\n".join(lines) + "\n" if suffix == ".jsonl" else "[" + ",\n".join(lines) + "]")
    item = _defect(path, 3, 1)
    assert (item.code, item.field, item.id) == ("invalid_text", field, rid)
    problem = Problem(item.code, str(item.error), item.file, item.index, item.id, item.field)
    assert json.loads(problem.to_json())["id"] == rid  # a report line can always be written as UTF-8
    problem.to_json().encode("utf-8")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_surrogate_pairs_and_escaped_backslashes_are_text(tmp_path: Path, suffix: str) -> None:
    records = [
        {"id": "😀", "conversations": [H("pair 😀 \U0001f408"), G("a backslash, then u-d-8-0-0: \\ud800")]},
        {"id": "k", "conversations": [H("q"), G("a")], "\\udc00": "\\\\ud800"},
    ]
    path = tmp_path / f"p{suffix}"
    lines = [json.dumps(r, ensure_ascii=True) for r in records]  # surrogate pairs as escapes
    assert "\\ud83d\\ude00" in lines[0]
    path.write_text("\n".join(lines) + "\n" if suffix == ".jsonl" else "[" + ",".join(lines) + "]")
    assert [i.value for i in iter_items(path)] == records


def test_surrogates_written_as_utf8_bytes_in_jsonl_are_not_utf8(tmp_path: Path) -> None:
    good = json.dumps({"id": "g", "conversations": [H("q"), G("a")]}).encode()
    bad = good.replace(b'"q"', b'"q\xed\xa0\x80"')  # U+D800 encoded as if it were a character
    path = tmp_path / "b.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n" + good.replace(b'"g"', b'"h"') + b"\n")
    items = list(iter_items(path))
    assert [i.error is None for i in items] == [True, False, True]
    byte = len(good) + 1 + bad.index(b"\xed")
    assert not isinstance(items[1], RawProblem)  # an invalid_json problem, as any byte that is not UTF-8
    assert f"not valid UTF-8 at byte {byte}" in str(items[1].error)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_too_deep_nesting_is_a_problem_of_its_record_at_its_place(tmp_path: Path, suffix: str) -> None:
    records = _good(3)
    records[1]["x"] = MARK
    deep = "[" * 10_000 + "]" * 10_000
    data, position = _marked(records, suffix, deep, indent=1)
    path = tmp_path / f"deep{suffix}"
    path.write_bytes(data)
    item = _defect(path, 3, 1)
    assert (item.code, item.id, item.field) == ("invalid_json", "r1", "x")
    assert item.error is not None and f"at {position}," in item.error, (position, item.error)
    assert "nested too deeply (10001 levels" in item.error


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_too_deep_nesting_of_the_item_itself(tmp_path: Path, suffix: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / f"deep{suffix}"
    first = json.dumps({"id": 1})
    path.write_text(f"{first}\n{deep}\n" if suffix == ".jsonl" else f"[{first},\n{deep}]")
    item = _defect(path, 2, 1)
    assert (item.code, item.field) == ("invalid_json", None)
    assert "nested too deeply" in str(item.error) and "at line 2 column 1 (byte " in str(item.error)


def test_too_deep_and_not_json_is_the_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    text = '[{"id": 1}, ' + "[" * 5000 + "1 2" + "]" * 5000 + "]"
    path.write_text(text)
    message = _file_problem(path)
    assert f"unexpected '2' at line 1 column {text.index(' 2') + 2}" in message


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_problems_found_in_the_text_do_not_depend_on_the_chunk_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    records = _good(4)
    records[1]["x"] = MARK
    data, position = _marked(records, ".json", "[" * 3000 + " NaN " + "]" * 3000)
    path = tmp_path / "c.json"
    path.write_bytes(data)
    monkeypatch.setattr(records_mod, "_CHUNK", chunk)
    item = _defect(path, 4, 1)
    assert item.code == "invalid_number" and item.field is not None and item.field.startswith("x[0][0]")
    assert "NaN" in str(item.error)
    records = _good(4)
    records[2]["x"] = {"k": [1, MARK]}
    data, position = _marked(records, ".json", "1e999", indent=2)
    path.write_bytes(data)
    item = _defect(path, 4, 2)
    assert item.code == "invalid_number" and f"at {position}," in str(item.error)


@pytest.mark.parametrize("damage", ["not gzip", "truncated", "corrupt"])
@pytest.mark.parametrize("suffix", [".json.gz", ".jsonl.gz"])
def test_damaged_gzip_is_invalid_json(tmp_path: Path, damage: str, suffix: str) -> None:
    records = _good(400)
    raw = dump(records, suffix.removesuffix(".gz"))
    data = gzip.compress(raw, mtime=0)
    if damage == "not gzip":
        data = raw
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        mid = len(data) // 2
        data = data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 64]) + data[mid + 64 :]
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(data)
    pairs = read_all(path)  # never raises
    problems = [p for _, ps in pairs for p in ps]
    assert problems, "damage went unnoticed"
    assert all(p.code == "invalid_json" for p in problems)
    whole = [p for p in problems if p.index is None]
    assert whole, problems
    if damage == "truncated":
        assert "truncated" in whole[-1].message
    good = [r for r, _ in pairs if r is not None]
    assert [r.id for r in good] == [r["id"] for r in records[: len(good)]]


def test_bad_jsonl_line_is_an_error_of_that_record_only(tmp_path: Path) -> None:
    good = _good(5)
    lines = [json.dumps(r, ensure_ascii=False) for r in good]
    lines[1] = lines[1][:-5]  # truncated line
    lines[3] = lines[3].replace('"id":', '"id"')  # garbled line
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines[:3]) + "\n\n   \n" + "\n".join(lines[3:]) + "\n", encoding="utf-8")
    pairs = read_all(path)
    assert len(pairs) == 5  # blank lines are not records
    assert [r.id if r else None for r, _ in pairs] == ["r0", None, "r2", None, "r4"]
    p1 = pairs[1][1][0]
    assert (p1.code, p1.index, p1.file) == ("invalid_json", 1, str(path))
    assert "record 1" in p1.message and "line 2" in p1.message and "column" in p1.message
    p3 = pairs[3][1][0]
    assert (p3.code, p3.index) == ("invalid_json", 3)
    assert "line 6" in p3.message  # physical line, blank lines included
    _, col = _json_position(lines[3])
    assert f"column {col}" in p3.message


def test_bad_utf8_jsonl_line(tmp_path: Path) -> None:
    good = [json.dumps(r).encode() for r in _good(3)]
    bad = good[1].replace(b"r1", b"r\xff")
    path = tmp_path / "d.jsonl"
    path.write_bytes(good[0] + b"\n" + bad + b"\n" + good[2] + b"\n")
    items = list(iter_items(path))
    assert [i.index for i in items] == [0, 1, 2]
    assert items[1].error and "UTF-8" in items[1].error and "line 2" in items[1].error
    assert items[2].value["id"] == "r2"


def test_unsupported_missing_and_folder_inputs(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("[]")
    with pytest.raises(InputFileError, match=r"unsupported file type") as info:
        list(iter_items(tmp_path / "data.txt"))
    assert info.value.hint and info.value.file.endswith("data.txt")
    with pytest.raises(InputFileError, match="no such file"):
        list(iter_items(tmp_path / "absent.json"))
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(InputFileError, match="folder"):
        list(iter_items(tmp_path / "folder.json"))
    with pytest.raises(InputFileError, match="nosuchproto"):
        list(iter_items("nosuchproto://bucket/data.json"))


def test_a_path_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/d\xff.json")  # the name Python gives such a file
    Path(path).write_text("[]")
    with pytest.raises(InputFileError, match=r"d\\udcff\.json: the file's path is not valid UTF-8") as info:
        list(iter_items(path))
    assert info.value.hint and "rename" in info.value.hint
    info.value.file.encode("utf-8")  # printable


def test_file_kind() -> None:
    assert file_kind("a/b.JSON") == "json"
    assert file_kind("b.json.gz") == "json"
    assert file_kind("b.jsonl") == "jsonl"
    assert file_kind("b.ndjson") == "jsonl"
    assert file_kind("s3://x/b.jsonl.gz") == "jsonl"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_chunk_boundaries_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Multi-byte characters, numbers and literals split across reads; results equal a full read."""
    recs: list[Any] = [
        {"id": i, "t": "é✓😀" * i, "n": 12345.678e-3 * i, "ok": i % 2 == 0, "none": None} for i in range(30)
    ]
    recs += [1234567890, True, None, "ß"]
    path = tmp_path / "c.json"
    text = json.dumps(recs, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(records_mod, "_CHUNK", chunk)
    escaped = tmp_path / "escaped.json"  # \ud83d\ude00 surrogate pairs split across reads
    escaped.write_text(json.dumps(recs, ensure_ascii=True))
    assert [i.value for i in iter_items(escaped)] == recs
    items = list(iter_items(path, with_offsets=True))
    assert [i.value for i in items] == recs
    data = text.encode("utf-8")
    for item in items:
        assert item.offset is not None
        assert json.JSONDecoder().raw_decode(data[item.offset :].decode("utf-8"))[0] == item.value
    # and the position of a problem does not depend on the chunk size either
    bad = text[: text.index('"id": 20')] + "@" + text[text.index('"id": 20') :]
    path.write_text(bad, encoding="utf-8")
    m = POSITION.search(_file_problem(path))
    assert m and (int(m[1]), int(m[2])) == _json_position(bad)
    assert int(m[3]) == len(bad[: bad.index("@")].encode("utf-8"))


# ------------------------------------------------------------------------------------------ input shapes


def _norm(value: Any, file: str = "data.json", index: int = 0) -> Record:
    record, problems = normalize(value, file=file, index=index)
    assert not problems, problems
    assert record is not None
    return record


def _problem(value: Any, file: str = "data.json", index: int = 7) -> tuple[str, str]:
    record, problems = normalize(value, file=file, index=index)
    assert record is None and problems
    return problems[0].code, problems[0].message


CONV = [H("<image>\nq"), G("a")]


def own_keys(extra: dict[str, Any]) -> dict[str, Any]:
    """A record's extra keys without the layout shape llava-hf keeps for export."""
    return {k: v for k, v in extra.items() if k != LAYOUT_KEY}


@pytest.mark.parametrize(
    ("raw", "images", "videos"),
    [
        ({"image": "coco/train2017/1.jpg"}, ("coco/train2017/1.jpg",), ()),
        ({"image": ["a.jpg", "b/c.jpg"]}, ("a.jpg", "b/c.jpg"), ()),
        ({"images": ["a.jpg"]}, ("a.jpg",), ()),
        ({"images": "a.jpg"}, ("a.jpg",), ()),
        ({}, (), ()),
        ({"image": None}, (), ()),
        ({"image": []}, (), ()),
        ({"video": "v.mp4"}, (), ("v.mp4",)),
        ({"videos": ["v.mp4", "w.avi"]}, (), ("v.mp4", "w.avi")),
        ({"image": "a.jpg", "video": "v.mp4"}, ("a.jpg",), ("v.mp4",)),
    ],
)
def test_media_shapes(raw: dict[str, Any], images: tuple[str, ...], videos: tuple[str, ...]) -> None:
    record = _norm({"id": "x", **raw, "conversations": CONV})
    assert record.images == images and record.videos == videos
    assert {k: v for k, v in record.extra.items() if k != LAYOUT_KEY} == {}  # the shape, for export
    plural = any(key in raw for key in ("images", "videos"))
    assert (LAYOUT_KEY in record.extra) == (plural or raw.get("image") in (["a.jpg"],))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"image": 3}, "image"),
        ({"image": {"path": "a.jpg"}}, "image"),
        ({"image": ["a.jpg", 3]}, "image"),
        ({"image": ["a.jpg", None]}, "image"),
        ({"image": ""}, "image"),
        ({"image": ["  "]}, "image"),
        ({"image": "a\x00.jpg"}, "image"),
        ({"images": [["a.jpg"]]}, "images"),
        ({"video": True}, "video"),
        ({"videos": ["v.mp4", 1.5]}, "videos"),
        ({"image": "a.jpg", "images": ["b.jpg"]}, "image"),
        ({"video": "a.mp4", "videos": ["b.mp4"]}, "video"),
    ],
)
def test_invalid_media_field(raw: dict[str, Any], field: str) -> None:
    record, problems = normalize({"id": "x9", **raw, "conversations": CONV}, file="d.json", index=4)
    assert record is None
    (p,) = problems
    assert (p.code, p.severity, p.index, p.id, p.field) == ("invalid_media_field", "error", 4, "x9", field)
    assert p.message.startswith("d.json, record 4 (id 'x9'), field ")
    assert "write e.g." in p.message or "keep one" in p.message  # the fix


def test_ids() -> None:
    assert _norm({"id": "abc", "conversations": CONV}).id == "abc"
    assert _norm({"id": 42, "conversations": CONV}).id == "42"
    assert _norm({"id": -7, "conversations": CONV}).id == "-7"
    assert _norm({"id": 10**30, "conversations": CONV}).id == str(10**30)
    generated = _norm({"conversations": CONV}, file="/x/y/train.part1.json", index=12).id
    assert (
        generated == _norm({"conversations": [H("other")]}, file="/elsewhere/train.part1.json", index=12).id
    )
    assert generated != _norm({"conversations": CONV}, file="/x/y/train.part1.json", index=13).id
    assert generated.startswith("train") and "12" in generated
    for bad in (1.5, 2.0, True, False, ["a"], {"a": 1}):
        code, message = _problem({"id": bad, "conversations": CONV}, file="d.json", index=7)
        assert code == "invalid_record"
        assert "d.json, record 7" in message and "'id'" in message and "string or an integer" in message


def test_file_stem_names_ids_and_mixture_sources_as_before() -> None:
    """One stem rule for generated ids and mixture source names; each keeps the results it had."""
    for path in ("/d/train.json", "/d/train.jsonl.gz", "d\\train.json", "train.JSON"):
        assert file_stem(path) == file_stem(path, keep_dots=True) == "train"
    assert file_stem("/d/v1.5.json") == "v1"  # ids: the name up to its first dot
    assert file_stem("/d/v1.5.json", keep_dots=True) == "v1.5"  # mixtures: only the JSON extensions go
    assert file_stem("/d/notes.txt") == "notes"
    assert file_stem("/d/notes.txt", keep_dots=True) == "notes.txt"
    assert file_stem("/d/.json") == ""
    assert file_stem("/d/.json", keep_dots=True) == "/d/.json"
    assert record_id({"conversations": CONV}, file="/d/v1.5.json", index=2) == "v1-2"
    assert id_stems(["/d/v1.5.json"]) == {"/d/v1.5.json": "v1"}


def test_id_stems_tell_same_named_files_apart() -> None:
    assert id_stems(["/d/train.json", "/d/val.jsonl.gz"]) == {
        "/d/train.json": "train",
        "/d/val.jsonl.gz": "val",
    }
    assert id_stems(["/d/a/train.json", "/d/b/sub/train.jsonl", "/d/x.json"]) == {
        "/d/a/train.json": "a/train",
        "/d/b/sub/train.jsonl": "sub/train",  # the shortest trailing paths that differ
        "/d/x.json": "x",
    }
    assert id_stems(["/d/a/x/train.json", "/d/b/x/train.json"]) == {
        "/d/a/x/train.json": "a/x/train",
        "/d/b/x/train.json": "b/x/train",
    }
    assert id_stems(["/d/a/train.json", "/d/a/train.json"]) == {"/d/a/train.json": "train"}  # listed twice
    value = {"conversations": CONV}
    assert record_id(value, file="/d/a/train.json", index=3, stem="a/train") == "a/train-3"
    assert record_id(value, file="/d/a/train.json", index=3, position=1, stem="a/train") == "a/train-3-1"
    assert record_id({"id": 5, **value}, file="/d/a/train.json", index=3, stem="a/train") == "5"


def test_absent_ids_are_the_same_across_runs_and_formats(tmp_path: Path) -> None:
    recs = [{"conversations": [H("q"), G(f"a{i}")]} for i in range(4)]
    ids = []
    for suffix in SUFFIXES:
        path = write(tmp_path / f"noid{suffix}", recs)
        first = [r.id for r in records_of(path)]
        assert first == [r.id for r in records_of(path)]
        ids.append(first)
    assert all(x == ids[0] for x in ids)
    assert len(set(ids[0])) == 4


@pytest.mark.parametrize(
    ("value", "what"),
    [(3, "3"), ("text", '"text"'), (None, "null"), ([1, 2], "[1, 2]"), ([], "[]"), ([{"id": 1}, 2], "[")],
)
def test_invalid_record(value: Any, what: str) -> None:
    path_records = [value]
    record, problems = _records_from_values(path_records)[0]
    assert record is None
    (p,) = problems
    assert (p.code, p.index, p.id) == ("invalid_record", 0, None)
    assert "record 0" in p.message and "expected a JSON object" in p.message and what in p.message


def _records_from_values(values: list[Any]) -> list[tuple[Record | None, list[Any]]]:
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / "v.json", values)
        return read_all(path)


@pytest.mark.parametrize(
    ("raw", "got"),
    [
        ({}, "missing"),
        ({"conversations": []}, "empty"),
        ({"conversations": "hi"}, "not a list"),
        ({"conversations": {"from": "human"}}, "not a list"),
        ({"messages": []}, "empty"),
    ],
)
def test_invalid_conversations(raw: dict[str, Any], got: str) -> None:
    record, problems = normalize({"id": "c1", **raw}, file="d.json", index=2)
    assert record is None
    (p,) = problems
    assert (p.code, p.index, p.id) == ("invalid_conversations", 2, "c1")
    assert p.field in ("conversations", "messages")
    assert got in p.message and "d.json, record 2 (id 'c1')" in p.message and "non-empty list" in p.message


@pytest.mark.parametrize(
    "turn",
    [
        "human: hi",
        ["human", "hi"],
        {"value": "hi"},
        {"from": "human"},
        {"from": 1, "value": "hi"},
        {"from": "human", "value": 3},
        {"from": "human", "value": None},
        {"from": "human", "value": ["hi"]},
    ],
)
def test_invalid_turn(turn: Any) -> None:
    record, problems = normalize({"id": "t", "conversations": [H("q"), G("a"), turn]}, file="d.json", index=5)
    assert record is None
    (p,) = problems
    assert (p.code, p.index, p.id, p.field) == ("invalid_turn", 5, "t", "conversations[2]")
    assert "conversations[2]" in p.message and "'from'" in p.message and "'value'" in p.message


def test_several_structural_problems_are_all_reported() -> None:
    record, problems = normalize(
        {"id": "m", "image": 1, "video": [2], "conversations": 3}, file="d.json", index=0
    )
    assert record is None
    assert sorted(p.code for p in problems) == [
        "invalid_conversations",
        "invalid_media_field",
        "invalid_media_field",
    ]


def test_role_aliases_and_role_content_keys() -> None:
    record = _norm(
        {
            "id": "a",
            "conversations": [
                {"from": "system", "value": "s"},
                {"from": "user", "value": "q"},
                {"from": "assistant", "value": "a"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2"},
            ],
        }
    )
    assert record.conversations == (
        Turn("system", "s"),
        Turn("human", "q"),
        Turn("gpt", "a"),
        Turn("human", "q2"),
        Turn("gpt", "a2"),
    )
    assert record.layout == "conversations"
    unknown = _norm({"id": "b", "conversations": [{"from": "Bot", "value": "x"}]})
    assert unknown.conversations == (Turn("Bot", "x"),)  # kept as is; the rules report unknown_role


def test_messages_layout_with_typed_parts() -> None:
    raw = {
        "id": "m1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "And this?"}]},
            {"role": "assistant", "content": "A dog."},
        ],
        "images": ["a.jpg"],
        "videos": ["v.mp4"],
    }
    before = copy.deepcopy(raw)
    record = _norm(raw)
    assert raw == before  # never mutates its input
    assert record.layout == "messages"
    assert record.conversations == (
        Turn("system", "Be brief."),
        Turn("human", "<image>What is it?"),
        Turn("gpt", "A cat."),
        Turn("human", "<video>And this?"),
        Turn("gpt", "A dog."),
    )
    assert record.images == ("a.jpg",) and record.videos == ("v.mp4",)
    assert own_keys(record.extra) == {}
    bad, problems = normalize(
        {"messages": [{"role": "user", "content": [{"type": "file"}]}]}, file="d.json", index=0
    )
    assert bad is None and problems[0].code == "invalid_turn" and problems[0].field == "messages[0]"
    assert "'role'" in problems[0].message and "'content'" in problems[0].message


def test_real_messages_demo(tmp_path: Path) -> None:
    root = demo_folder(tmp_path)
    source = json.loads((root / "mllm_demo.json").read_text())
    recs = records_of(root / "mllm_demo.json")
    assert len(recs) == len(source)
    for rec, raw in zip(recs, source):
        assert rec.layout == "messages"
        assert rec.images == tuple(raw["images"])
        assert [t.value for t in rec.conversations] == [m["content"] for m in raw["messages"]]
        assert {t.role for t in rec.conversations} <= {"human", "gpt"}
        roles = {"user": "human", "assistant": "gpt"}
        assert [t.role for t in rec.conversations] == [roles[m["role"]] for m in raw["messages"]]
        assert own_keys(rec.extra) == {}
    assert len({r.id for r in recs}) == len(recs)  # generated ids are distinct
    videos = records_of(root / "mllm_video_demo.json")
    assert [r.videos for r in videos] == [
        tuple(r["videos"]) for r in json.loads((root / "mllm_video_demo.json").read_text())
    ]
    # every rule, media included, passes on the real demo data: no false alarm
    validator = Validator()
    checked = list(validator.iter_checked([str(root / "mllm_demo.json"), str(root / "mllm_video_demo.json")]))
    assert len(checked) == len(source) + len(videos)
    assert [p for c in checked for p in c.problems] == []
    assert [len(c.image_paths) for c in checked[: len(source)]] == [len(r["images"]) for r in source]
    assert all(Path(p).is_file() for c in checked for p in (*c.image_paths, *c.video_paths))


def test_extra_keys_are_kept_losslessly() -> None:
    extra = {
        "source_dataset": "ocr_vqa",
        "nested": {"a": [1, 2.5, None, {"b": "é"}], "t": True},
        "weights": [0.1, 0.9],
        "empty": {},
        "none": None,
        "messages": [{"role": "user", "content": "kept: conversations wins"}],
    }
    raw = {"id": 1, "image": "a.jpg", "conversations": CONV, **extra}
    before = copy.deepcopy(raw)
    record = _norm(raw)
    assert record.extra == extra
    assert raw == before
    assert record.to_llava() == {"id": "1", "image": "a.jpg", "conversations": CONV, **extra}


def test_packed_items(tmp_path: Path) -> None:
    sample = {"image": "a.jpg", "conversations": CONV}
    values: list[Any] = [
        {"id": "solo", "conversations": CONV},
        [dict(sample, id="p0"), dict(sample, id="p1"), {"conversations": CONV}],
        [{"conversations": CONV}],
    ]
    path = write(tmp_path / "packed.json", values)
    recs = records_of(path)
    assert [r.id for r in recs][:3] == ["solo", "p0", "p1"]
    assert len(recs) == 5 == count_records(path)
    assert recs[0].extra == {}
    assert [r.extra[PACK_KEY] for r in recs[1:]] == [[1, 0], [1, 1], [1, 2], [2, 0]]
    assert [r.index for r in recs] == [0, 1, 1, 1, 2]
    assert len({r.id for r in recs}) == 5  # generated ids of pack members differ
    assert recs[1].to_llava() == {"id": "p0", "image": "a.jpg", "conversations": CONV}  # pack key not leaked


@pytest.mark.parametrize("marker", [{}, [], [0, 1], "x"])
def test_a_record_s_own_pack_key_is_invalid_record(tmp_path: Path, marker: Any) -> None:
    values: list[Any] = [{"id": "own", "conversations": CONV, PACK_KEY: marker}]
    values.append([{"id": "in-pack", "conversations": CONV, PACK_KEY: marker}])
    pairs = read_all(write(tmp_path / "own.json", values))
    assert [(r, [(p.code, p.id, p.field) for p in ps]) for r, ps in pairs] == [
        (None, [("invalid_record", "own", PACK_KEY)]),
        (None, [("invalid_record", "in-pack", PACK_KEY)]),
    ]
    assert "rename it" in pairs[0][1][0].message


def test_count_records_matches_iter_records(tmp_path: Path) -> None:
    values: list[Any] = [{"id": 1, "conversations": CONV}, [], [1, 2], [{"conversations": CONV}] * 3, 5]
    path = write(tmp_path / "mixed.json", values)
    assert count_records(path) == len(read_all(path)) == 1 + 1 + 1 + 3 + 1
    bad = tmp_path / "bad.json"
    bad.write_text("[{}, ")
    with pytest.raises(InputFileError, match="truncated") as info:
        count_records(bad)
    assert info.value.hint and "llava-hf validate" in info.value.hint


# ------------------------------------------------------------------------------------ file shape variants


def _strip(records: list[Record]) -> list[Record]:
    return [dataclasses.replace(r, file="", source="") for r in records]


def test_json_jsonl_and_gzip_give_the_same_records(
    tmp_path: Path, sample_records: list[dict[str, Any]]
) -> None:
    recs = [*sample_records, *_good(3), {"conversations": [H("no id")], "meta": {"k": [1, "é"]}}]
    results = {}
    for suffix in SUFFIXES:
        for indent in (None, 2):
            if ".jsonl" in suffix and indent:
                continue
            path = write(tmp_path / f"data{suffix}", recs, indent=indent)
            results[(suffix, indent)] = records_of(path)
            assert results[(suffix, indent)][0].source == path.name
    reference = _strip(results[(".json", None)])
    assert len(reference) == len(recs)
    for key, value in results.items():
        assert _strip(value) == reference, key
    assert reference[1].id == "42" and reference[1].extra == {"task": "compare"}


def test_fsspec_urls(tmp_path: Path) -> None:
    recs = _good(4)
    local = write(tmp_path / "data.jsonl.gz", recs)
    expected = _strip(records_of(local))
    assert _strip(records_of(local.as_uri())) == expected  # file://
    fs = fsspec.filesystem("memory")
    for suffix in SUFFIXES:
        url = f"memory://llava-hf-tests/{tmp_path.name}/data{suffix}"
        with fs.open(url, "wb") as f:
            f.write(dump(recs, suffix))
        try:
            got = records_of(url)
            assert _strip(got) == expected
            assert got[0].file == url
            assert count_records(url) == len(recs)
        finally:
            fs.rm(url)


# ---------------------------------------------------------------------------------------- offsets/resume


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("indent", [None, 1])
def test_scan_offsets_and_resume_reproduce_a_full_read(
    tmp_path: Path, suffix: str, indent: int | None
) -> None:
    recs: list[Any] = [
        {"id": i, "text": "日本語のテキスト ✓ " * (i % 7), "image": f"{i}.jpg", "conversations": CONV}
        for i in range(53)
    ]
    recs[10] = [recs[10], {"conversations": CONV}]  # a pack is one item
    path = write(tmp_path / f"big{suffix}", recs, indent=indent)
    full = [(i.index, i.value) for i in iter_items(path)]
    assert [v for _, v in full] == recs
    for every in (1, 5, 10, 60):
        points = scan_offsets(path, every)
        assert points[0] == (0, 0)
        assert [i for i, _ in points] == list(range(0, len(recs), every))
        stops = [i for i, _ in points[1:]] + [len(recs)]
        pieces = []
        for (start, offset), stop in zip(points, stops):
            part = [
                (i.index, i.value)
                for i in iter_items(path, start_offset=offset, start_index=start, stop_index=stop)
            ]
            assert [i for i, _ in part] == list(range(start, stop))
            pieces.extend(part)
        assert pieces == full
    # the records, not only the raw items, are the same
    points = scan_offsets(path, 20)
    resumed = [
        r
        for start, offset in points
        for r, _ in iter_records(path, start_offset=offset, start_index=start, stop_index=start + 20)
    ]
    assert resumed == [r for r, _ in iter_records(path)]


@pytest.mark.parametrize("indent", [None, 1])  # None: the whole array on one line
def test_a_resumed_read_places_a_json_error_as_a_full_read_does(tmp_path: Path, indent: int | None) -> None:
    recs = [{"id": i, "text": "日本語 ✓ " * (i % 5), "conversations": CONV} for i in range(40)]
    text = json.dumps(recs, indent=indent, ensure_ascii=False)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) * 4 // 5], encoding="utf-8")  # truncated inside a record
    full = [i.error for i in iter_items(path) if i.error is not None]
    assert len(full) == 1 and "line" in full[0] and "column" in full[0]
    with open(path, encoding="utf-8") as f:  # the truncated record is on the last line
        lines = f.read().split("\n")
    assert f"line {len(lines)} column " in full[0]
    start, offset = next((i.index, i.offset) for i in iter_items(path, with_offsets=True) if i.index == 20)
    assert offset is not None
    resumed = [i for i in iter_items(path, start_offset=offset, start_index=start) if i.error is not None]
    assert [i.error for i in resumed] == full


def test_a_resumed_jsonl_read_names_the_bad_line_as_a_full_read_does(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "conversations": CONV}) for i in range(12)]
    lines[9] = '{"id": 9, "conversations": ['
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (full,) = [i for i in iter_items(path) if i.error is not None]
    assert full.error is not None and "line 10 " in full.error
    start, offset = next((i.index, i.offset) for i in iter_items(path) if i.index == 6)
    assert offset is not None
    (resumed,) = [i for i in iter_items(path, start_offset=offset, start_index=start) if i.error is not None]
    assert resumed.error == full.error and resumed.index == full.index == 9


def test_record_range_of_a_gzip_file(tmp_path: Path) -> None:
    recs = [{"id": i, "conversations": CONV} for i in range(30)]
    for suffix in (".json.gz", ".jsonl.gz"):
        path = write(tmp_path / f"r{suffix}", recs)
        assert scan_offsets(path, 10) == [(0, 0)]  # a gzip stream cannot seek
        got = [i.value for i in iter_items(path, start_index=12, stop_index=17)]
        assert got == recs[12:17]
        assert [i.index for i in iter_items(path, start_index=25)] == list(range(25, 30))


def test_scan_offsets_of_an_invalid_file_does_not_split(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_good(30))[:-40])
    assert scan_offsets(path, 5) == [(0, 0)]


# ------------------------------------------------------------------------------------------------ memory


def test_reader_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """A ~20 MB array written on ONE line: traced peak stays far below the file size."""
    path = tmp_path / "big.json"
    n = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        while f.tell() < 20_000_000:
            if n:
                f.write(",")
            text = f"<image>\n{n} " + "détail " * 500
            rec = {"id": n, "image": f"coco/{n:012d}.jpg", "conversations": [H(text), G("ok " * 40)]}
            f.write(json.dumps(rec, ensure_ascii=False))
            n += 1
        f.write("]")
    size = path.stat().st_size
    (tmp_path / "warm.json").write_text("[]")
    list(iter_items(tmp_path / "warm.json"))  # imports (fsspec, codecs) are not the reader's memory
    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        last = None
        for item in iter_items(path):
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and last is not None and last.value["id"] == n - 1
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


# ---------------------------------------------------------------------------------------------- hypothesis

_ids = st.one_of(st.none(), st.text(max_size=12), st.integers(min_value=-(10**20), max_value=10**20))
_paths = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=20
).filter(lambda s: s.strip() != "")
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_reserved = {"id", "image", "images", "video", "videos", "conversations", "messages"}
_extra = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in _reserved), _json_values, max_size=3)
_turns = st.lists(
    st.tuples(st.sampled_from(["human", "gpt", "system", "user", "assistant"]), st.text(max_size=30)),
    min_size=1,
    max_size=5,
)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    rid = draw(_ids)
    if rid is not None:
        rec["id"] = rid
    for single, plural in (("image", "images"), ("video", "videos")):
        media = draw(st.lists(_paths, max_size=3))
        key = draw(st.sampled_from([single, plural]))
        if len(media) == 1 and draw(st.booleans()):
            rec[key] = media[0]
        elif media:
            rec[key] = media
    rec["conversations"] = [{"from": r, "value": v} for r, v in draw(_turns)]
    rec.update(draw(_extra))
    return rec


_ALIASES = {"user": "human", "assistant": "gpt"}
_FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(
    recs=st.lists(_records(), max_size=6), suffix=st.sampled_from(SUFFIXES), indent=st.sampled_from([None, 1])
)
def test_property_round_trip(recs: list[dict[str, Any]], suffix: str, indent: int | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / f"prop{suffix}", recs, indent=indent)
        assert [i.value for i in iter_items(path)] == recs
        pairs = read_all(path)
        assert len(pairs) == len(recs) == count_records(path)
        for index, ((record, problems), raw) in enumerate(zip(pairs, recs)):
            assert problems == [] and record is not None
            assert record.index == index and record.file == str(path)
            if "id" in raw:
                assert record.id == str(raw["id"])
            media = [raw.get(k) for k in ("image", "images") if k in raw]
            assert (
                list(record.images) == ([media[0]] if isinstance(media[0], str) else media[0])
                if media
                else not record.images
            )
            assert record.conversations == tuple(
                Turn(_ALIASES.get(t["from"], t["from"]), t["value"]) for t in raw["conversations"]
            )
            assert own_keys(record.extra) == {k: v for k, v in raw.items() if k not in _reserved}
        again = [r.id for r, _ in read_all(path) if r is not None]
        assert again == [r.id for r, _ in pairs if r is not None]  # deterministic


_ANY_MESSAGE = re.compile(r"(byte \d+|empty)")


@_FAST
@given(recs=st.lists(_records(), min_size=1, max_size=4), data=st.data(), indent=st.sampled_from([None, 1]))
def test_property_truncation_gives_invalid_json_with_a_position(
    recs: list[dict[str, Any]], data: st.DataObject, indent: int | None
) -> None:
    raw = dump(recs, ".json", indent=indent)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cut.json"
        path.write_bytes(raw[:cut])
        pairs = read_all(path)
    record, problems = pairs[-1]
    assert record is None and [p.code for p in problems] == ["invalid_json"] and problems[0].index is None
    assert _ANY_MESSAGE.search(problems[0].message), problems[0].message
    assert all(r is not None for r, _ in pairs[:-1])
    assert len(pairs) - 1 <= len(recs)


@_FAST
@given(recs=st.lists(_records(), min_size=1, max_size=4), data=st.data())
def test_property_truncated_jsonl_loses_only_the_last_line(
    recs: list[dict[str, Any]], data: st.DataObject
) -> None:
    raw = dump(recs, ".jsonl")
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cut.jsonl"
        path.write_bytes(raw[:cut])
        pairs = read_all(path)
    complete = raw[:cut].count(b"\n")
    assert all(r is not None for r, _ in pairs[:complete])
    assert [own_keys(r.extra) for r, _ in pairs[:complete] if r] == [
        {k: v for k, v in x.items() if k not in _reserved} for x in recs[:complete]
    ]
    rest = pairs[complete:]
    assert len(rest) <= 1
    if rest and rest[0][0] is not None:  # cut just before a newline: the line is whole
        assert raw[cut : cut + 1] == b"\n" and not rest[0][1] and rest[0][0].index == complete
    elif rest:
        assert rest[0][1][0].code == "invalid_json" and rest[0][1][0].index == complete
        assert f"line {complete + 1}" in rest[0][1][0].message


@_FAST
@given(
    recs=st.lists(_records(), min_size=1, max_size=4),
    suffix=st.sampled_from(SUFFIXES),
    edits=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1, exclude_max=True), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
)
def test_property_garbled_bytes_never_raise(
    recs: list[dict[str, Any]], suffix: str, edits: list[tuple[float, int]]
) -> None:
    data = bytearray(dump(recs, suffix))
    for where, byte in edits:
        data[int(where * len(data))] = byte
    validator = Validator(check_media=False)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"garbled{suffix}"
        path.write_bytes(bytes(data))
        for record, problems in iter_records(path):
            assert (record is None) == bool(problems)
            checked = validator.check(record, problems)  # the rules never raise either
            assert all(p.file == str(path) for p in checked.problems)


def test_layout_is_detected_per_record(tmp_path: Path) -> None:
    values = [
        {"id": "c", "conversations": [H("q"), G("a")]},
        {"id": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"id": "c2", "conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]},
    ]
    for suffix in (".json", ".jsonl"):
        recs = records_of(write(tmp_path / f"layouts{suffix}", values))
        assert [r.layout for r in recs] == ["conversations", "messages", "conversations"]
        assert {r.conversations for r in recs} == {(Turn("human", "q"), Turn("gpt", "a"))}


def test_missing_comma_between_records(tmp_path: Path) -> None:
    recs = _good(4)
    parts = [json.dumps(r, ensure_ascii=False) for r in recs]
    text = "[\n" + ",\n".join(parts[:2]) + "\n" + ",\n".join(parts[2:]) + "\n]"  # no comma after record 1
    path = tmp_path / "comma.json"
    path.write_text(text, encoding="utf-8")
    message = _file_problem(path)
    assert "expected ',' or ']' after a record" in message and "found '{'" in message
    m = POSITION.search(message)
    assert m and (int(m[1]), int(m[2])) == _json_position(text) == (4, 1)
    assert [r.id for r, _ in read_all(path) if r is not None] == ["r0", "r1"]
