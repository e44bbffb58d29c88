"""decode_media: each image decoded once per row, same pixels and features as datasets' own decoding.

Decodes are counted by wrapping ``PIL.Image.open`` (the real function still runs: instrumentation, not a
mock). datasets' ``Image.decode_example`` opens each image with it exactly once per decode.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.dataset
import pytest

import llava_hf.decode
from llava_hf.datasets_adapter import _ParquetTables
from llava_hf.decode import DECODE_FORMAT, IMAGE_BLOCKS_KEPT, decode_media
from llava_hf.errors import MediaDecodeError, UsageError
from llava_hf.media.video import VideoSampling
from llava_hf.schema import features_for
from tests.test_video import full_decode

REAL = Path(__file__).parent / "data" / "real"

# images per row: text-only, one, three, one, zero (text-only again)
IMAGES_PER_ROW = [0, 1, 3, 1, 0]

KINDS = ["dataset-parquet", "dataset-arrow", "streaming-parquet", "streaming-arrow"]


def _rotated_jpeg() -> bytes:
    """A JPEG whose EXIF orientation asks for a rotation (datasets applies it: so must we)."""
    arr = np.zeros((24, 40, 3), dtype=np.uint8)
    arr[:, :20] = (250, 20, 20)
    exif = PIL.Image.Exif()
    exif[PIL.Image.ExifTags.Base.Orientation] = 6
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def _gray_png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(np.arange(24 * 32, dtype=np.uint8).reshape(24, 32) % 251).save(buf, format="PNG")
    return buf.getvalue()


def _media() -> list[dict[str, Any]]:
    files = [
        {"bytes": (REAL / n).read_bytes(), "path": f"coco/train2017/{n}"} for n in ("1.jpg", "2.jpg", "3.jpg")
    ]
    files.append({"bytes": _rotated_jpeg(), "path": "phone/rotated.jpg"})
    files.append({"bytes": _gray_png(), "path": "scans/gray.png"})
    return files


def _rows(images_per_row: list[int]) -> list[dict[str, Any]]:
    media = _media()
    rows = []
    used = 0
    for i, n in enumerate(images_per_row):
        images = [media[(used + k) % len(media)] for k in range(n)]
        used += n
        rows.append(
            {
                "id": f"r{i}",
                "images": images,
                "videos": [],
                "video_frames": [],
                "video_info": [],
                "audios": [],
                "audio_info": [],
                "conversations": [
                    {"from": "human", "value": "<image>\n" * n + f"Question {i}?"},
                    {"from": "gpt", "value": f"Answer {i}."},
                ],
                "source": "data.json",
                "metadata": {"index": i, "tags": ["a", "b"][: i % 3]},
            }
        )
    return rows


def _write_folder(tmp_path: Path, rows: list[dict[str, Any]], fmt: str) -> Path:
    """A built folder as the contract describes it, written with plain datasets (row groups of 2 rows).

    Arrow files are written from the table directly: ``save_to_disk`` would embed the media and cut
    their relative paths down to basenames (datasets' ``embed_storage``).
    """
    out = tmp_path / f"built-{fmt}"
    (out / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_list(rows, features=features_for())
    if fmt == "parquet":
        ds.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"), batch_size=2)
    else:
        table = ds.data.table
        with pa.OSFile(str(out / "data" / "train-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=2)
    return out


def _load(
    tmp_path: Path, rows: list[dict[str, Any]], kind: str
) -> datasets.Dataset | datasets.IterableDataset:
    mode, fmt = kind.split("-")
    out = _write_folder(tmp_path, rows, fmt)
    streaming = mode == "streaming"
    if fmt == "parquet":
        return datasets.load_dataset(str(out), split="train", streaming=streaming)
    arrow_files = sorted(str(p) for p in (out / "data").glob("*.arrow"))
    return datasets.load_dataset("arrow", data_files=arrow_files, split="train", streaming=streaming)


class OpenCounter:
    """Counts calls to ``PIL.Image.open``; the real function runs every time."""

    def __init__(self) -> None:
        self.calls = 0
        self.decodes = 0  # opens by datasets' Image.decode_example, as opposed to e.g. the builder's checks

    def take(self) -> int:
        calls, self.calls, self.decodes = self.calls, 0, 0
        return calls

    def take_decodes(self) -> int:
        decodes = self.decodes
        self.take()
        return decodes


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> OpenCounter:
    counter = OpenCounter()
    real_open: Callable[..., PIL.Image.Image] = PIL.Image.open

    def counting_open(*args: Any, **kwargs: Any) -> PIL.Image.Image:
        counter.calls += 1
        counter.decodes += sys._getframe(1).f_globals.get("__name__") == "datasets.features.image"
        return real_open(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    return counter


def _opens_per_row(ds: Any, counter: OpenCounter) -> tuple[list[int], list[dict[str, Any]]]:
    counter.take()
    per_row, rows = [], []
    iterator: Iterator[dict[str, Any]] = iter(ds)
    for row in iterator:
        per_row.append(counter.take())
        rows.append(row)
    return per_row, rows


def _pixels(image: PIL.Image.Image) -> tuple[str, tuple[int, int], bytes]:
    return image.mode, image.size, np.asarray(image).tobytes()


def _assert_same_rows(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if "videos" in b:  # the sampled frames' times, beside ``videos``
            assert set(a) == set(b) | {"video_timestamps"}
            assert a["video_timestamps"] == [[] for _ in b["videos"]]
        else:
            assert set(a) == set(b)
        for key in b:
            if key == "images":
                assert all(isinstance(im, PIL.Image.Image) for im in a[key])
                assert [_pixels(im) for im in a[key]] == [_pixels(im) for im in b[key]]
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("kind", KINDS)
def test_datasets_decodes_twice_decode_media_once_same_pixels(
    tmp_path: Path, opens: OpenCounter, kind: str
) -> None:
    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), kind)

    default_counts, default_rows = _opens_per_row(ds, opens)
    # datasets 5.2 (decode_nested_example, List branch): the first image of a row is decoded twice.
    assert default_counts == [n + 1 if n else 0 for n in IMAGES_PER_ROW], (
        "datasets no longer decodes the first image of a list twice: docs/upstream/README.md can go"
    )

    decoded = decode_media(ds)
    assert opens.take() == 0  # lazy: nothing decoded up front
    our_counts, our_rows = _opens_per_row(decoded, opens)
    assert our_counts == IMAGES_PER_ROW

    _assert_same_rows(our_rows, default_rows)
    assert [len(r["images"]) for r in our_rows] == IMAGES_PER_ROW
    assert our_rows[2]["metadata"] == {"index": 2, "tags": ["a", "b"]}  # Json decoded too


@pytest.mark.parametrize("kind", KINDS)
def test_features_still_say_image(tmp_path: Path, kind: str) -> None:
    ds = _load(tmp_path, _rows([1]), kind)
    out = decode_media(ds)
    assert type(out) is type(ds)
    assert out.features is not None and ds.features is not None
    assert out.features["images"] == datasets.List(datasets.Image())
    for name in ("id", "video_info", "conversations", "source", "metadata"):
        assert out.features[name] == ds.features[name]
    assert out.features["videos"] == datasets.List(datasets.Video())
    if kind.startswith("streaming"):  # declared beside the videos; a Dataset keeps its stored features
        assert list(out.features).index("video_timestamps") == list(out.features).index("videos") + 1
        assert out.features["video_timestamps"] == datasets.List(datasets.List(datasets.Value("float64")))
    else:
        assert out.features == ds.features


def test_exif_orientation_applied_like_datasets(tmp_path: Path) -> None:
    ds = _load(tmp_path, _rows([4]), "dataset-parquet")  # the 4th image is the EXIF-rotated one
    image = decode_media(ds)[0]["images"][3]
    assert image.size == (24, 40)  # stored 40x24, orientation 6 rotates it


@pytest.fixture
def pillow_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pillow's freed-buffer cache as in a fresh process (0, no PILLOW_BLOCKS_MAX); restored after."""
    before = PIL.Image.core.get_blocks_max()
    monkeypatch.delenv("PILLOW_BLOCKS_MAX", raising=False)
    monkeypatch.setattr(llava_hf.decode, "_image_buffers_kept", False)
    PIL.Image.core.set_blocks_max(0)
    yield
    PIL.Image.core.set_blocks_max(before)


@pytest.mark.parametrize("kind", ["dataset-parquet", "streaming-parquet"])
def test_decoding_reuses_freed_image_buffers(tmp_path: Path, kind: str, pillow_blocks: None) -> None:
    ds = decode_media(_load(tmp_path, _rows([1, 3, 1, 1]), kind))
    assert PIL.Image.core.get_blocks_max() == 0  # nothing changes before the first decode
    PIL.Image.core.reset_stats()
    rows = list(ds)
    for row in rows:
        for image in row["images"]:
            image.convert("RGB")
    assert PIL.Image.core.get_blocks_max() == IMAGE_BLOCKS_KEPT
    assert PIL.Image.core.get_stats()["reused_blocks"] > 0  # later images got earlier ones' memory


@pytest.mark.parametrize("chosen", ["env", "call"])
def test_decoding_leaves_a_chosen_pillow_cache_alone(
    tmp_path: Path, chosen: str, pillow_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chosen == "env":
        monkeypatch.setenv("PILLOW_BLOCKS_MAX", "0")  # read by Pillow at import; the process asked for 0
        expected = 0
    else:
        PIL.Image.core.set_blocks_max(3)
        expected = 3
    for row in decode_media(_load(tmp_path, _rows([1, 1]), "streaming-parquet")):
        assert row["images"][0].size
    assert PIL.Image.core.get_blocks_max() == expected


def test_streaming_decodes_row_by_row(tmp_path: Path, opens: OpenCounter) -> None:
    ds = _load(tmp_path, _rows([1, 3, 3, 3]), "streaming-parquet")
    first = next(iter(decode_media(ds)))
    assert len(first["images"]) == 1
    assert opens.take() == 1  # only the first row's image, not a whole batch


def test_streaming_replaces_threaded_decoding(tmp_path: Path, opens: OpenCounter) -> None:
    """``load_dataset`` turns on threaded decoding for remote data; decode_media must replace it, not add to it."""
    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), "streaming-parquet").decode(num_threads=2)
    counts, rows = _opens_per_row(decode_media(ds), opens)
    assert sum(counts) == sum(IMAGES_PER_ROW)
    assert [len(r["images"]) for r in rows] == IMAGES_PER_ROW


