"""Streaming read throughput of a built folder, with and without image decoding.

On a folder built from the generated corpus (``corpus.py``; built with ``llava_hf.build_folder`` when
available, else with plain datasets: ``Dataset.from_list(features=features_for())`` + embedded bytes +
``to_parquet`` with 100-row groups), each contender in a fresh process reads every sample once:

- ``pure decoding``: PIL decode of image bytes already in memory (read from the Parquet files row group by
  row group; only the decoding is timed): the ceiling;
- ``(c) folder loader``: the LLaVA data loader's way: the JSON records, then
  ``PIL.Image.open(path).convert("RGB")`` for each image file of the source folder;
- ``datasets streaming``: ``load_dataset(folder, split="train", streaming=True)``, datasets' own decoding;
- ``decode_media(streaming)``: ``llava_hf.decode_media`` over the same streaming dataset, which reads the
  Parquet shards with pyarrow's synchronous reader (see ``llava_hf/decode.py``); with torch installed,
  datasets imports it when the stream is created (~190 MB of RSS), as in any trainer;
- the same with ``USE_TORCH=0`` (datasets' switch): no torch import, the RSS of the reading alone;
- ``decode_media`` over datasets' own reader: loaded with ``fragment_scan_options=
  ParquetFragmentScanOptions(pre_buffer=False)``, an option decode_media leaves to datasets' reader, whose
  threaded scanner reads ahead of a slow consumer (most of a ~460 MB shard here);
- the same two readers without decoding (``.decode(False)`` / file bytes only).

Every decoding contender hands each image to the same consumer, ``image.convert("RGB")``, as LLaVA's
loader does, so all do the same decode work. Reported: samples/s, images/s, the ratio to pure decoding,
peak RSS, and whether torch was imported. Targets (issue 3): ``decode_media`` at >= 90% of pure decoding,
under 500 MB RSS.

Usage: ``python benchmarks/bench_stream.py [--small] [--samples N] [--repeat N] [--workdir DIR]``

Video mode (``--video``, issue 20): a folder built from the real test videos (``tests/data/real``: H.264
MP4 640x360 and 224x224, H.264 AVI 320x240 with five key frames), one video per sample, ``--videos N``
samples (default 200; 8 with ``--small``), 8 frames decoded per video by each contender in a fresh process:

- ``PyAV from the files``: the loader of LLaVA-NeXT's training code (``read_video_pyav``): the JSON
  records, ``av.open(path)``, ``stream.frames`` frames, the frames at ``numpy.linspace(0, n - 1, 8,
  dtype=int)`` converted with ``to_ndarray(format="rgb24")`` while decoding up to the last one, stacked;
- ``decode_media(streaming)`` / ``decode_media(Dataset)``: ``decode_media(load_dataset(folder, ...),
  num_frames=8)`` over the built folder, PyAV via ``llava_hf/_video.py`` (packet index, seeks, exact);
  the stream also with ``USE_TORCH=0`` (datasets then does not import torch: the RSS of the reading alone).

Both sample the same frames: a checksum of every sampled frame (a sparse pixel sum) must agree.
Reported: videos/s, the ratio to PyAV from the files (target >= 90%), CPU, peak RSS.
Usage: ``python benchmarks/bench_stream.py --video [--videos N] [--repeat N]``
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Result,
    base_parser,
    corpus_location,
    default_workdir,
    machine_facts,
    print_facts,
    print_table,
    report_work,
    run_contender,
    spread,
    summarize,
    warm_page_cache,
)

FULL_SAMPLES = 20_000
SMALL_SAMPLES = 100
ROW_GROUP = 100

PURE = "pure decoding (bytes in memory)"
FOLDER = "(c) folder loader (json + PIL.Image.open)"
DS = "datasets streaming"
DM = "decode_media(streaming)"
DM_NO_TORCH = "decode_media(streaming), USE_TORCH=0"
DM_DATASETS_READER = "decode_media over datasets' reader (pre_buffer=False)"
FOLDER_RAW = "(c) folder loader, no decode (file bytes)"
DS_RAW = "datasets streaming, no decode"
DECODING = (PURE, FOLDER, DS, DM, DM_NO_TORCH, DM_DATASETS_READER)
RAW = (FOLDER_RAW, DS_RAW)
STREAMS = (DS, DM, DM_NO_TORCH, DM_DATASETS_READER, DS_RAW)
BUILD = "build the folder"  # not a contender: builds it in a child process

VIDEO_FILES = "PyAV from the files (json + av.open, LLaVA-NeXT's loader)"
VIDEO_DM = "decode_media(streaming), num_frames=8"
VIDEO_DM_DATASET = "decode_media(Dataset), num_frames=8"
VIDEO_DM_NO_TORCH = "decode_media(streaming), num_frames=8, USE_TORCH=0"
VIDEO_BUILD = "build the video folder"
VIDEO_CONTENDERS = (VIDEO_FILES, VIDEO_DM, VIDEO_DM_NO_TORCH, VIDEO_DM_DATASET)
VIDEO_FRAMES = 8
FULL_VIDEOS = 200
SMALL_VIDEOS = 8
REAL_VIDEOS = ("1.mp4", "2.avi", "3.mp4", "4.mp4")


def _image_list(record: dict[str, Any]) -> list[str]:
    image = record.get("image", record.get("images"))
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def _build_folder(corpus: Path, out: Path) -> str:
    """Build the folder once (reused). Returns how it was built."""
    stamp = out / "built-by.txt"
    if stamp.exists():
        return stamp.read_text()
    shutil.rmtree(out, ignore_errors=True)
    if importlib.util.find_spec("llava_hf") is not None:
        from llava_hf import build_folder

        build_folder([str(corpus / "data.json")], str(out), image_folder=str(corpus / "images"), num_proc=2)
        how = "llava_hf.build_folder (num_proc=2)"
    else:
        import datasets

        from llava_hf.schema import features_for

        records = json.loads((corpus / "data.json").read_text())
        (out / "data").mkdir(parents=True)
        rows = [
            {
                "id": str(r["id"]),
                "images": [
                    {"bytes": (corpus / "images" / p).read_bytes(), "path": p} for p in _image_list(r)
                ],
                "videos": [],
                "video_info": [],
                "conversations": r["conversations"],
                "source": "data.json",
                "metadata": {},
            }
            for r in records
        ]
        ds = datasets.Dataset.from_list(rows, features=features_for())
        ds.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"), batch_size=ROW_GROUP)
        how = f"plain datasets (from_list + to_parquet, {ROW_GROUP}-row groups)"
    stamp.write_text(how)
    return how


def _consume(images: list[Any]) -> int:
    for image in images:
        image.convert("RGB")
    return len(images)


def _warm_up_pil() -> None:
    """Pillow loads its plugins on the first open: do it before any clock starts, in every contender."""
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    PIL.Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _video_corpus(root: Path, videos: int) -> Path:
    """``root/videos`` (the real test videos) and ``root/data.json``: ``videos`` records, one video each."""
    real = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for name in REAL_VIDEOS:
        shutil.copy(real / name, root / "videos" / name)
    records = [
        {
            "id": f"v{i}",
            "video": REAL_VIDEOS[i % len(REAL_VIDEOS)],
            "conversations": [
                {"from": "human", "value": "<video>\nWhat happens?"},
                {"from": "gpt", "value": "Something."},
            ],
        }
        for i in range(videos)
    ]
    (root / "data.json").write_text(json.dumps(records))
    return root


def _checksum(frames: Any) -> int:
    """A cheap fingerprint of sampled frames (every 16th pixel): equal frames, equal sums."""
    return int(frames[:, ::16, ::16].sum(dtype="int64"))


def _pyav_from_file(path: Path, count: int) -> Any:
    """LLaVA-NeXT's ``read_video_pyav``: ``stream.frames``, linspace indices, decode up to the last."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        total = container.streams.video[0].frames
        indices = set(np.linspace(0, total - 1, count, dtype=int).tolist())
        last = max(indices)
        frames = []
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                frames.append(frame.to_ndarray(format="rgb24"))
            if i >= last:
                break
    return np.stack(frames)


