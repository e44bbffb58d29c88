"""LlavaBuilder through the standard builder API: every record shape, Arrow and Parquet, streaming,
num_proc, the one schema, media bytes and paths, video facts, metadata, config validation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llava_hf import LlavaBuilder, LlavaConfig, build_folder, features_for, load_llava
from llava_hf.errors import UsageError
from tests.fixtures.build_corpus import (
    NESTED_METADATA,
    assert_video_info,
    make_corpus,
    summaries,
    turns,
    undecoded,
    write_records,
)
from tests.fixtures.records import G, H


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_corpus(tmp_path_factory.mktemp("builder_corpus"))


def make_builder(corpus: dict[str, Any], cache: Path, **kwargs: Any) -> LlavaBuilder:
    kwargs.setdefault("records_per_shard", 3)
    return LlavaBuilder(
        cache_dir=str(cache),
        data_files=kwargs.pop("data_files", str(corpus["json"])),
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        **kwargs,
    )


# ------------------------------------------------------------------------------------------- planning


def test_big_file_is_planned_in_several_original_shards(corpus: dict[str, Any], tmp_path: Path) -> None:
    builder = make_builder(corpus, tmp_path, records_per_shard=3)
    (shards, duplicates) = builder.plan()["train"]
    assert [s.start_index for s in shards] == [0, 3, 6, 9]  # 11 items, 3 per shard
    assert [s.stop_index for s in shards] == [3, 6, 9, None]
    assert all(s.file == str(corpus["json"]) for s in shards)
    assert len({s.start_offset for s in shards}) == 4  # byte ranges, not re-reads from the start
    assert duplicates == frozenset()
    # each shard alone yields its own records, in order; together they are the whole file
    ids = [[row["id"] for row in builder.generate_rows(s)] for s in shards]
    assert [i for part in ids for i in part] == [row["id"] for row in corpus["expected"]]
    assert ids[0] == ["000000033471", "42", "qwen-images"]


def test_a_streamed_plan_is_the_plan_with_the_items_of_one_pass(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    from llava_hf.build.plan import iter_plan
    from llava_hf.records import iter_items

    records = json.loads(corpus["json"].read_text())
    data = write_records(tmp_path / "dups.json", [*records, records[4], records[0]])  # two ids again
    config = LlavaConfig(data_files=str(data), records_per_shard=3)
    planned = list(iter_plan(config))
    assert [p.spec.start_index for p in planned] == [0, 3, 6, 9, 12]
    assert [sorted(k[1] for k in p.duplicates) for p in planned] == [[], [], [], [11], [12]]
    streamed = []
    for p in iter_plan(config, stream=True):
        assert p.items is not None and not p.duplicates  # judged as the items pass
        streamed.append((p.spec, [(i.index, i.value) for i in p.items], set(p.duplicates)))
    for (spec, items, duplicates), p in zip(streamed, planned, strict=True):
        assert spec == replace(p.spec, stop_index=None)  # where a streamed shard ends is not known ahead
        assert duplicates == p.duplicates
        reread = iter_items(data, start_offset=p.spec.start_offset, start_index=p.spec.start_index)
        stop = p.spec.stop_index
        assert items == [(i.index, i.value) for i in reread if stop is None or (i.index or 0) < stop]
    # a build that stops reading a shard early still gets every shard, with every verdict
    partial = []
    for p in iter_plan(config, stream=True):
        assert p.items is not None
        next(p.items)
        partial.append(p)
    assert [p.spec.start_index for p in partial] == [0, 3, 6, 9, 12]
    assert [set(p.duplicates) for p in partial] == [p.duplicates for p in planned]


def _expected_starts(estimates: list[int], limit: int, every: int = 10**9) -> list[int]:
    """Where shards start, by the rule: a new one at the record that would take the shard's
    estimated bytes past ``limit``, or make it more than ``every`` records."""
    starts, total = [0], 0
    for i, estimate in enumerate(estimates):
        if i != starts[-1] and (total + estimate > limit or i - starts[-1] >= every):
            starts.append(i)
            total = 0
        total += estimate
    return starts


def test_max_shard_size_cuts_a_shard_where_its_estimated_output_reaches_it(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """The estimate of a record's output: its JSON text plus the size of each media file it names
    (a missing one counts 0); a shard never goes past the limit by it. Streamed or not, plain or
    gzip, the cuts are the same."""
    import gzip

    from llava_hf.build.plan import iter_plan

    images, videos = corpus["images"], corpus["videos"]
    choices: list[dict[str, Any]] = [
        {"image": "coco/train2017/1.jpg"},
        {"image": ["coco/train2017/2.jpg", "gen/0.jpg"]},
        {"image": "coco/train2017/nope.jpg"},  # missing: counts 0
        {},  # text only
        {"video": "1.mp4"},
        {"images": ["coco/train2017/3.jpg"], "videos": ["clips/4.mp4"]},
    ]
    records = [
        {
            "id": f"r{i}",
            **choices[i % len(choices)],
            "conversations": turns(("human", "q" * (i * 37 % 500)), ("gpt", "a")),
        }
        for i in range(60)
    ]
    lines = [json.dumps(r) + "\n" for r in records]

    def media(record: dict[str, Any]) -> int:
        total = 0
        for key, root in (("image", images), ("images", images), ("video", videos), ("videos", videos)):
            value = record.get(key, [])
            for path in [value] if isinstance(value, str) else value:
                total += (root / path).stat().st_size if (root / path).exists() else 0
        return total

    # JSON text: up to the next record; the last one's, as compact JSON (no newline)
    texts = [len(line.encode()) for line in lines[:-1]] + [len(json.dumps(records[-1]).encode())]
    estimates = [text + media(r) for text, r in zip(texts, records)]
    plain = tmp_path / "data.jsonl"
    plain.write_text("".join(lines))
    packed = tmp_path / "data.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    limit = 400_000
    for every in (10**9, 7):
        expected = _expected_starts(estimates, limit, every)
        assert 3 < len(expected) < 60
        for data in (plain, packed):
            config = LlavaConfig(
                data_files=str(data),
                image_folder=str(images),
                video_folder=str(videos),
                max_shard_size=limit,
                records_per_shard=every,
            )
            assert [p.spec.start_index for p in iter_plan(config)] == expected
            streamed = [p.spec.start_index for p in iter_plan(config, stream=True) if list(p.items or ())]
            assert streamed == expected
    # without max_shard_size (LlavaBuilder's default), records_per_shard alone decides
    config = LlavaConfig(data_files=str(plain), image_folder=str(images), records_per_shard=25)
    assert [p.spec.start_index for p in iter_plan(config)] == [0, 25, 50]


# ----------------------------------------------------------------------- every shape, every way to read


@pytest.mark.parametrize(
    ("file_format", "num_proc"), [("arrow", 1), ("arrow", 2), ("parquet", 1), ("parquet", 2)]
)
def test_every_shape_builds_to_the_expected_rows(
    corpus: dict[str, Any], tmp_path: Path, file_format: str, num_proc: int
) -> None:
    builder = make_builder(corpus, tmp_path / "cache")
    out = tmp_path / "out"
    builder.download_and_prepare(output_dir=str(out), file_format=file_format, num_proc=num_proc)
    if file_format == "arrow":
        ds = builder.as_dataset(split="train")
    else:  # as_dataset reads only Arrow; the Parquet files are plain Parquet that datasets reads
        files = sorted(str(p) for p in out.glob("*train*.parquet"))
        assert len(files) == len(builder.plan()["train"][0])  # one file per original shard, as a build
        ds = datasets.Dataset.from_parquet(files, features=features_for(), cache_dir=str(tmp_path / "pq"))
    assert isinstance(ds, datasets.Dataset)
    assert ds.features == features_for()
    assert summaries(ds) == corpus["expected"]  # relative media paths included, Parquet too


def test_parquet_download_and_prepare_writes_plain_parquet_with_relative_media_paths(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    # datasets' own Parquet writer keeps only the basename of a local media path ('1.jpg' for
    # 'coco/train2017/1.jpg'): the builder writes each original shard with llava-hf's shard writer
    builder = make_builder(corpus, tmp_path / "cache", content_defined_chunking=True, page_index=True)
    out = tmp_path / "out"
    builder.download_and_prepare(output_dir=str(out), file_format="parquet", num_proc=2)
    files = sorted(out.glob("*train*"))
    n = len(builder.plan()["train"][0])
    assert n > 2 and [p.name for p in files] == [
        f"builder-train-{i:05d}-of-{n:05d}.parquet" for i in range(n)
    ]  # one file per original shard, and no other file left beside them
    rows = 0
    for path in files:
        pf = pq.ParquetFile(path)
        rows += pf.metadata.num_rows
        assert b"huggingface" in pf.schema_arrow.metadata  # datasets' features, as its writers store them
        assert b"content_defined_chunking" in pf.metadata.metadata  # as asked for
        assert pf.metadata.row_group(0).column(0).has_offset_index  # the page index
        assert all(
            pf.metadata.row_group(g).num_rows <= LlavaBuilder.DEFAULT_WRITER_BATCH_SIZE
            for g in range(pf.metadata.num_row_groups)
        )
    assert rows == len(corpus["expected"])
    # plain datasets, no llava-hf features given: the paths are the records' own relative paths
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train")
    assert ds.features == features_for()
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    by_id = {r["id"]: r for r in ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))}
    stored = by_id["000000033471"]["images"][0]
    assert stored["path"] == "coco/train2017/1.jpg"
    assert stored["bytes"] == (corpus["images"] / "coco" / "train2017" / "1.jpg").read_bytes()


def test_parquet_download_and_prepare_rewrites_every_shard_of_a_job(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    # a small max_shard_size gives each job several files (datasets checks it after each flushed batch
    # of writer_batch_size rows): every one of them is rewritten as Parquet
    builder = make_builder(corpus, tmp_path / "cache", writer_batch_size=2)
    out = tmp_path / "out"
    builder.download_and_prepare(output_dir=str(out), file_format="parquet", max_shard_size=1)
    files = sorted(out.glob("*train*"))
    assert len(files) > 1 and all(p.suffix == ".parquet" for p in files)
    assert all(p.read_bytes()[:4] == b"PAR1" for p in files)  # Parquet, not the Arrow stream
    ds = datasets.Dataset.from_parquet(
        [str(p) for p in files], features=features_for(), cache_dir=str(tmp_path / "pq")
    )
    assert summaries(ds) == corpus["expected"]


def test_streaming_yields_the_rows_of_the_built_dataset_in_order(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    builder = make_builder(corpus, tmp_path / "cache")
    stream = builder.as_streaming_dataset(split="train")
    assert isinstance(stream, datasets.IterableDataset)
    assert stream.n_shards == 4  # the original shards
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="arrow", num_proc=1)
    built = builder.as_dataset(split="train")
    streamed_rows = list(undecoded(stream))
    built_rows = list(undecoded(built))
    assert streamed_rows == built_rows  # every column, video_info and bytes included
    assert summaries(stream) == corpus["expected"]


# ------------------------------------------------------------------------------------ media and facts


def test_media_bytes_paths_and_video_info(corpus: dict[str, Any], tmp_path: Path) -> None:
    builder = make_builder(corpus, tmp_path / "cache")
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="arrow")
    rows = {r["id"]: r for r in undecoded(builder.as_dataset(split="train"))}
    image = rows["000000033471"]["images"][0]
    assert image["path"] == "coco/train2017/1.jpg"  # the record's relative path, not the basename
    assert image["bytes"] == (corpus["images"] / "coco/train2017/1.jpg").read_bytes()
    gif = rows["ocr-1"]["images"][0]
    assert gif["bytes"] == (corpus["images"] / "ocr_vqa/cover.jpg").read_bytes()  # not re-encoded
    assert gif["bytes"][:4] == b"GIF8"
    videos = rows["vid-2"]["videos"]
    assert [v["path"] for v in videos] == ["clips/4.mp4", "2.avi"]
    assert [v["bytes"] for v in videos] == [
        (corpus["videos"] / p).read_bytes() for p in ("clips/4.mp4", "2.avi")
    ]
    assert len(rows["vid-2"]["video_info"]) == 2
    for info, name in zip(rows["vid-2"]["video_info"], ("clips/4.mp4", "2.avi")):
        assert_video_info(info, corpus["videos"] / name)
    assert_video_info(rows["vid-1"]["video_info"][0], corpus["videos"] / "1.mp4")
    assert rows["000000033471"]["video_info"] == [] and rows["shapes-5"]["images"] == []


def test_metadata_round_trips_every_extra_key(corpus: dict[str, Any], tmp_path: Path) -> None:
    builder = make_builder(corpus, tmp_path / "cache")
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="arrow")
    rows = {r["id"]: r for r in builder.as_dataset(split="train").select_columns(["id", "metadata"])}
    meta = rows["meta-1"]["metadata"]
    assert meta == NESTED_METADATA
    assert json.dumps(meta, sort_keys=True) == json.dumps(NESTED_METADATA, sort_keys=True)
    assert type(meta["big"]) is int and type(meta["score"]) is float and meta["flag"] is True
    assert rows["42"]["metadata"] == {"task": "compare"}
    assert rows["000000033471"]["metadata"] == {}


def test_metadata_is_stored_exactly_by_both_writers(tmp_path: Path) -> None:
    """datasets' Json writer keeps 10 significant digits of a float: the stored text must be exact, in
    the builder's datasets path as in build_folder's."""
    floats = [0.1 + 0.2, 1 / 3, 1.7976931348623157e308, 5e-324, 0.123456789012345]
    meta = {"f": floats, "s": "a/b é", "n": [1, -(2**63)]}
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"id": "a", "conversations": [H("q"), G("a")], **meta}]))
    builder = LlavaBuilder(data_files=str(data), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="arrow")
    (text,) = builder.as_dataset(split="train").data.column("metadata").to_pylist()
    built = build_folder(str(data), tmp_path / "folder")
    (path,) = built.files["train"]
    (text2,) = pq.read_table(tmp_path / "folder" / path, columns=["metadata"]).column("metadata").to_pylist()
    for stored in (text, text2):
        assert json.loads(stored) == meta
        assert [repr(f) for f in json.loads(stored)["f"]] == [repr(f) for f in floats]


# -------------------------------------------------------------------------------------- the one schema


def _write_kind(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> str:
    return str(write_records(tmp_path / f"{name}.json", records))


def test_text_image_multi_image_and_video_datasets_concatenate_and_interleave(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    kinds = {
        "text": [{"id": "t", "conversations": turns(("human", "Hi"), ("gpt", "Hello"))}],
        "single": [
            {
                "id": "s",
                "image": "coco/train2017/1.jpg",
                "conversations": turns(("human", "<image>"), ("gpt", "A")),
            }
        ],
        "multi": [
            {
                "id": "m",
                "image": ["gen/0.jpg", "gen/1.jpg"],
                "conversations": turns(("human", "<image><image>"), ("gpt", "B")),
            }
        ],
        "video": [{"id": "v", "video": "1.mp4", "conversations": turns(("human", "<video>"), ("gpt", "C"))}],
    }
    built = {
        name: load_llava(
            _write_kind(tmp_path, name, records),
            image_folder=corpus["images"],
            video_folder=corpus["videos"],
            cache_dir=str(tmp_path / "cache"),
        )
        for name, records in kinds.items()
    }
    for ds in built.values():
        assert ds.features == features_for()
    both = datasets.concatenate_datasets(list(built.values()))
    assert [r["id"] for r in both.select_columns(["id"])] == ["t", "s", "m", "v"]
    assert [(len(r["images"]), len(r["videos"])) for r in undecoded(both)] == [(0, 0), (1, 0), (2, 0), (0, 1)]
    mixed = datasets.interleave_datasets(list(built.values()), stopping_strategy="all_exhausted")
    assert sorted(r["id"] for r in mixed.select_columns(["id"])) == ["m", "s", "t", "v"]
    streams = [
        load_llava(
            str(tmp_path / f"{name}.json"),
            image_folder=corpus["images"],
            video_folder=corpus["videos"],
            streaming=True,
        )
        for name in kinds
    ]
    s_mixed = datasets.interleave_datasets(streams, stopping_strategy="all_exhausted")
    assert sorted(r["id"] for r in s_mixed.select_columns(["id"])) == ["m", "s", "t", "v"]


# ------------------------------------------------------------------------------------------ policies


# ------------------------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"on_error": "ignore"}, "on_error"),
        ({"image_folder": "/no/such/images"}, "image_folder"),
        ({"video_folder": "/no/such/videos"}, "video_folder"),
        ({"records_per_shard": 0}, "records_per_shard"),
        ({"max_shard_size": 0}, "max_shard_size"),
        ({"max_shard_size": "500MB"}, "max_shard_size"),
        ({"format": "sharegpt"}, "format"),
        ({"data_files": None}, "no input"),
    ],
)
def test_config_validation_errors_are_usage_errors(
    corpus: dict[str, Any], tmp_path: Path, kwargs: dict[str, Any], words: str
) -> None:
    kwargs = {"data_files": str(corpus["json"]), **kwargs}
    with pytest.raises(UsageError, match=words):
        LlavaConfig(name="default", **kwargs)
    with pytest.raises(UsageError, match=words):
        LlavaBuilder(cache_dir=str(tmp_path), **kwargs)


def test_a_same_named_file_in_the_current_directory_is_never_stored_instead(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # datasets' Image.encode_example drops the bytes of {"bytes", "path"} when `path` names a file
    # relative to the current directory; the row must still hold the bytes read from image_folder
    decoy = tmp_path / "cwd" / "coco" / "train2017" / "1.jpg"
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes((corpus["images"] / "gen" / "0.jpg").read_bytes())
    (tmp_path / "cwd" / "1.mp4").write_bytes(b"not a video")
    monkeypatch.chdir(tmp_path / "cwd")
    real = (corpus["images"] / "coco" / "train2017" / "1.jpg").read_bytes()
    builder = make_builder(corpus, tmp_path / "cache")
    builder.download_and_prepare(output_dir=str(tmp_path / "out"), file_format="arrow", num_proc=2)
    for ds in (builder.as_dataset(split="train"), builder.as_streaming_dataset(split="train")):
        rows = {r["id"]: r for r in undecoded(ds)}
        assert rows["000000033471"]["images"][0]["bytes"] == real
        assert rows["vid-1"]["videos"][0]["bytes"] == (corpus["videos"] / "1.mp4").read_bytes()
        decoded = next(iter(ds))["images"][0]  # the first row has no video (decoding one needs torchcodec)
        assert decoded.size == Image.open(corpus["images"] / "coco" / "train2017" / "1.jpg").size


def test_streaming_after_select_columns_keeps_the_bytes_despite_a_same_named_file_in_the_cwd(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "cwd" / "coco" / "train2017" / "1.jpg"
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes((corpus["images"] / "gen" / "0.jpg").read_bytes())
    monkeypatch.chdir(tmp_path / "cwd")
    stream = make_builder(corpus, tmp_path / "cache").as_streaming_dataset(split="train")
    size = Image.open(corpus["images"] / "coco" / "train2017" / "1.jpg").size
    # each of these rebuilds plain Features; rows must still come from the bytes read from image_folder
    for narrowed in (
        stream.select_columns(["id", "images"]),
        stream.remove_columns(["conversations"]),
        stream.rename_column("source", "origin"),
    ):
        assert next(iter(narrowed))["images"][0].size == size


def _one_shard_of_150(tmp_path: Path) -> tuple[LlavaBuilder, Path]:
    """A builder over 150 single-image records (distinct images) in one shard: more than two batches."""
    images = tmp_path / "images"
    images.mkdir()
    records = []
    for i in range(150):
        Image.new("RGB", (32 + i % 7, 24), (i, 255 - i, (7 * i) % 256)).save(images / f"{i}.jpg")
        records.append(
            {
                "id": i,
                "image": f"{i}.jpg",
                "conversations": turns(("human", f"<image>\nimage {i}?"), ("gpt", "yes")),
            }
        )
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    return LlavaBuilder(
        cache_dir=str(tmp_path / "cache"), data_files=str(data), image_folder=str(images)
    ), images


def test_streamed_tables_stay_valid_while_later_batches_are_read(tmp_path: Path) -> None:
    # a shard of more rows than one batch: iterating in bigger batches holds earlier tables while the
    # builder reads on, so their media bytes must not be overwritten by the next batch's
    builder, images = _one_shard_of_150(tmp_path)
    stream = builder.as_streaming_dataset(split="train")
    (batch,) = list(undecoded(stream).iter(batch_size=150))
    assert batch["id"] == [str(i) for i in range(150)]
    assert [row[0]["bytes"] for row in batch["images"]] == [
        (images / f"{i}.jpg").read_bytes() for i in range(150)
    ]


def test_a_stream_resumes_from_its_state_dict_inside_a_batch(tmp_path: Path) -> None:
    # what a StatefulDataLoader does after a restart: the rest of the rows, none twice, none lost
    builder, images = _one_shard_of_150(tmp_path)
    stream = undecoded(builder.as_streaming_dataset(split="train"))
    it = iter(stream)
    first = [next(it)["id"] for _ in range(70)]  # inside the second batch of 64 rows
    state = stream.state_dict()
    resumed = undecoded(builder.as_streaming_dataset(split="train"))
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert first + [r["id"] for r in rest] == [str(i) for i in range(150)]
    assert rest[0]["images"][0]["bytes"] == (images / "70.jpg").read_bytes()


@pytest.mark.parametrize(
    ("options", "num_proc"),
    [({}, 1), ({"records_per_shard": 4}, 2), ({"content_defined_chunking": True, "page_index": True}, 1)],
)
def test_build_folder_and_download_and_prepare_write_identical_shards(
    corpus: dict[str, Any], tmp_path: Path, options: dict[str, Any], num_proc: int
) -> None:
    """One write path: the same input and options give byte-identical shard files either way."""
    from llava_hf import build_folder

    inputs: dict[str, Any] = {"image_folder": str(corpus["images"]), "video_folder": str(corpus["videos"])}
    built = build_folder(str(corpus["json"]), tmp_path / "built", num_proc=num_proc, **inputs, **options)
    builder = LlavaBuilder(
        cache_dir=str(tmp_path / "cache"), data_files=str(corpus["json"]), **inputs, **options
    )
    out = tmp_path / "prepared"
    builder.download_and_prepare(output_dir=str(out), file_format="parquet", num_proc=num_proc)
    ours = [(tmp_path / "built" / name).read_bytes() for name in built.files["train"]]
    theirs = [p.read_bytes() for p in sorted(out.glob("builder-train*.parquet"))]
    assert len(ours) == (3 if "records_per_shard" in options else 1)
    assert theirs == ours