def test_streaming_map_and_shuffle_keep_single_decode(tmp_path: Path, opens: OpenCounter) -> None:
    ds = decode_media(_load(tmp_path, _rows(IMAGES_PER_ROW), "streaming-parquet"))
    mapped = ds.map(
        lambda row: {"n": len(row["images"]), "size": row["images"][0].size if row["images"] else None}
    )
    counts, rows = _opens_per_row(mapped.shuffle(seed=0, buffer_size=3), opens)
    assert sum(counts) == sum(IMAGES_PER_ROW)
    assert sorted(r["n"] for r in rows) == sorted(IMAGES_PER_ROW)
    assert all(isinstance(im, PIL.Image.Image) for r in rows for im in r["images"])


def test_iterable_from_dataset(tmp_path: Path, opens: OpenCounter) -> None:
    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), "dataset-parquet").to_iterable_dataset(num_shards=2)
    counts, rows = _opens_per_row(decode_media(ds), opens)
    assert sum(counts) == sum(IMAGES_PER_ROW)
    assert sorted(len(r["images"]) for r in rows) == sorted(IMAGES_PER_ROW)


def test_dataset_random_access_and_slices(tmp_path: Path, opens: OpenCounter) -> None:
    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), "dataset-parquet")
    reference = [_pixels(im) for im in ds[2]["images"]]
    out = decode_media(ds)
    assert out.format["type"] == DECODE_FORMAT
    opens.take()

    assert [_pixels(im) for im in out[2]["images"]] == reference
    assert opens.take() == 3
    batch = out[1:3]
    assert [len(x) for x in batch["images"]] == [1, 3]
    assert opens.take() == 4
    assert len(out["images"][2]) == 3  # one item of a (lazy) column
    assert opens.take() == 3
    assert [len(x) for x in out["images"]] == IMAGES_PER_ROW
    assert opens.take() == sum(IMAGES_PER_ROW)
    assert out[0]["images"] == [] and opens.take() == 0