def _video_work(name: str, corpus: Path, folder: Path) -> None:
    if name == VIDEO_BUILD:
        if not (folder / "built-by.txt").exists():
            from llava_hf import build_folder

            shutil.rmtree(folder, ignore_errors=True)
            build_folder(str(corpus / "data.json"), str(folder), video_folder=str(corpus / "videos"))
            (folder / "built-by.txt").write_text("llava_hf.build_folder")
        return
    if name == VIDEO_DM_NO_TORCH:
        os.environ["USE_TORCH"] = "0"  # read by datasets.config at import: set before datasets is imported
    import av  # noqa: F401  (imported before the clock starts, in every contender)
    import numpy  # noqa: F401

    if name == VIDEO_FILES:

        def work() -> dict[str, Any]:
            records = json.loads((corpus / "data.json").read_text())
            total = 0
            for record in records:
                total += _checksum(_pyav_from_file(corpus / "videos" / record["video"], VIDEO_FRAMES))
            return {"videos": len(records), "checksum": total}

    elif name in (VIDEO_DM, VIDEO_DM_NO_TORCH, VIDEO_DM_DATASET):
        import datasets

        from llava_hf import decode_media

        datasets.disable_progress_bars()
        streaming = name != VIDEO_DM_DATASET
        ds = decode_media(
            datasets.load_dataset(str(folder), split="train", streaming=streaming), num_frames=VIDEO_FRAMES
        )

        def work() -> dict[str, Any]:
            n = total = 0
            for row in ds:
                for video in row["videos"]:
                    total += _checksum(video)
                    n += 1
            return {"videos": n, "checksum": total}

    else:
        raise SystemExit(f"unknown contender {name!r}")
    report_work(work)


