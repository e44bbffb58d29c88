"""Row batches with media read straight into reusable buffers: arenas, prefetch, Arrow tables, and the
builder's batching (row and byte bounds, rollback of a rejected record's bytes)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from llava_hf import LlavaBuilder, build_folder, features_for
from llava_hf.build.batches import MediaArena, Prefetch, RowBatch, _pairs_to_arrow, _to_arrow
from llava_hf.build.rows import ShardRows
from llava_hf.media.files import MediaReadError, open_media
from tests.fixtures.media import make_jpeg


def _read(arena: MediaArena, path: Path) -> memoryview:
    fd = open_media(str(path))
    try:
        return arena.read(fd, str(path))[0]
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ arenas


def test_arena_holds_each_file_byte_for_byte_and_grows_keeping_what_it_holds(tmp_path: Path) -> None:
    blobs = [os.urandom(n) for n in (10, 300_000, 0, 2_500_000, 7)]
    paths = []
    for k, blob in enumerate(blobs):
        paths.append(tmp_path / f"{k}.bin")
        paths[-1].write_bytes(blob)
    arena = MediaArena(capacity=16)  # far too small: every read after the first grows it
    views = [bytes(_read(arena, p)) for p in paths]
    assert views == blobs
    assert [bytes(arena.view(k)) for k in range(len(arena))] == blobs
    assert arena.nbytes == sum(map(len, blobs))
    assert arena.to_arrow().to_pylist() == blobs


def test_arena_rollback_drops_only_what_came_after_the_mark(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    arena = MediaArena()
    _read(arena, a)
    mark = arena.mark()
    _read(arena, b)
    _read(arena, b)
    arena.rollback(mark)
    assert len(arena) == 1 and arena.nbytes == 5
    _read(arena, b)
    assert arena.to_arrow().to_pylist() == [b"first", b"second"]
    arena.clear()
    assert len(arena) == 0 and arena.to_arrow().to_pylist() == []


def test_arena_reads_a_file_to_its_end_even_when_it_grew_after_fstat(tmp_path: Path) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(b"x" * 100)
    arena = MediaArena(capacity=0)
    fd = open_media(str(path))
    try:
        with open(path, "ab") as f:  # grows between open (size known via fstat inside read) and EOF
            f.write(b"y" * 3_000_000)
        data, _ = arena.read(fd, str(path))
    finally:
        os.close(fd)
    assert bytes(data) == b"x" * 100 + b"y" * 3_000_000


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="the system cannot tell cached files")
def test_arena_tells_whether_the_page_cache_held_the_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    content = os.urandom(3 << 20)
    with open(path, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())

    def evict_then_read(cached_prefix: int) -> tuple[bytes, bool | None]:
        fd = open_media(str(path))
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.pread(fd, cached_prefix, 0)  # only this much is cached again
            arena = MediaArena()
            data, cached = arena.read(fd, str(path))
            return bytes(data), cached
        finally:
            os.close(fd)

    data, cached = evict_then_read(0)
    if cached:
        pytest.skip("this file system keeps the file cached")
    assert data == content and cached is False
    # partly cached: the first read stops where the cached part ends, the rest is read on
    data, cached = evict_then_read(1 << 20)
    assert data == content and cached is False
    arena = MediaArena()
    assert _read(arena, path) == content
    fd = open_media(str(path))
    try:
        assert arena.read(fd, str(path))[1] is True  # read once: now it is cached
    finally:
        os.close(fd)


def test_arena_refuses_a_folder_and_a_fifo_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    arena = MediaArena()
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("opening a FIFO hung"))
    signal.alarm(10)
    try:
        for name in ("folder.jpg", "fifo.jpg"):
            with pytest.raises(MediaReadError, match="not a regular file"):
                _read(arena, tmp_path / name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert len(arena) == 0


# ----------------------------------------------------------------------------------------- prefetch


def test_prefetch_hands_over_open_files_once_and_closes_the_rest(tmp_path: Path) -> None:
    files = [tmp_path / f"{k}.jpg" for k in range(3)]
    for k, f in enumerate(files):
        f.write_bytes(bytes([k]) * 10)
    os.symlink(files[0], tmp_path / "link.jpg")
    open_before = len(os.listdir("/proc/self/fd"))
    with Prefetch(limit=2, probe=8) as prefetch:
        prefetch.observe(False)  # an uncached read (one in eight): read-ahead is on
        prefetch.ahead([str(tmp_path / "link.jpg"), str(tmp_path / "missing.jpg"), *map(str, files)])
        # a symlink and a missing file are not opened (the reader judges them); the limit holds
        assert prefetch.take(str(tmp_path / "link.jpg")) is None
        assert prefetch.take(str(tmp_path / "missing.jpg")) is None
        fd = prefetch.take(str(files[0]))
        assert fd is not None
        arena = MediaArena()
        try:
            assert bytes(arena.read(fd, str(files[0]))[0]) == b"\x00" * 10
        finally:
            os.close(fd)
        assert prefetch.take(str(files[0])) is None  # handed over once
        assert prefetch.take(str(files[2])) is None  # over the limit: never opened
        assert len(os.listdir("/proc/self/fd")) == open_before + 1  # files[1] is still open
    assert len(os.listdir("/proc/self/fd")) == open_before


# ------------------------------------------------------------------------------------- Arrow tables


def test_row_batch_table_and_plain_rows_agree(tmp_path: Path) -> None:
    images = [make_jpeg(tmp_path / f"{k}.jpg", size=(64, 48), seed=k) for k in range(3)]
    batch = RowBatch()
    # floats of 17 significant digits and at the ends of the range: stored exactly (not to 10 digits)
    floats = [0.1 + 0.2, 1 / 3, 1.7976931348623157e308, 5e-324, -0.0, 123456789.12345679]
    rows = [(["0.jpg", "1.jpg"], {"a": 1}), ([], {}), (["2.jpg"], {"nested": {"x": [1, None], "f": floats}})]
    paths = iter(images)
    for k, (media, metadata) in enumerate(rows):
        for _ in media:
            _read(batch.media["images"], next(paths))
        batch.rows.append(
            {
                "id": str(k),
                "images": media,
                "videos": [],
                "video_frames": [],
                "video_info": [],
                "audios": [],
                "audio_info": [],
                "conversations": (("human", "<image>" * len(media) + "hi"), ("gpt", f"answer {k}")),
                "source": "s.json",
                "metadata": metadata,
            }
        )
    table = batch.to_table(features_for().arrow_schema)
    assert table.schema == features_for().arrow_schema
    plain = list(batch.plain_rows())
    assert [r["images"] for r in plain] == [
        [
            {"bytes": images[0].read_bytes(), "path": "0.jpg"},
            {"bytes": images[1].read_bytes(), "path": "1.jpg"},
        ],
        [],
        [{"bytes": images[2].read_bytes(), "path": "2.jpg"}],
    ]
    stored = table.to_pylist()
    assert [r["images"] for r in stored] == [r["images"] for r in plain]
    assert [json.loads(r["metadata"]) for r in stored] == [m for _, m in rows]
    assert [repr(f) for f in json.loads(stored[2]["metadata"])["nested"]["f"]] == [repr(f) for f in floats]
    assert [r["id"] for r in stored] == ["0", "1", "2"]
    conversations = [
        [{"from": "human", "value": "<image>" * len(media) + "hi"}, {"from": "gpt", "value": f"answer {k}"}]
        for k, (media, _) in enumerate(rows)
    ]
    assert [r["conversations"] for r in stored] == conversations  # turns stored as (from, value) pairs
    assert [r["conversations"] for r in plain] == conversations


def test_frame_videos_are_nulls_in_videos_and_lists_in_video_frames(tmp_path: Path) -> None:
    """A row mixing a video file and a video given as its frames: the table and the plain rows agree,
    and a rolled-back record leaves no frame behind."""
    files = [make_jpeg(tmp_path / f"{k}.jpg", size=(16, 12), seed=k) for k in range(4)]
    clip = tmp_path / "v.bin"
    clip.write_bytes(b"a video's bytes")
    batch = RowBatch()
    layouts: list[tuple[list[str | None], list[list[str]]]] = [
        (["v.bin", None], [[], ["0.jpg", "1.jpg"]]),
        ([None], [["2.jpg", "3.jpg"]]),
        ([], []),
    ]
    for k, (videos, frames) in enumerate(layouts):
        if k == 1:  # a record read, then dropped
            mark = batch.mark()
            _read(batch.media["video_frames"], files[0])
            batch.rollback(mark)
        for path in videos:
            if path is not None:
                _read(batch.media["videos"], clip)
        for names in frames:
            for name in names:
                _read(batch.media["video_frames"], tmp_path / name)
        batch.rows.append(
            {
                "id": str(k),
                "images": [],
                "videos": videos,
                "video_frames": frames,
                "video_info": [],
                "audios": [],
                "audio_info": [],
                "conversations": (("human", "<video>" * len(videos)), ("gpt", "ok")),
                "source": "s.json",
                "metadata": {},
            }
        )
    table = batch.to_table(features_for().arrow_schema)
    plain = list(batch.plain_rows())
    stored = table.to_pylist()
    expected_videos = [[{"bytes": clip.read_bytes(), "path": "v.bin"}, None], [None], []]
    expected_frames = [
        [[], [{"bytes": (tmp_path / n).read_bytes(), "path": n} for n in ("0.jpg", "1.jpg")]],
        [[{"bytes": (tmp_path / n).read_bytes(), "path": n} for n in ("2.jpg", "3.jpg")]],
        [],
    ]
    for rows in (stored, plain):
        assert [r["videos"] for r in rows] == expected_videos
        assert [r["video_frames"] for r in rows] == expected_frames


# ------------------------------------------------------------------------------- builder batching


def _corpus(tmp_path: Path, n: int, *, bad: set[int] = frozenset()) -> tuple[Path, Path]:  # type: ignore[assignment]
    images = tmp_path / "images"
    images.mkdir()
    records: list[dict[str, Any]] = []
    for k in range(n):
        names = [f"{k}-a.jpg", f"{k}-b.jpg"]
        make_jpeg(images / names[0], size=(96, 64), seed=k)
        if k in bad:  # the second image is not an image: the record is rejected after one was read
            (images / names[1]).write_bytes(b"not an image at all")
        else:
            make_jpeg(images / names[1], size=(80 + k, 48 + k), seed=1000 + k)
        records.append(
            {
                "id": f"r{k}",
                "image": names,
                "conversations": [
                    {"from": "human", "value": "<image>\n<image>\nWhat differs?"},
                    {"from": "gpt", "value": "The colours."},
                ],
            }
        )
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    return data, images


def _batches(builder: LlavaBuilder, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    (shards, duplicates) = builder.plan()["train"]
    generator = ShardRows(builder.config)
    for shard in shards:
        for batch in generator.batches(shard, duplicates, **kwargs):
            yield list(batch.plain_rows())  # a batch is refilled after it is handed out: copy now


def test_batches_end_at_max_rows_or_max_bytes(tmp_path: Path) -> None:
    data, images = _corpus(tmp_path, 10)
    builder = LlavaBuilder(cache_dir=str(tmp_path / "c"), data_files=str(data), image_folder=str(images))
    assert [len(b) for b in _batches(builder, max_rows=4)] == [4, 4, 2]
    # a batch ends once its media reach max_bytes: one image is more than 1 byte
    assert [len(b) for b in _batches(builder, max_bytes=1)] == [1] * 10
    assert [len(b) for b in _batches(builder, max_rows=6, max_bytes=1 << 30)] == [6, 4]


def test_a_rejected_record_leaves_none_of_its_bytes_in_the_batch(tmp_path: Path) -> None:
    data, images = _corpus(tmp_path, 6, bad={1, 4})
    builder = LlavaBuilder(
        cache_dir=str(tmp_path / "c"), data_files=str(data), image_folder=str(images), on_error="skip"
    )
    (batch,) = list(_batches(builder))
    assert [r["id"] for r in batch] == ["r0", "r2", "r3", "r5"]
    for row in batch:
        k = row["id"][1:]
        expected = [(images / f"{k}-{s}.jpg").read_bytes() for s in "ab"]
        assert [i["bytes"] for i in row["images"]] == expected
        assert [i["path"] for i in row["images"]] == [f"{k}-a.jpg", f"{k}-b.jpg"]


def test_a_batch_holds_the_size_of_each_kept_image_and_none_of_a_rejected_record(tmp_path: Path) -> None:
    """The sizes the image check read (the dataset card's), in image order; a record rejected after
    its first image was read leaves no size behind."""
    data, images = _corpus(tmp_path, 6, bad={1, 4})
    builder = LlavaBuilder(
        cache_dir=str(tmp_path / "c"), data_files=str(data), image_folder=str(images), on_error="skip"
    )
    (shards, duplicates) = builder.plan()["train"]
    (shard,) = shards
    (batch,) = ShardRows(builder.config).batches(shard, duplicates)
    paths = [path for row in batch.rows for path in row["images"]]
    assert len(paths) == 8
    expected = []
    for path in paths:
        with Image.open(images / path) as im:
            expected.append(im.size)
    assert batch.image_sizes == expected


def test_built_media_are_the_files_when_batches_refill_their_buffers(tmp_path: Path) -> None:
    """Many row groups through one reused buffer: every stored image still hashes as its file."""
    data, images = _corpus(tmp_path, 150, bad={7, 70})
    result = build_folder(str(data), tmp_path / "out", image_folder=str(images), on_error="skip")
    assert result.num_rows == {"train": 148} and result.rejected == {"unreadable_media": 2}
    import pyarrow.parquet as pq

    (shard,) = result.files["train"]
    pf = pq.ParquetFile(tmp_path / "out" / shard)
    assert pf.metadata.num_row_groups == 3  # 64 + 64 + 20 rows
    seen = 0
    for row in pf.read(columns=["id", "images"]).to_pylist():
        for item in row["images"]:
            digest = hashlib.sha256((images / item["path"]).read_bytes()).hexdigest()
            assert hashlib.sha256(item["bytes"]).hexdigest() == digest
            seen += 1
    assert seen == 2 * 148
    assert pa.types.is_binary(pf.schema_arrow.field("images").type.value_type.field("bytes").type)


def test_id_less_files_with_the_same_name_in_one_split_build_with_distinct_ids(tmp_path: Path) -> None:
    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.json").write_text(json.dumps([{"conversations": conv}] * 2))
    files = [str(tmp_path / "a" / "train.json"), str(tmp_path / "b" / "train.json")]
    result = build_folder({"train": files}, tmp_path / "out")
    assert result.num_rows == {"train": 4} and not result.rejected
    import pyarrow.parquet as pq

    ids = [i for f in result.files["train"] for i in pq.read_table(tmp_path / "out" / f)["id"].to_pylist()]
    assert ids == ["a/train-0", "a/train-1", "b/train-0", "b/train-1"]


def test_prefetch_reads_ahead_only_while_files_are_uncached(tmp_path: Path) -> None:
    files = [str(tmp_path / f"{k}.jpg") for k in range(6)]
    for f in files:
        Path(f).write_bytes(b"x")
    taken: list[int | None] = []
    with Prefetch(window=2, probe=16) as prefetch:
        assert not prefetch.active  # off at the start: a warm cache needs no advice
        prefetch.ahead(files[:1])
        assert prefetch.take(files[0]) is None
        for k in range(16):  # cached reads, and a lone uncached one: the folder is warm
            prefetch.observe(k != 5)
        assert not prefetch.active
        prefetch.observe(False)  # two uncached reads in a run of 16 (one in eight): the folder is cold
        assert not prefetch.active
        prefetch.observe(False)
        assert prefetch.active
        prefetch.ahead(files[1:4])
        taken = [prefetch.take(f) for f in files[1:4]]
        assert [fd is not None for fd in taken] == [True, True, False]
        assert not prefetch.active  # the window is used up
        for _ in range(2):  # a system that cannot tell (None) counts as uncached: read-ahead stays on
            prefetch.observe(None)
        assert prefetch.active
        prefetch.ahead(files[4:])
        taken += [prefetch.take(f) for f in files[4:]]
        assert all(fd is not None for fd in taken[-2:])
    for fd in taken:
        if fd is not None:
            os.close(fd)


_TURN = st.fixed_dictionaries(
    {"from": st.sampled_from(["human", "gpt", "system"]), "value": st.text(max_size=20)}
)
_PART = st.one_of(
    st.none(),
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image"]), "text": st.none() | st.text()}),
)
_MESSAGE = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"role": st.none() | st.text(max_size=5), "content": st.none() | st.lists(_PART, max_size=3)}
    ),
)
_INFO = st.fixed_dictionaries(
    {
        "duration": st.none() | st.floats(allow_nan=False),
        "fps": st.floats(allow_nan=False, allow_infinity=False),
        "num_frames": st.integers(0, 2**40),
        "width": st.integers(0, 2**31 - 1),
        "height": st.integers(0, 2**31 - 1),
        "codec": st.none() | st.text(max_size=8),
    }
)


@given(
    conversations=st.lists(st.none() | st.lists(_TURN, max_size=4), max_size=6),
    messages=st.lists(st.none() | st.lists(_MESSAGE, max_size=3), max_size=6),
    infos=st.lists(st.lists(_INFO, max_size=2), max_size=6),
)
def test_nested_columns_are_built_as_pyarrow_converts_them(
    conversations: list[Any], messages: list[Any], infos: list[Any]
) -> None:
    # RowBatch.to_table builds list/struct columns leaf by leaf (much faster than Arrow's conversion
    # of a dict per value): the same arrays, nulls at every level included
    for name, values in (("conversations", conversations), ("video_info", infos)):
        column_type = features_for("conversations").arrow_schema.field(name).type
        assert _to_arrow(values, column_type).equals(pa.array(values, type=column_type))
    column_type = features_for("messages").arrow_schema.field("messages").type
    assert _to_arrow(messages, column_type).equals(pa.array(messages, type=column_type))


@given(st.lists(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=20)), max_size=4), max_size=6))
def test_turn_pairs_are_built_as_pyarrow_converts_turn_dicts(rows: list[list[tuple[str, str]]]) -> None:
    column_type = features_for("conversations").arrow_schema.field("conversations").type
    dicts = [[{"from": a, "value": b} for a, b in turns] for turns in rows]
    assert _pairs_to_arrow(rows, column_type).equals(pa.array(dicts, type=column_type))