def test_dataset_with_indices(tmp_path: Path, opens: OpenCounter) -> None:
    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), "dataset-arrow").select([2, 1, 0])
    out = decode_media(ds)
    opens.take()
    assert [len(r["images"]) for r in out] == [3, 1, 0]
    assert opens.take() == 4
    assert out["id"] == ["r2", "r1", "r0"]


def test_dataset_map_sees_decoded_images_and_keeps_stored_bytes(tmp_path: Path, opens: OpenCounter) -> None:
    rows = _rows(IMAGES_PER_ROW)
    ds = _load(tmp_path, rows, "dataset-parquet")
    expected_sizes = [list(im.size) for im in ds[2]["images"]]  # datasets' own decoding
    out = decode_media(ds)
    opens.take()
    mapped = out.map(
        lambda row: {"sizes": [list(im.size) for im in row["images"]]}, load_from_cache_file=False
    )
    assert opens.take() == sum(IMAGES_PER_ROW)
    assert mapped["sizes"][2] == expected_sizes
    stored = mapped.with_format("arrow")["images"].to_pylist()
    assert [[im["bytes"] for im in r] for r in stored] == [[im["bytes"] for im in r["images"]] for r in rows]


def test_dataset_keeps_format_columns(tmp_path: Path) -> None:
    ds = _load(tmp_path, _rows([1, 0]), "dataset-parquet").with_format(columns=["id", "images"])
    out = decode_media(ds)
    assert set(out[0]) == {"id", "images"}
    assert isinstance(out[0]["images"][0], PIL.Image.Image)