def _video_main(args: Any) -> None:
    workdir = args.workdir or default_workdir(args.small)
    videos = args.videos or (SMALL_VIDEOS if args.small else FULL_VIDEOS)
    corpus = workdir / f"video-corpus-{videos}"
    folder = workdir / f"video-folder-{videos}"
    extra = ["--video", "--workdir", str(workdir), "--videos", str(videos)]
    if args.contender:
        _video_work(args.contender, corpus, folder)
        return
    _video_corpus(corpus, videos)
    subprocess.run([sys.executable, __file__, "--contender", VIDEO_BUILD, *extra], check=True)
    warm_page_cache([corpus, folder])
    runs: dict[str, list[Result]] = {name: [] for name in VIDEO_CONTENDERS}
    for _ in range(args.repeat):  # interleaved, so a slow spell of a shared machine hits every contender
        for name in VIDEO_CONTENDERS:
            runs[name].append(run_contender(__file__, name, extra))
    results = [summarize(runs[name]) for name in VIDEO_CONTENDERS]
    checksums = {r.extra["checksum"] for r in results}
    if any(r.extra["videos"] != videos for r in results) or len(checksums) != 1:
        raise SystemExit(f"the contenders disagree: {[(r.name, r.extra) for r in results]}")
    files = results[0]
    print_facts(
        "Video decoding: 8 frames per video",
        machine_facts(workdir),
        [
            f"corpus: {videos} samples, one video each, cycling through {', '.join(REAL_VIDEOS)} "
            "(tests/data/real); folder built with llava_hf.build_folder",
            "each contender in a fresh process, warm page cache, one pass; every contender converts the 8 "
            "sampled frames to RGB arrays; the frame checksums of all contenders agree",
            f"{args.repeat} run(s) per contender, interleaved; medians shown, 'wall range' = min-max",
        ],
    )
    print_table(
        ["reader", "videos/s", "wall range s", "vs PyAV from files", "CPU s", "vs PyAV (CPU)", "peak RSS MB"],
        [
            [
                r.name,
                f"{videos / r.wall_s:,.1f}",
                spread(r),
                f"{files.wall_s / r.wall_s:.0%}",
                f"{r.cpu_s:.1f}",
                f"{files.cpu_s / r.cpu_s:.0%}" if r.cpu_s > 0 else "-",
                f"{r.peak_rss_mb:.0f}",
            ]
            for r in results
        ],
    )


