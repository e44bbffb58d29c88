"""build_folder: the Hub layout that plain ``datasets`` loads, byte-equal media, row groups,
determinism, shard sizes, the skip policy's books, and builds that fail or are interrupted."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

import llava_hf.build.folder
import llava_hf.build.parquet
import llava_hf.media.files
import llava_hf.records.scanner
from llava_hf import build_folder, features_for
from llava_hf.card import make_card
from llava_hf.errors import LlavaHFError, RecordError, UsageError
from llava_hf.schema import FORMAT_VERSION
from llava_hf.validate import Validator
from tests.fixtures.build_corpus import (
    bad_corpus,
    make_corpus,
    make_media,
    shape_records,
    turns,
    write_records,
)
from tests.fixtures.media import gif_bytes, make_jpeg

SHARD_NAME = r"(?P<split>\w+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_corpus(tmp_path_factory.mktemp("build_corpus"))


@pytest.fixture(scope="module")
def built(corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes corpus built once with two processes and several original shards."""
    out = tmp_path_factory.mktemp("built") / "out"
    build_folder(
        str(corpus["json"]),
        out,
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        num_proc=2,
        records_per_shard=3,
    )
    return out


def build(corpus: dict[str, Any], out: Path, **kwargs: Any) -> llava_hf.build.folder.BuildResult:
    return build_folder(
        kwargs.pop("data_files", str(corpus["json"])),
        out,
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        **kwargs,
    )


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".llava-hf-" in p.name)


# ------------------------------------------------------------------------------------------- layout