def _video_rows() -> list[dict[str, Any]]:
    """Rows holding one real MP4, an AVI and an MP4, none, and an image."""
    rows = _rows([0, 0, 0, 1])
    clips = [[("1.mp4", "clips/1.mp4")], [("2.avi", "clips/2.avi"), ("4.mp4", "4.mp4")], []]
    for row, videos in zip(rows, clips):
        row["videos"] = [{"bytes": (REAL / name).read_bytes(), "path": path} for name, path in videos]
        row["conversations"][0]["value"] = "<video>" * len(videos) + "\nWhat happens?"
    return rows


def _expected_video(name: str, sampling: VideoSampling) -> tuple[list[np.ndarray], list[float]]:
    """PyAV's own full decode of the real file, at the sampled positions (computed from its frame times)."""
    frames, times = full_decode((REAL / name).read_bytes())
    picks = sampling.select([round(t * 10**9) for t in times], Fraction(1, 10**9))
    return [frames[i] for i in picks], [times[i] for i in picks]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", [{}, {"num_frames": 3}, {"fps": 1.0}, {"fps": 2.0, "max_frames": 4}])
def test_videos_decoded_with_pyav(tmp_path: Path, kind: str, options: dict[str, Any]) -> None:
    rows = _video_rows()
    out = decode_media(_load(tmp_path, rows, kind), **options)
    got = list(out)
    sampling = VideoSampling.from_options(**options)
    for row, source in zip(got, rows):
        names = [Path(v["path"]).name for v in source["videos"]]
        assert len(row["videos"]) == len(row["video_timestamps"]) == len(names)
        for video, stamps, name in zip(row["videos"], row["video_timestamps"], names):
            frames, times = _expected_video(name, sampling)
            assert isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4
            assert video.shape == (len(frames), *frames[0].shape)
            assert all(np.array_equal(a, b) for a, b in zip(video, frames))
            assert stamps == pytest.approx(times, abs=1e-9)
    assert isinstance(got[3]["images"][0], PIL.Image.Image)
    if kind.startswith("streaming"):
        assert set(got[0]) == set(out.features)  # the declared features describe the rows


def test_video_sampling_reaches_a_fresh_process(tmp_path: Path) -> None:
    """The options live in the format, so DataLoader workers (spawn) sample the same frames."""
    out = decode_media(_load(tmp_path, _video_rows(), "dataset-parquet"), num_frames=3)
    blob = tmp_path / "ds.pkl"
    blob.write_bytes(pickle.dumps(out))
    code = (
        "import pickle, sys; ds = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(*[v.shape[0] for v in ds[1]['videos']], len(ds[1]['video_timestamps'][0]))"
    )
    assert _run_unpickled(code, blob).split() == ["3", "3", "3"]


@pytest.mark.parametrize("kind", ["dataset-parquet", "streaming-parquet"])
def test_undecodable_video_names_the_record_and_the_file(tmp_path: Path, kind: str) -> None:
    rows = _video_rows()
    rows[1]["videos"][1] = {"bytes": b"<html>404</html>", "path": "clips/broken.mp4"}
    out = decode_media(_load(tmp_path, rows, kind))
    with pytest.raises(
        MediaDecodeError, match=r"record 'r1': video 'clips/broken.mp4' \(videos\[1\]\)"
    ) as err:
        list(out)
    assert err.value.id == "r1" and err.value.path == "clips/broken.mp4" and err.value.hint


def test_rejects_bad_sampling_and_a_taken_timestamps_column(tmp_path: Path) -> None:
    ds = _load(tmp_path, _video_rows(), "dataset-parquet")
    with pytest.raises(UsageError, match="not both"):
        decode_media(ds, num_frames=4, fps=1.0)
    taken = ds.add_column("video_timestamps", [[0.0]] * len(ds))
    with pytest.raises(UsageError, match="'video_timestamps' column") as err:
        decode_media(taken)
    assert "remove_columns('video_timestamps')" in (err.value.hint or "")