def _work(name: str, corpus: Path, folder: Path) -> None:
    if name == BUILD:
        _build_folder(corpus, folder)
        return
    if name == DM_NO_TORCH:
        os.environ["USE_TORCH"] = "0"  # read by datasets.config at import: set before datasets is imported
    import PIL.Image

    _warm_up_pil()

    if name == PURE:
        import time

        import pyarrow.parquet as pq

        def work() -> dict[str, Any]:
            # Only the decoding is timed: the bytes are read row group by row group outside the clock.
            rows = n = 0
            wall = cpu = 0.0
            for file in sorted((folder / "data").glob("*.parquet")):
                for batch in pq.ParquetFile(file, pre_buffer=False).iter_batches(
                    batch_size=64, columns=["images"]
                ):
                    blobs = [[im["bytes"] for im in row] for row in batch.column(0).to_pylist()]
                    t0, c0 = time.perf_counter(), time.process_time()
                    for row_blobs in blobs:
                        n += _consume([PIL.Image.open(io.BytesIO(b)) for b in row_blobs])
                    wall += time.perf_counter() - t0
                    cpu += time.process_time() - c0
                    rows += len(blobs)
            return {
                "rows": rows,
                "images": n,
                "timed_wall_s": wall,
                "timed_cpu_s": cpu,
                "torch": "torch" in sys.modules,
            }

    elif name in (FOLDER, FOLDER_RAW):
        root = corpus / "images"

        def work() -> dict[str, Any]:
            records = json.loads((corpus / "data.json").read_text())
            n = 0
            for record in records:
                paths = _image_list(record)
                if name == FOLDER:
                    n += _consume([PIL.Image.open(root / p) for p in paths])
                else:
                    for p in paths:
                        n += len((root / p).read_bytes()) > 0
            return {"rows": len(records), "images": n, "torch": "torch" in sys.modules}

    elif name in STREAMS:
        import datasets
        import pyarrow.dataset as pds

        from llava_hf import decode_media

        datasets.disable_progress_bars()
        # Opening the dataset (data files resolution, README) happens before the clock starts.
        kwargs: dict[str, Any] = {}
        if name == DM_DATASETS_READER:
            kwargs["fragment_scan_options"] = pds.ParquetFragmentScanOptions(pre_buffer=False)
        ds = datasets.load_dataset(str(folder), split="train", streaming=True, **kwargs)
        if name in (DM, DM_NO_TORCH, DM_DATASETS_READER):
            ds = decode_media(ds)
        elif name == DS_RAW:
            ds = ds.decode(False)

        def work() -> dict[str, Any]:
            rows = n = 0
            for row in ds:
                rows += 1
                if name == DS_RAW:
                    n += sum(len(im["bytes"]) > 0 for im in row["images"])
                else:
                    n += _consume(row["images"])
            return {"rows": rows, "images": n, "torch": "torch" in sys.modules}

    else:
        raise SystemExit(f"unknown contender {name!r}")
    report_work(work)


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=int, default=None, help=f"default {FULL_SAMPLES} ({SMALL_SAMPLES} small)"
    )
    parser.add_argument("--video", action="store_true", help="the video decoding benchmark instead")
    parser.add_argument(
        "--videos", type=int, default=None, help=f"--video: default {FULL_VIDEOS} ({SMALL_VIDEOS} small)"
    )
    args = parser.parse_args()
    if args.video:
        _video_main(args)
        return
    workdir, samples, corpus = corpus_location(args, FULL_SAMPLES, SMALL_SAMPLES)
    folder = workdir / f"stream-folder-{samples}"
    if args.contender:
        _work(args.contender, corpus, folder)
        return

    from corpus import make_corpus

    stats = make_corpus(corpus, samples)
    extra = ["--workdir", str(workdir), "--samples", str(samples)]
    # built in a child process: a contender's ru_maxrss includes its parent's peak from before exec
    subprocess.run([sys.executable, __file__, "--contender", BUILD, *extra], check=True)
    how = (folder / "built-by.txt").read_text()
    warm_page_cache([corpus, folder])
    names = (*DECODING, *RAW)
    runs: dict[str, list[Result]] = {name: [] for name in names}
    for _ in range(args.repeat):  # interleaved, so a slow spell of a shared machine hits every contender
        for name in names:
            runs[name].append(run_contender(__file__, name, extra))
    results = [summarize(runs[name]) for name in names]
    for r in results:
        if r.extra["rows"] != samples or r.extra["images"] != stats["images"]:
            raise SystemExit(f"{r.name} read {r.extra} instead of {samples} rows, {stats['images']} images")

    pure = results[0]
    print_facts(
        "Streaming read",
        machine_facts(workdir),
        [
            f"corpus: {samples:,} samples, {stats['images']:,} JPEGs ({stats['image_bytes'] / 1e9:.2f} GB); "
            f"folder built with {how}",
            "each contender in a fresh process, warm page cache, one pass over every sample; decoding contenders "
            "call image.convert('RGB') on every image; times exclude interpreter start-up and imports",
            f"{args.repeat} run(s) per reader, interleaved; medians shown, 'wall range' = min-max",
            "'RSS before' is after imports and setup; 'torch' says whether torch was imported (datasets "
            "imports it when a stream is created and torch is installed: ~190 MB; USE_TORCH=0 turns that off)",
        ],
    )
    rows = [
        [
            r.name,
            "yes" if r.name in DECODING else "no",
            f"{r.extra['rows'] / r.wall_s:,.0f}",
            f"{r.extra['images'] / r.wall_s:,.0f}",
            spread(r),
            f"{pure.wall_s / r.wall_s:.0%}" if r.name in DECODING else "-",
            f"{r.cpu_s:.1f}",
            f"{r.extra['rows'] / r.cpu_s:,.0f}" if r.cpu_s > 0 else "-",
            f"{pure.cpu_s / r.cpu_s:.0%}" if r.name in DECODING and r.cpu_s > 0 else "-",
            "yes" if r.extra.get("torch") else "no",
            f"{r.rss_before_mb:.0f}",
            f"{r.peak_rss_mb:.0f}",
        ]
        for r in results
    ]
    print_table(
        [
            "reader",
            "decode",
            "samples/s",
            "images/s",
            "wall range s",
            "vs pure decoding",
            "CPU s",
            "samples per CPU s",
            "vs pure (CPU)",
            "torch",
            "RSS before MB",
            "peak RSS MB",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