def test_hub_layout_card_preview_and_manifest(built: Path) -> None:
    import re

    data = sorted(p.name for p in (built / "data").iterdir())
    assert data == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]  # one file per original shard
    assert all(re.fullmatch(SHARD_NAME, name) for name in data)
    card = (built / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    assert "configs:" in card and "data/train-*" in card and "dataset_info:" in card
    assert (built / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (built / "rejected.jsonl").exists()
    manifest = json.loads((built / "llava_hf.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == FORMAT_VERSION and manifest["format"] == "conversations"
    assert manifest["splits"]["train"]["num_rows"] == 12
    assert manifest["splits"]["train"]["files"] == [f"data/{name}" for name in data]
    assert (
        manifest["inputs"] == ["shapes.json"] and manifest["rejected"] == {} and manifest["mixture"] is None
    )
    assert sum(pq.ParquetFile(built / "data" / n).metadata.num_rows for n in data) == 12
    assert leftovers(built.parent) == []


LOAD_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import datasets

    def summary(ds):
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
        ds = ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))
        sha = lambda b: hashlib.sha256(b).hexdigest()
        return [
            {
                "id": r["id"],
                "images": [[m["path"], sha(m["bytes"])] for m in r["images"]],
                "videos": [[m["path"], sha(m["bytes"])] for m in r["videos"]],
                "conversations": r["conversations"],
                "source": r["source"],
                "metadata": r["metadata"],
                "video_info": r["video_info"],
            }
            for r in ds
        ]

    dd = datasets.load_dataset(sys.argv[1])
    stream = datasets.load_dataset(sys.argv[1], streaming=True)
    out = {
        "splits": sorted(dd),
        "features": dd["train"].features.to_dict(),
        "stream_features": stream["train"].features.to_dict(),
        "rows": summary(dd["train"]),
        "stream_rows": summary(stream["train"]),
        "llava_hf_imported": any(m == "llava_hf" or m.startswith("llava_hf.") for m in sys.modules),
    }
    print(json.dumps(out))
    """
)


def test_plain_datasets_loads_the_folder_in_a_process_without_llava_hf(
    built: Path, corpus: dict[str, Any], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["USE_TORCH"] = "0"  # datasets would import torch (seconds) only to offer torch formatting
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(built)],
        cwd=tmp_path,  # not the repository: llava_hf is only reachable through the installed package
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["llava_hf_imported"] is False
    assert got["splits"] == ["train"]
    assert datasets.Features.from_dict(got["features"]) == features_for()
    assert datasets.Features.from_dict(got["stream_features"]) == features_for()
    infos = [r.pop("video_info") for r in got["rows"]]
    assert got["rows"] == corpus["expected"]  # relative paths and the files' sha256, in order
    assert [len(i) for i in infos] == [len(r["videos"]) for r in corpus["expected"]]
    for row in got["stream_rows"]:
        row.pop("video_info")
    assert got["stream_rows"] == corpus["expected"]


def test_media_are_the_files_bytes_under_their_relative_paths(built: Path, corpus: dict[str, Any]) -> None:
    table = pq.read_table(sorted((built / "data").glob("*.parquet")), columns=["id", "images", "videos"])
    by_id = {row["id"]: row for row in table.to_pylist()}
    image = by_id["000000033471"]["images"][0]
    assert image["path"] == "coco/train2017/1.jpg"
    assert image["bytes"] == (corpus["images"] / "coco" / "train2017" / "1.jpg").read_bytes()
    for video in by_id["vid-2"]["videos"]:
        assert video["bytes"] == (corpus["videos"] / video["path"]).read_bytes()
    assert [v["path"] for v in by_id["vid-2"]["videos"]] == ["clips/4.mp4", "2.avi"]


def test_row_groups_hold_at_most_64_rows_and_read_alone(corpus: dict[str, Any], tmp_path: Path) -> None:
    records = [
        {"id": f"r{i}", "conversations": turns(("human", f"q{i}"), ("gpt", "a"))}
        if i % 10
        else {
            "id": f"r{i}",
            "image": "gen/2.jpg",
            "conversations": turns(("human", "<image>\nq"), ("gpt", "a")),
        }
        for i in range(150)
    ]
    data = write_records(tmp_path / "many.json", records)
    build(corpus, tmp_path / "out", data_files=str(data))
    (shard,) = sorted((tmp_path / "out" / "data").glob("*.parquet"))
    pf = pq.ParquetFile(shard)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    assert sizes == [64, 64, 22]
    group = pf.read_row_group(1, columns=["id", "images"])
    assert group.num_rows == 64
    assert group.column("id").to_pylist() == [f"r{i}" for i in range(64, 128)]
    assert [len(x) for x in group.column("images").to_pylist()] == [int(i % 10 == 0) for i in range(64, 128)]


def test_rebuilds_and_num_proc_give_byte_identical_shards(
    corpus: dict[str, Any], built: Path, tmp_path: Path
) -> None:
    build(corpus, tmp_path / "a", num_proc=1, records_per_shard=3)
    build(corpus, tmp_path / "b", num_proc=1, records_per_shard=3)
    a, b, c = (tree(folder / "data") for folder in (tmp_path / "a", tmp_path / "b", built))
    assert len(a) == 4
    assert a == b == c  # `built` used num_proc=2


def test_one_process_parses_the_json_once(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    scanner = llava_hf.records.scanner._ArrayScanner
    original = scanner._decode_one

    def counting(self: Any) -> Any:
        decoded.append(1)
        return original(self)

    monkeypatch.setattr(scanner, "_decode_one", counting)
    build(corpus, tmp_path / "one", num_proc=1, records_per_shard=3)
    assert len(decoded) == len(json.loads(corpus["json"].read_text()))  # planning's pass is the only one
    decoded.clear()
    build(corpus, tmp_path / "two", num_proc=2, records_per_shard=3)
    assert len(decoded) == len(json.loads(corpus["json"].read_text()))  # the workers' passes are not here


def test_a_split_of_one_shard_is_built_without_worker_processes(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llava_hf.utils.parallel

    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a worker pool was started for one shard")

    monkeypatch.setattr(llava_hf.utils.parallel, "ProcessPoolExecutor", no_pool)
    result = build(corpus, tmp_path / "one", num_proc=2)  # 11 records: one shard
    assert result.num_rows["train"] == len(corpus["expected"])
    with pytest.raises(AssertionError, match="worker pool"):
        build(corpus, tmp_path / "four", num_proc=2, records_per_shard=3)


def test_one_and_two_processes_agree_on_truncated_and_gzipped_inputs(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    import gzip

    records = json.loads(corpus["json"].read_text())
    text = json.dumps(records, indent=1)
    truncated = tmp_path / "cut.json"
    truncated.write_text(text[: len(text) * 2 // 3])  # cut inside a record: the rest is gone
    packed = tmp_path / "all.json.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    outs, results = [], []
    for num_proc in (1, 2):
        out = tmp_path / f"np{num_proc}"
        result = build(
            corpus,
            out,
            data_files={"train": [str(truncated), str(packed)]},
            num_proc=num_proc,
            records_per_shard=2,
            on_error="skip",
        )
        assert result.rejected["invalid_json"] == 1 and result.rejected["duplicate_id"] > 0
        outs.append(out)
        results.append(result)
    assert results[0].rejected == results[1].rejected and results[0].num_rows == results[1].num_rows
    assert tree(outs[0] / "data") == tree(outs[1] / "data")
    assert (outs[0] / "rejected.jsonl").read_bytes() == (outs[1] / "rejected.jsonl").read_bytes()


def _image_records(n: int, image: Any = lambda i: f"coco/train2017/{i % 3 + 1}.jpg") -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "image": image(i), "conversations": turns(("human", "<image>"), ("gpt", "a"))}
        for i in range(n)
    ]


def test_max_shard_size_gives_files_close_to_it(corpus: dict[str, Any], tmp_path: Path) -> None:
    """A file ends before the record that would take its records' JSON text plus images past
    max_shard_size: files of about that size, none above it (push re-shards a split that has one),
    not one per records_per_shard; named as the Hub expects. An explicit records_per_shard binds."""
    import re

    limit = 1_000_000
    records = _image_records(200)  # images of 12-23 KB
    data = write_records(tmp_path / "many.json", records)
    text = data.stat().st_size // len(records) + 1  # JSON text per record, about
    sizes = [(corpus["images"] / r["image"]).stat().st_size for r in records]
    out = tmp_path / "out"
    result = build(corpus, out, data_files=str(data), max_shard_size="1MB")
    names = sorted(p.name for p in (out / "data").iterdir())
    n = len(names)
    assert n >= 3
    assert names == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert all(re.fullmatch(SHARD_NAME, name) for name in names)
    assert result.files["train"] == [f"data/{name}" for name in names]
    rows = [pq.ParquetFile(out / "data" / name).metadata.num_rows for name in names]
    files = [(out / "data" / name).stat().st_size for name in names]
    start = 0
    for count, size in zip(rows[:-1], files[:-1]):
        # the next record would not have fitted
        assert (
            sum(sizes[start : start + count])
            <= limit
            < sum(sizes[start : start + count + 1]) + text * (count + 1)
        )
        assert limit - 2 * max(sizes) <= size <= limit  # close to the limit, never above it
        start += count
    assert files[-1] <= limit
    from contextlib import ExitStack

    from llava_hf.hub.shards import folder_shards, reshard_if_needed

    with ExitStack() as stack:  # push with the same size keeps the files as they are
        shards = folder_shards(out, "default")
        assert reshard_if_needed(out, shards, limit, "default", stack) == (out, shards)
    ds = datasets.load_dataset(str(out), split="train")
    assert [r["id"] for r in ds.select_columns(["id"])] == [f"r{i}" for i in range(200)]
    assert result.num_rows["train"] == 200

    capped = build(
        corpus, tmp_path / "capped", data_files=str(data), max_shard_size="1MB", records_per_shard=25
    )
    assert [pq.ParquetFile(tmp_path / "capped" / f).metadata.num_rows for f in capped.files["train"]] == [
        25
    ] * 8


def test_files_cut_by_size_are_the_same_for_any_num_proc_and_for_gzip(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """Planning cuts where the data says: one process streaming planning's pass, two processes
    reading their parts again, and a .gz of the same text (planned by record ranges) agree."""
    import gzip

    records = _image_records(150, image=lambda i: f"coco/train2017/{i % 3 + 1}.jpg" if i % 4 else "gen/1.jpg")
    data = write_records(tmp_path / "many.json", records)
    packed = tmp_path / "many.json.gz"
    packed.write_bytes(gzip.compress(data.read_bytes()))
    results = {}
    for name, source, num_proc in (("one", data, 1), ("two", data, 2), ("gz", packed, 2)):
        results[name] = build(
            corpus, tmp_path / name, data_files=str(source), max_shard_size="600KB", num_proc=num_proc
        )
    assert len(results["one"].files["train"]) > 2
    assert tree(tmp_path / "one" / "data") == tree(tmp_path / "two" / "data")
    rows = {
        name: [pq.ParquetFile(tmp_path / name / f).metadata.num_rows for f in result.files["train"]]
        for name, result in results.items()
    }
    assert rows["one"] == rows["two"] == rows["gz"]


def test_a_file_is_cut_at_twice_max_shard_size_when_planning_cannot_measure_the_media(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """Media named by URL are not stat'ed by planning (they count 0): the writer still ends a file
    once it holds twice max_shard_size, so a file cannot grow without bound."""
    url = (corpus["images"] / "coco" / "train2017").as_uri()
    records = _image_records(200, image=lambda i: f"{url}/{i % 3 + 1}.jpg")
    data = write_records(tmp_path / "urls.json", records)
    result = build(
        corpus, tmp_path / "out", data_files=str(data), max_shard_size="1MB", allow_outside_root=True
    )
    files = [tmp_path / "out" / f for f in result.files["train"]]
    assert len(files) > 1 and result.num_rows["train"] == 200
    assert all(f.stat().st_size >= 2_000_000 for f in files[:-1])
    assert all(f.stat().st_size < 2_000_000 + 64 * 25_000 for f in files)  # a row group at most past it


def test_a_build_keeps_the_users_folders_beside_its_output(corpus: dict[str, Any], tmp_path: Path) -> None:
    """The hostile tester's case: folders named OUT.incomplete and OUT.old were deleted by a build."""
    for name in ("out.incomplete", "out.old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text(name)
    build(corpus, tmp_path / "out")
    build(corpus, tmp_path / "out")  # a rebuild replaces the previous build, and only that
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.incomplete", "out.old"]
    assert all((tmp_path / n / "mine.txt").read_text() == n for n in ("out.incomplete", "out.old"))


def test_bad_max_shard_size_is_a_usage_error(corpus: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="size"):
        build(corpus, tmp_path / "out", max_shard_size="lots")
    with pytest.raises(UsageError, match="on_error"):
        build(corpus, tmp_path / "out", on_error="ignore")
    with pytest.raises(UsageError, match="does not exist"):
        build_folder(str(corpus["json"]), tmp_path / "out", image_folder=str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# -------------------------------------------------------------------------------- the skip policy


@pytest.mark.parametrize("num_proc", [1, 2])  # 1: shards built from the items planning read
def test_skip_policy_books_balance(corpus: dict[str, Any], tmp_path: Path, num_proc: int) -> None:
    root = tmp_path / "in"
    images, videos = make_media(root)
    files, expected, rejected, kept = bad_corpus(root)
    out = tmp_path / "out"
    result = build_folder(
        files,
        out,
        image_folder=str(images),
        video_folder=str(videos),
        on_error="skip",
        num_proc=num_proc,
        records_per_shard=3,
    )
    total_input = 14 + 4
    assert dict(result.rejected) == expected
    assert result.num_rows["train"] + result.num_rejected == total_input
    assert result.warnings["placeholder_added"] == 1
    manifest = json.loads((out / "llava_hf.json").read_text(encoding="utf-8"))
    assert manifest["rejected"] == expected and manifest["splits"]["train"]["num_rows"] == len(kept)
    lines = [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(list(line) == ["file", "index", "id", "code", "message"] for line in lines)
    assert [(Path(line["file"]).name, line["index"]) for line in lines] == rejected  # input order
    assert Counter(line["code"] for line in lines) == Counter(expected)
    dup = [line for line in lines if line["code"] == "duplicate_id"]
    assert [(d["id"], d["index"]) for d in dup] == [("a0", 10), ("a5", 0)]  # the second, not the first
    assert all(line["message"] for line in lines)
    ds = datasets.load_dataset(str(out), split="train")
    assert [r["id"] for r in ds.select_columns(["id"])] == kept


_TEXT_PROBLEMS = [
    # (the JSON text of a bad record, its code): what Python's json reads but a build cannot keep
    ('{"id": "nan", "conversations": [HQ, GA], "meta": {"s": [1, NaN]}}', "invalid_number"),
    ('{"id": "inf", "conversations": [HQ, GA], "w": -Infinity}', "invalid_number"),
    ('{"id": "big", "conversations": [HQ, GA], "w": 1e999}', "invalid_number"),
    ('{"id": "long", "conversations": [HQ, GA], "n": ' + "9" * 5000 + "}", "invalid_number"),
    ('{"id": "sur", "conversations": [{"from": "human", "value": "q\\ud800"}, GA]}', "invalid_text"),
    ('{"id": "key", "conversations": [HQ, GA], "k\\udc00": 1}', "invalid_text"),
    ('{"id": "deep", "conversations": [HQ, GA], "x": ' + "[" * 5000 + "]" * 5000 + "}", "invalid_json"),
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl.gz"])
@pytest.mark.parametrize("num_proc", [1, 2])
def test_text_problems_are_counted_and_skipped_as_validate_reports_them(
    tmp_path: Path, suffix: str, num_proc: int
) -> None:
    """NaN, numbers out of range, lone surrogates and deep nesting: rejected at their place, never a crash."""
    turns = '{"from": "human", "value": "q"}', '{"from": "gpt", "value": "a"}'
    texts = []
    for k, (text, _) in enumerate(_TEXT_PROBLEMS):
        texts.append(f'{{"id": "ok-{k}", "conversations": [{turns[0]}, {turns[1]}]}}')
        texts.append(text.replace("HQ", turns[0]).replace("GA", turns[1]))
    path = tmp_path / f"data{suffix}"
    data = ("\n".join(texts) + "\n") if ".jsonl" in suffix else "[\n" + ",\n".join(texts) + "\n]"
    path.write_bytes(gzip.compress(data.encode(), mtime=0) if suffix.endswith(".gz") else data.encode())
    want = {2 * k + 1: code for k, (_, code) in enumerate(_TEXT_PROBLEMS)}
    validated = {
        c.index: [p.code for p in c.problems] for c in Validator().iter_checked([str(path)]) if c.problems
    }
    assert validated == {i: [code] for i, code in want.items()}
    out = tmp_path / "out"
    result = build_folder(str(path), out, on_error="skip", num_proc=num_proc, records_per_shard=3)
    assert result.num_rows["train"] == len(_TEXT_PROBLEMS)
    assert dict(result.rejected) == dict(Counter(want.values()))
    lines = [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {line["index"]: line["code"] for line in lines} == want
    assert all(" at line " in line["message"] and "(byte " in line["message"] for line in lines)
    ds = datasets.load_dataset(str(out), split="train")
    assert ds["id"] == [f"ok-{k}" for k in range(len(_TEXT_PROBLEMS))]
    with pytest.raises(RecordError) as info:
        build_folder(str(path), tmp_path / "raised", num_proc=num_proc, records_per_shard=3)
    assert info.value.code in set(want.values()) and not (tmp_path / "raised").exists()


def test_a_record_with_a_missing_then_an_outside_path_is_rejected_under_validate_s_code(
    tmp_path: Path,
) -> None:
    # build judges paths by their text first (it opens the files later): an earlier missing file
    # must still be the first error, as validate, which asks the file system, reports it
    images = tmp_path / "images"
    make_jpeg(images / "ok.jpg", size=(16, 16))
    turns = [{"from": "human", "value": "<image><image>q"}, {"from": "gpt", "value": "a"}]
    records = [
        {"id": "a", "image": ["missing.jpg", "../x.jpg"], "conversations": turns},
        {"id": "b", "image": ["ok.jpg", "../x.jpg"], "conversations": turns},
        {"id": "c", "image": ["text.jpg", "missing.jpg"], "conversations": turns},  # found when read
        {"id": "d", "image": ["ok.jpg", "ok.jpg"], "conversations": turns},
    ]
    (images / "text.jpg").write_text("not an image")
    data = tmp_path / "d.json"
    data.write_text(json.dumps(records))
    validator = Validator(roots=llava_hf.media.files.MediaRoots(str(images)))
    validated = [c.first_error.code for c in validator.iter_checked([str(data)]) if c.first_error]
    assert validated == ["missing_media", "media_outside_root", "missing_media"]
    build_folder(str(data), tmp_path / "out", image_folder=str(images), on_error="skip")
    lines = (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8").split("\n")
    assert [json.loads(line)["code"] for line in lines if line] == validated


@pytest.mark.parametrize("packed", [False, True])
def test_an_id_used_by_a_record_that_does_not_normalize_is_a_duplicate_later_in_both(
    tmp_path: Path, packed: bool
) -> None:
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    items: list[Any] = [{"id": "r0"}, {"id": "r0", "conversations": turns}, {"conversations": []}]
    if packed:  # a pack's id-less sample is named by its position too
        items = [[item] for item in items]
    generated = "data-2-0" if packed else "data-2"
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps([*items, {"id": generated, "conversations": turns}, {"id": "k", "conversations": turns}])
    )
    checked = list(Validator().iter_checked([str(data)]))
    validated = [(c.index, c.first_error.code) for c in checked if c.first_error]
    bad, dup = "invalid_conversations", "duplicate_id"
    assert validated == [(0, bad), (1, dup), (2, bad), (3, dup)]
    assert generated in checked[2].problems[0].message
    build_folder(str(data), tmp_path / "out", on_error="skip")
    lines = (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8").split("\n")
    assert [(json.loads(line)["index"], json.loads(line)["code"]) for line in lines if line] == validated


def test_a_record_s_own_pack_key_is_rejected_not_a_crash(tmp_path: Path) -> None:
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    data = tmp_path / "d.json"
    data.write_text(
        json.dumps(
            [{"id": "a", "conversations": turns, "_llava_hf_pack": []}, {"id": "b", "conversations": turns}]
        )
    )
    result = build_folder(str(data), tmp_path / "out", on_error="skip")
    assert result.rejected == Counter({"invalid_record": 1}) and result.num_rows["train"] == 1


def test_an_output_folder_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(
        json.dumps(
            [{"id": "a", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
        )
    )
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xff")
    with pytest.raises(UsageError, match="not a valid UTF-8 path"):
        build_folder(str(data), out)
    assert not os.path.exists(out)


def _from_a_deep_stack(depth: int, fn: Any, *args: Any) -> Any:
    return fn(*args) if depth == 0 else _from_a_deep_stack(depth - 1, fn, *args)


def test_values_as_deep_as_the_reader_reads_build_and_export_from_any_stack(tmp_path: Path) -> None:
    # json's C encoder and decoder recurse once per level: the reader reads at the bottom of a new
    # thread when it must, so writing and reading again (metadata, a message) must not fail either
    import sys

    from llava_hf.export import export_llava

    n = sys.getrecursionlimit() - 40
    deep = "[" * n + "]" * n
    turns = '[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]'
    data = tmp_path / "d.json"
    data.write_text(
        f'[{{"id": "a", "conversations": {turns}, "x": {deep}}}, {{"id": {deep}, "conversations": {turns}}}]'
    )
    run = functools.partial(_from_a_deep_stack, 300)
    checked = run(lambda: list(Validator().iter_checked([str(data)])))
    assert [[p.code for p in c.problems] for c in checked] == [[], ["invalid_record"]]
    result = run(functools.partial(build_folder, on_error="skip"), str(data), tmp_path / "out")
    assert result.rejected == Counter({"invalid_record": 1}) and result.num_rows["train"] == 1
    run(export_llava, tmp_path / "out", tmp_path / "exported")
    exported = (tmp_path / "exported" / "train.json").read_text(encoding="utf-8")
    assert exported.count("[") == n + 2  # the array of records, the turns, and x


def test_rejected_records_whose_message_holds_a_line_separator(tmp_path: Path) -> None:
    # U+2028 and U+0085 stay unescaped in a JSON line (ensure_ascii=False): str.splitlines splits there
    good = {"id": "g", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    bad = [{**good, "id": f"x\u2028{k}\x85", "conversations": []} for k in range(2)]
    data = tmp_path / "d.json"
    data.write_text(json.dumps([bad[0], good, bad[1]]), encoding="utf-8")
    result = build_folder(str(data), tmp_path / "out", on_error="skip")
    lines = (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8").split("\n")
    assert [json.loads(line)["id"] for line in lines if line] == [b["id"] for b in bad]
    assert result.rejected == Counter({"invalid_conversations": 2})
    data.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(LlavaHFError, match="every record was rejected"):
        build_folder(str(data), tmp_path / "out2", on_error="skip")


@pytest.mark.parametrize("num_proc", [1, 2])
def test_raise_policy_raises_the_first_bad_record_and_writes_nothing(
    corpus: dict[str, Any], tmp_path: Path, num_proc: int
) -> None:
    root = tmp_path / "in"
    images, videos = make_media(root)
    files, *_ = bad_corpus(root)
    out = tmp_path / "out"
    with pytest.raises(RecordError) as info:
        build_folder(
            files,
            out,
            image_folder=str(images),
            video_folder=str(videos),
            num_proc=num_proc,
            records_per_shard=3,
        )
    err = info.value
    if num_proc == 1:  # in order, the first bad record is the first that fails
        assert (err.code, err.index, err.id) == ("missing_media", 1, "missing")
    else:  # two workers race: the error is the first bad record of one of the shards (3 records each)
        firsts = {
            ("first.json", "missing_media", 1),
            ("first.json", "unreadable_media", 3),
            ("first.json", "placeholder_mismatch", 6),
            ("first.json", "placeholder_in_answer", 9),
            ("second.jsonl", "duplicate_id", 0),
        }
        assert (Path(err.file).name, err.code, err.index) in firsts
    assert Path(err.file).name in {"first.json", "second.jsonl"} and isinstance(err.index, int)
    assert err.hint and "on_error='skip'" in err.hint
    assert not out.exists()
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------- interrupted builds


def test_an_interrupted_build_leaves_the_previous_output_intact(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    build(corpus, out, records_per_shard=3)
    before = tree(out)
    original = llava_hf.build.parquet.ShardWriter.write
    calls: list[int] = []

    def write_then_interrupt(self: Any, rows: Any, path_for: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(self, rows, path_for, **kwargs)

    monkeypatch.setattr(llava_hf.build.parquet.ShardWriter, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build(corpus, out, records_per_shard=3)
    with pytest.raises(KeyboardInterrupt):
        build(corpus, tmp_path / "fresh", records_per_shard=3)
    calls.clear()
    assert len(before) > 3 and tree(out) == before
    assert not (tmp_path / "fresh").exists()
    assert leftovers(tmp_path) == []


def test_a_worker_failing_midway_leaves_no_output(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = llava_hf.build.parquet.ShardWriter.write

    def fail_on_third_shard(self: Any, rows: Any, path_for: Any, **kwargs: Any) -> Any:
        if path_for(0).endswith("-00002-00000.parquet"):
            raise RuntimeError("disk on fire")
        return original(self, rows, path_for, **kwargs)

    monkeypatch.setattr(llava_hf.build.parquet.ShardWriter, "write", fail_on_third_shard)
    with pytest.raises(LlavaHFError, match="disk on fire"):
        build(corpus, tmp_path / "out", records_per_shard=3, num_proc=2)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_media_deleted_after_planning(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_error: str
) -> None:
    root = tmp_path / "in"
    images, videos = make_media(root)
    records = shape_records()
    data = write_records(root / "shapes.json", records)
    original = llava_hf.build.folder.iter_plan

    def plan_then_delete(config: Any, **kwargs: Any) -> Any:
        for planned in original(config, **kwargs):
            if planned.spec.stop_index is None:  # planned, not yet built
                (images / "gen" / "1.jpg").unlink()  # used by the pack at index 9 (the last shard)
            yield planned

    monkeypatch.setattr(llava_hf.build.folder, "iter_plan", plan_then_delete)
    out = tmp_path / "out"
    kwargs: dict[str, Any] = {
        "image_folder": str(images),
        "video_folder": str(videos),
        "records_per_shard": 3,
    }
    if on_error == "raise":
        with pytest.raises(RecordError) as info:
            build_folder(str(data), out, num_proc=2, **kwargs)
        assert (info.value.code, info.value.id, info.value.index) == ("missing_media", "pack-0", 9)
        assert not out.exists() and leftovers(tmp_path) == []
    else:
        result = build_folder(str(data), out, on_error="skip", num_proc=2, **kwargs)
        assert dict(result.rejected) == {"missing_media": 1}
        assert result.num_rows["train"] == 11


def test_an_existing_folder_that_is_not_a_build_is_never_replaced(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not a llava-hf build"):
        build(corpus, mine)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    # an empty folder, or a previous build, is replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    build(corpus, empty, data_files=str(write_records(tmp_path / "one.json", shape_records()[:1])))
    build(corpus, empty)
    manifest = json.loads((empty / "llava_hf.json").read_text(encoding="utf-8"))
    assert manifest["splits"]["train"]["num_rows"] == 12 and leftovers(tmp_path) == []


def test_a_split_with_no_rows_is_refused_with_its_reasons(corpus: dict[str, Any], tmp_path: Path) -> None:
    data = write_records(
        tmp_path / "bad.json", [{"id": "x", "conversations": turns(("gpt", "a"), ("human", "q"))}]
    )
    out = tmp_path / "out"
    with pytest.raises(LlavaHFError, match=r"no rows: every record was rejected \(bad_turn_order=1\)"):
        build(corpus, out, data_files=str(data), on_error="skip")
    assert not out.exists()


def test_a_same_named_file_in_the_current_directory_is_never_stored_instead(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "cwd" / "coco" / "train2017" / "1.jpg"
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes(b"a different file")
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "out"
    build(corpus, out, num_proc=2, records_per_shard=3)
    table = pq.read_table(sorted((out / "data").glob("*.parquet")), columns=["id", "images"])
    first = table.to_pylist()[0]
    assert first["images"][0] == {
        "bytes": (corpus["images"] / "coco" / "train2017" / "1.jpg").read_bytes(),
        "path": "coco/train2017/1.jpg",
    }


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    # Ctrl-C in a terminal: SIGINT raises KeyboardInterrupt. A process started with SIGINT ignored
    # (a background job of a non-interactive shell, as a CI runner may start pytest) passes that on
    # to its children, and Python then leaves SIGINT ignored: the build would never see the Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pathlib import Path
    import llava_hf.build.folder
    from llava_hf import build_folder

    original = llava_hf.build.parquet.ShardWriter.write

    def slow_write(self, rows, path_for, **kwargs):
        parts = original(self, rows, path_for, **kwargs)
        print("wrote", Path(path_for(0)).name, flush=True)
        time.sleep(60)  # the user presses Ctrl-C while the other shards are being built
        return parts

    llava_hf.build.parquet.ShardWriter.write = slow_write
    json_file, images, videos, out = sys.argv[1:]
    build_folder(json_file, out, image_folder=images, video_folder=videos, num_proc=2, records_per_shard=3)
    print("finished", flush=True)
    """
)


def test_ctrl_c_during_a_parallel_build_leaves_nothing(corpus: dict[str, Any], tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "out"
    args = [str(corpus["json"]), str(corpus["images"]), str(corpus["videos"]), str(out)]
    env = {**os.environ, "USE_TORCH": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: Ctrl-C reaches the parent and its workers
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until a worker has written a shard
        assert line.startswith("wrote"), proc.stderr.read() if proc.stderr else ""
        assert (tmp_path / ".out.llava-hf-incomplete" / "out").is_dir()  # the build is under way
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # no hang
        for _ in range(100):  # and no worker left behind in its process group
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes are still running after the interrupted build")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert not out.exists()
    assert leftovers(tmp_path) == []


def _start_slow_build(corpus: dict[str, Any], out: Path, tmpdir: Path | None = None) -> subprocess.Popen[str]:
    """A two-process build (in its own session) whose workers pause after each shard; it has written one."""
    args = [str(corpus["json"]), str(corpus["images"]), str(corpus["videos"]), str(out)]
    env = {**os.environ, "USE_TORCH": "0"}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until a worker has written a shard
    assert line.startswith("wrote"), proc.stderr.read() if proc.stderr else ""
    return proc


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper here)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_when_the_build_is_killed(corpus: dict[str, Any], tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "out"
    scratch = tmp_path / "tmpdir"  # the build's TMPDIR: a killed build leaves nothing there either
    scratch.mkdir()
    proc = _start_slow_build(corpus, out, scratch)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [int(pid) for pid in children]
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the killed build"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    # the killed build left its marked working folder; the next build removes it and succeeds
    assert not out.exists() and list(scratch.iterdir()) == []
    assert leftovers(tmp_path) == [".out.llava-hf-incomplete", ".out.llava-hf-lock"]
    build(corpus, out, num_proc=2, records_per_shard=3)
    assert (out / "llava_hf.json").is_file() and leftovers(tmp_path) == []


def test_a_second_build_into_the_same_folder_is_refused_or_waits(
    corpus: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from llava_hf.errors import OutputLockedError

    out = tmp_path / "out"
    proc = _start_slow_build(corpus, out)
    try:
        with pytest.raises(OutputLockedError, match=rf"another llava-hf run \(pid {proc.pid}\) is writing"):
            build(corpus, out)
        # the CLI: one line and a hint, exit 1, no traceback
        from llava_hf.cli import main

        argv = ["build", str(corpus["json"]), "--image-folder", str(corpus["images"])]
        argv += ["--video-folder", str(corpus["videos"]), "--output-dir", str(out)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"another llava-hf run (pid {proc.pid}) is writing to" in err
        assert "Traceback" not in err and "--wait" in err
        assert not out.exists()  # the running build's output is untouched (it is still being written)
        assert (tmp_path / ".out.llava-hf-incomplete" / "out").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    result = build(corpus, out, wait=True)  # the lock died with its holder: nothing to wait for
    assert result.num_rows["train"] > 0 and leftovers(tmp_path) == []


def test_progress_bars_follow_datasets_switch(
    corpus: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = write_records(tmp_path / "one.json", shape_records()[:1])
    build(corpus, tmp_path / "a", data_files=str(data))
    assert "Building train" in capfd.readouterr().err
    datasets.disable_progress_bars()
    try:
        build(corpus, tmp_path / "b", data_files=str(data))
    finally:
        datasets.enable_progress_bars()
    assert "Building train" not in capfd.readouterr().err


# --------------------------------------------------------------------------------------------- the card


def test_the_card_counted_while_building_is_the_card_read_back(built: Path) -> None:
    """A build counts the card's numbers from the tables it writes; reading its files back gives the
    same card (videos, text-only rows, several files from two processes)."""
    assert (built / "README.md").read_text(encoding="utf-8") == str(make_card(built, pretty_name="out"))


@pytest.mark.parametrize("num_proc", [1, 2])
def test_the_card_counted_while_building_samples_the_same_image_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, num_proc: int
) -> None:
    """Several files per split, two splits, images of distinct sizes (JPEG, PNG, and a GIF that only
    Pillow reads): the sample of sizes counted while building is the one read back."""
    from llava_hf.build import stats as _cardstats

    monkeypatch.setattr(_cardstats, "IMAGE_SAMPLE", 7)  # fork workers see it too
    monkeypatch.setattr(_cardstats, "SAMPLE_GROUPS", 4)
    images = tmp_path / "images"
    for k in range(9):
        make_jpeg(images / f"{k}.jpg", size=(40 + 4 * k, 30 + 2 * k), seed=k)
    Image.new("RGB", (77, 33), (1, 2, 3)).save(images / "p.png")
    (images / "g.jpg").write_bytes(gif_bytes())  # a GIF named .jpg: Pillow's size, not the quick check's

    def records(n: int, salt: int) -> list[dict[str, Any]]:
        names = [f"{k}.jpg" for k in range(9)] + ["p.png", "g.jpg"]
        out: list[dict[str, Any]] = []
        for i in range(n):
            picked = [names[(i * 7 + salt + j) % len(names)] for j in range(i % 3)]
            record: dict[str, Any] = {
                "id": f"{salt}-{i}",
                "conversations": turns(("human", "q" * (1 + i % 5)), ("gpt", "a")),
            }
            if picked:
                record["image"] = picked[0] if len(picked) == 1 else picked
                record["conversations"][0]["value"] = "<image>\n" * len(picked) + "q"
            out.append(record)
        return out

    train = write_records(tmp_path / "train.json", records(300, 0))
    test = write_records(tmp_path / "test.json", records(90, 5))
    out = tmp_path / "out"
    build_folder(
        {"train": str(train), "test": str(test)},
        out,
        image_folder=str(images),
        num_proc=num_proc,
        max_shard_size="20KB",
        records_per_shard=70,
    )
    assert len(list((out / "data").glob("train-*"))) > 2
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "sample of 7 of" in readme
    assert readme == str(make_card(out, pretty_name="out"))


def test_shards_written_where_this_process_cannot_see_them_are_one_clear_error(tmp_path: Path) -> None:
    """A Ray worker on another node writes a local output_dir on its own disk when the folder is not shared:
    the driver says so (and what to give instead) rather than failing to rename a missing file."""
    from llava_hf.build.parquet import ShardPart
    from llava_hf.errors import UsageError

    seen = tmp_path / "seen.parquet"
    seen.write_bytes(b"x")
    parts = [ShardPart(str(seen), 1, 1, None), ShardPart(str(tmp_path / "elsewhere.parquet"), 1, 1, None)]
    llava_hf.build.folder._check_visible(parts[:1])
    with pytest.raises(UsageError, match=r"1 of the 2 shard file\(s\).*elsewhere\.parquet") as err:
        llava_hf.build.folder._check_visible(parts)
    assert "every node mounts" in str(err.value.hint)