def _run_unpickled(code: str, blob: Path) -> str:
    """The output of ``code`` run in a fresh interpreter (no llava_hf imported) with ``blob``'s path."""
    result = subprocess.run(
        [sys.executable, "-c", code, str(blob)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_pickled_dataset_works_in_a_fresh_process(tmp_path: Path) -> None:
    """DataLoader workers started with spawn/forkserver unpickle the dataset without importing llava_hf."""
    out = decode_media(_load(tmp_path, _rows([3]), "dataset-parquet"))
    blob = tmp_path / "ds.pkl"
    blob.write_bytes(pickle.dumps(out))
    code = (
        "import pickle, sys, PIL.Image; ds = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(ds.format['type'], sum(isinstance(im, PIL.Image.Image) for im in ds[0]['images']))"
    )
    assert _run_unpickled(code, blob).split() == [DECODE_FORMAT, "3"]


def test_rejects_formatted_and_unknown(tmp_path: Path) -> None:
    ds = _load(tmp_path, _rows([1]), "dataset-parquet")
    with pytest.raises(UsageError, match="formatted as 'numpy'"):
        decode_media(ds.with_format("numpy"))
    with pytest.raises(UsageError, match=r"IterableDatasetDict, got list"):
        decode_media([ds])
    unknown = datasets.IterableDataset.from_generator(lambda: iter([{"id": "x"}]))
    with pytest.raises(UsageError, match="features"):
        decode_media(unknown)


@pytest.mark.parametrize("streaming", [False, True])
def test_on_a_folder_built_by_llava_hf(
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    opens: OpenCounter,
    streaming: bool,
) -> None:
    """The real output of ``build_folder`` (features from the card's YAML): images, a GIF, a video, text-only."""
    from llava_hf import build_folder

    out = llava_dir / "out"
    build_folder(
        str(write_json(sample_records)),
        out,
        image_folder=str(llava_dir / "images"),
        video_folder=str(llava_dir / "videos"),
    )
    expected: dict[str, list[tuple[int, int]]] = {}
    for record in sample_records:
        image = record.get("image")
        paths = [] if image is None else [image] if isinstance(image, str) else image
        expected[str(record["id"])] = [PIL.Image.open(llava_dir / "images" / p).size for p in paths]

    ds = datasets.load_dataset(str(out), split="train", streaming=streaming)
    opens.take()
    rows = list(decode_media(ds))
    assert opens.take() == sum(len(sizes) for sizes in expected.values())
    assert {row["id"]: [im.size for im in row["images"]] for row in rows} == expected
    video_row = next(row for row in rows if row["id"] == "vid-1")
    frames, times = _expected_video("1.mp4", VideoSampling.from_options())
    assert len(video_row["videos"]) == 1 and len(frames) == 8
    assert all(np.array_equal(a, b) for a, b in zip(video_row["videos"][0], frames, strict=True))
    assert video_row["video_timestamps"] == [pytest.approx(times, abs=1e-9)]
    assert all(row["video_timestamps"] == [] for row in rows if row["id"] != "vid-1")


@pytest.mark.parametrize("streaming", [False, True])
def test_dataset_dicts_are_decoded_split_by_split(
    tmp_path: Path, opens: OpenCounter, streaming: bool
) -> None:
    out = _write_folder(tmp_path, _rows(IMAGES_PER_ROW), "parquet")
    dd = datasets.load_dataset(str(out), streaming=streaming)  # no split: a (Iterable)DatasetDict
    decoded = decode_media(dd)
    assert type(decoded) is type(dd) and list(decoded) == ["train"]
    opens.take()
    assert [len(r["images"]) for r in decoded["train"]] == IMAGES_PER_ROW
    assert opens.take() == sum(IMAGES_PER_ROW)


def test_streaming_from_load_llava(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]], opens: OpenCounter
) -> None:
    """The builder's own streaming dataset (straight from JSON + media, no Parquet) decodes once too.

    The builder opens each image once more to validate it: only opens by ``Image.decode_example`` count.
    """
    from llava_hf import load_llava

    records = [r for r in sample_records if "video" not in r]
    ds = load_llava(str(write_json(records)), image_folder=str(llava_dir / "images"), streaming=True)
    assert isinstance(ds, datasets.IterableDataset)
    opens.take()
    rows = list(decode_media(ds))
    images = [len(r["images"]) for r in rows]
    assert images == [1, 2, 0, 1]
    assert opens.take_decodes() == sum(images)
    assert all(isinstance(im, PIL.Image.Image) for r in rows for im in r["images"])


# --- the streaming Parquet reader ---------------------------------------------------------------------------


def _source(ds: datasets.IterableDataset) -> Any:
    """The bottom of a stream's iterable chain (datasets' ArrowExamplesIterable for a Parquet folder)."""
    ex_iterable = ds._ex_iterable
    while hasattr(ex_iterable, "ex_iterable"):
        ex_iterable = ex_iterable.ex_iterable
    return ex_iterable


def _reads_lean(ds: datasets.IterableDataset) -> bool:
    return isinstance(_source(ds).generate_tables_fn, _ParquetTables)


def _write_shards(tmp_path: Path, rows: list[dict[str, Any]], n_files: int) -> Path:
    """A built folder of ``n_files`` Parquet shards with row groups of 2 rows."""
    out = tmp_path / f"shards-{n_files}"
    (out / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_list(rows, features=features_for())
    for i in range(n_files):
        shard = ds.shard(n_files, i, contiguous=True)
        shard.to_parquet(str(out / "data" / f"train-{i:05d}-of-{n_files:05d}.parquet"), batch_size=2)
    return out


def _ids(ds: Any) -> list[str]:
    return [row["id"] for row in ds]


def test_streaming_parquet_reads_with_the_synchronous_reader(tmp_path: Path) -> None:
    """The swap is what the benchmark's RSS relies on; the plain stream and the chat mapping both get it."""
    from llava_hf.chat import as_messages

    ds = _load(tmp_path, _rows(IMAGES_PER_ROW), "streaming-parquet")
    assert not _reads_lean(ds)  # datasets' own stream is left as it is
    assert _reads_lean(decode_media(ds))
    assert _reads_lean(as_messages(ds))  # map(conversations -> messages) first, then decode_media
    shuffled = decode_media(ds.shuffle(seed=0, buffer_size=2))
    assert _reads_lean(shuffled)
    assert sorted(_ids(shuffled)) == [f"r{i}" for i in range(len(IMAGES_PER_ROW))]
    assert not _reads_lean(decode_media(_load(tmp_path / "a", _rows([1]), "streaming-arrow")))


def _decoded_leanly_as_datasets_would(plain: Any, opens: OpenCounter) -> list[dict[str, Any]]:
    """``decode_media(plain)``'s rows: read by the lean reader, each image opened once, rows as datasets'."""
    theirs = list(plain)
    ours = decode_media(plain)
    assert _reads_lean(ours)
    opens.take()
    rows = list(ours)
    assert opens.take() == sum(IMAGES_PER_ROW)
    _assert_same_rows(rows, theirs)
    return rows


def test_streaming_reader_honours_columns_and_batch_size(tmp_path: Path, opens: OpenCounter) -> None:
    out = _write_folder(tmp_path, _rows(IMAGES_PER_ROW), "parquet")
    plain = datasets.load_dataset(str(out), split="train", streaming=True, columns=["id", "images"])
    rows = _decoded_leanly_as_datasets_would(plain, opens)
    assert all(set(row) == {"id", "images"} for row in rows)

    # declared features that differ from the file's schema: datasets casts every table to them, so must we
    features = features_for()
    features["source"] = datasets.Value("large_string")
    one = decode_media(
        datasets.load_dataset(str(out), split="train", streaming=True, batch_size=1, features=features)
    )
    source = _source(one)
    tables = [table for _, table in source.generate_tables_fn(**source.kwargs)]
    assert [len(t) for t in tables] == [1] * len(IMAGES_PER_ROW)
    assert all(t.schema.field("source").type == pa.large_string() for t in tables)
    assert _ids(one) == [f"r{i}" for i in range(len(IMAGES_PER_ROW))]


def test_streaming_reader_allocates_from_the_system_allocator(tmp_path: Path) -> None:
    """Arrow's default pool (mimalloc) gave each batch's memory back to the kernel between batches."""
    out = _write_folder(tmp_path, _rows([3, 3, 3, 3]), "parquet")
    plain = datasets.load_dataset(str(out), split="train", streaming=True, columns=["images", "id"])
    source = _source(decode_media(plain))
    system, default = pa.system_memory_pool(), pa.default_memory_pool()
    # a pyarrow built without mimalloc or jemalloc has nothing to compare
    if system.backend_name == default.backend_name:
        pytest.skip("Arrow's default pool is the system allocator here")
    before = system.bytes_allocated()
    tables = source.generate_tables_fn(**source.kwargs)
    _, first = next(tables)
    held = system.bytes_allocated() - before
    media = first.column("images").combine_chunks().flatten().flatten()[0]
    assert held >= media.nbytes > 0  # the batch's image bytes live in system-allocated memory
    tables.close()
    theirs = _source(plain)
    _, reference = next(iter(theirs.generate_tables_fn(**theirs.kwargs)))
    assert first.column_names == reference.column_names


@pytest.mark.parametrize(
    "option",
    [
        {"filters": [("id", "in", ["r1", "r2"])]},
        {"fragment_scan_options": pyarrow.dataset.ParquetFragmentScanOptions(pre_buffer=True)},
        {"on_bad_files": "skip"},
    ],
    ids=["filters", "fragment_scan_options", "on_bad_files"],
)
def test_streaming_keeps_datasets_reader_for_its_own_options(
    tmp_path: Path, opens: OpenCounter, option: dict[str, Any]
) -> None:
    out = _write_folder(tmp_path, _rows(IMAGES_PER_ROW), "parquet")
    plain = datasets.load_dataset(str(out), split="train", streaming=True, **option)
    expected = [f"r{i}" for i in range(len(IMAGES_PER_ROW))]
    if "filters" in option:
        expected = ["r1", "r2"]
    ours = decode_media(plain)
    assert not _reads_lean(ours)
    opens.take()
    rows = list(ours)
    assert [row["id"] for row in rows] == expected
    assert opens.take() == sum(len(row["images"]) for row in rows)


def test_streaming_shards_split_between_nodes_reshard_and_resume(tmp_path: Path) -> None:
    from datasets.distributed import split_dataset_by_node

    rows = _rows([1, 0, 2, 1, 1, 0, 3])
    expected = [row["id"] for row in rows]
    plain = datasets.load_dataset(str(_write_shards(tmp_path, rows, 3)), split="train", streaming=True)
    decoded = decode_media(plain)
    assert _ids(decoded) == expected

    for before in (True, False):  # split_dataset_by_node before or after decode_media
        nodes = [
            decode_media(split_dataset_by_node(plain, rank=rank, world_size=2))
            if before
            else split_dataset_by_node(decoded, rank=rank, world_size=2)
            for rank in range(2)
        ]
        assert all(_reads_lean(node) for node in nodes)
        per_node = [_ids(node) for node in nodes]
        assert per_node[0] and per_node[1] and not set(per_node[0]) & set(per_node[1])
        assert sorted(per_node[0] + per_node[1]) == sorted(expected)

    resharded = decoded.reshard()  # as datasets reshards its own stream (one shard per row group since 5.0)
    assert resharded.num_shards == plain.reshard().num_shards >= 3 and _reads_lean(resharded)
    assert sorted(_ids(resharded)) == sorted(expected)

    iterator = iter(decoded)
    first = [next(iterator)["id"] for _ in range(3)]
    state = decoded.state_dict()
    resumed = decode_media(plain)
    resumed.load_state_dict(state)
    assert first + _ids(resumed) == expected


def test_streaming_pickles_into_a_fresh_process(tmp_path: Path) -> None:
    """DataLoader workers started with spawn/forkserver get the stream pickled, the reader with it."""
    decoded = decode_media(_load(tmp_path, _rows(IMAGES_PER_ROW), "streaming-parquet"))
    blob = tmp_path / "stream.pkl"
    blob.write_bytes(pickle.dumps(decoded))
    code = (
        "import pickle, sys, PIL.Image; ds = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(*[sum(isinstance(im, PIL.Image.Image) for im in row['images']) for row in ds])"
    )
    assert [int(n) for n in _run_unpickled(code, blob).split()] == IMAGES_PER_ROW


@pytest.mark.hub
def test_streaming_from_the_hub_reads_through_datasets_opener(
    hub_server: Any, tmp_path: Path, opens: OpenCounter
) -> None:
    """Remote shards (hf:// URLs, the token) are opened the way datasets' own reader opens them."""
    from huggingface_hub import HfApi

    from tests.hub_server import TEST_USER

    repo = f"{TEST_USER}/decode-stream"
    out = _write_shards(tmp_path, _rows(IMAGES_PER_ROW), 2)
    api = HfApi()
    api.create_repo(repo, repo_type="dataset", private=True)
    api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="dataset")

    plain = datasets.load_dataset(repo, split="train", streaming=True)
    _decoded_leanly_as_datasets_would(plain, opens)


# --- no torchcodec anywhere -------------------------------------------------------------------------

_BROKEN_TORCHCODEC = """
import os
with open(os.environ["TORCHCODEC_MARKER"], "a") as f:
    import traceback
    f.write("".join(traceback.format_stack()))
raise OSError("libnvrtc.so.13: cannot open shared object file: No such file or directory")
"""

_WITHOUT_TORCHCODEC = """
import json, os, sys
from pathlib import Path

import datasets
from datasets import load_dataset

from llava_hf import build_folder, decode_media
from llava_hf.card import make_card
from llava_hf.chat import ChatCollator, as_messages
from llava_hf.export import export_llava
from tests.fixtures.tiny_vlm import make_processor

work = Path(sys.argv[1])
out = work / "built"
build_folder(str(work / "data.json"), out, image_folder=str(work / "images"), video_folder=str(work / "videos"))
ds = load_dataset(str(out), split="train")
stream = load_dataset(str(out), split="train", streaming=True)
report = {"torchcodec_available": datasets.config.TORCHCODEC_AVAILABLE}
report["decoded"] = [[list(v.shape) for v in r["videos"]] for r in decode_media(ds)]
report["streamed"] = [[len(t) for t in r["video_timestamps"]] for r in decode_media(stream, fps=1.0)]
parts = [
    [list(p["video"].shape) for m in r["messages"] for p in m["content"] if p["type"] == "video"]
    for r in as_messages(ds, format="processor", num_frames=2)
]
report["processor_parts"] = parts
trl_rows = list(as_messages(stream))
report["trl"] = [[len(v) for v in r["videos"]] for r in trl_rows]
batch = ChatCollator(make_processor(), template="vicuna_v1")(trl_rows)
report["pixel_values"] = list(batch["pixel_values"].shape)
export_llava(out, work / "exported", media_root="media")
report["exported"] = sorted(p.name for p in (work / "exported" / "media").rglob("*") if p.is_file())
report["card_videos"] = "video-text-to-text" in str(make_card(out))
report["marker_before_datasets"] = os.path.exists(os.environ["TORCHCODEC_MARKER"])
try:  # datasets' own Video() decoding, for contrast: it needs torchcodec
    ds[0]
    report["datasets_own"] = "decoded"
except (ImportError, OSError) as err:
    report["datasets_own"] = type(err).__name__ + ": " + str(err)
print(json.dumps(report))
"""


def test_every_llava_hf_path_works_where_torchcodec_cannot_load(
    llava_dir: Path, write_json: Callable[..., Path], tmp_path: Path
) -> None:
    """As with the CUDA torchcodec wheels next to a CPU torch: the package is found (datasets says
    TORCHCODEC_AVAILABLE) but importing it fails. decode_media, as_messages, ChatCollator, export and the
    card never import it (a marker file records any import), where datasets' own Video() decoding fails."""
    fake = tmp_path / "site" / "torchcodec"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(_BROKEN_TORCHCODEC)
    records = [
        {
            "id": "mp4",
            "video": "1.mp4",
            "conversations": [{"from": "human", "value": "<video>\nQ?"}, {"from": "gpt", "value": "A."}],
        },
        {
            "id": "avi+img",
            "image": "coco/train2017/1.jpg",
            "video": "2.avi",
            "conversations": [
                {"from": "human", "value": "<image> and <video>?"},
                {"from": "gpt", "value": "B."},
            ],
        },
    ]
    write_json(records, "data.json")
    marker = tmp_path / "torchcodec-imported.txt"
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(root)]),
        "TORCHCODEC_MARKER": str(marker),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCHCODEC, str(llava_dir)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torchcodec_available"] is True  # datasets finds the package...
    assert report["datasets_own"].startswith("OSError: libnvrtc.so.13")  # ...which cannot load
    assert report["marker_before_datasets"] is False, marker.read_text()
    assert report["decoded"] == [[[8, 360, 640, 3]], [[8, 240, 320, 3]]]
    assert report["streamed"] == [[10], [9]]  # last frames at 9.68 s and 8.99 s, one frame a second
    assert report["processor_parts"] == [[[2, 360, 640, 3]], [[2, 240, 320, 3]]]
    assert report["trl"] == [[8], [8]]
    assert report["pixel_values"][0] == 8 + 8 + 1  # every frame and the image through the image processor
    assert report["exported"] == ["1.jpg", "1.mp4", "2.avi"]
    assert report["card_videos"] is True
