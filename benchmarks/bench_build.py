"""Build speed and memory: llava-hf's builder vs the physical limit and vs the path users take today.

On one generated corpus (``corpus.py``: 20,000 samples, ~2 GB of distinct JPEGs; ``--small``: 100), each
contender in a fresh process, every output flushed to disk (``os.fsync``) inside the timed phase:

- ``(a) copy``: a plain Python copy of the same image bytes, in record order, into one file: the
  physical limit of this disk;
- ``(b) datasets``: ``Dataset.from_list`` + ``cast_column("images", List(Image()))`` + ``embed_table_storage``
  (``ds.with_format("arrow").map(embed_table_storage, batched=True)``, as ``push_to_hub`` embeds) +
  ``to_parquet`` (datasets 5.2 defaults: content-defined chunking and page index on);
- ``(b) datasets, no CDC``: the same with ``to_parquet(use_content_defined_chunking=False, write_page_index=False)``;
- ``pyarrow``: a hand-written streaming ``pyarrow.parquet.ParquetWriter`` (100-row groups), without and with
  content-defined chunking + page index (datasets' ``DEFAULT_CDC_OPTIONS``): the cost of those options;
- ``llava-hf build``: ``llava_hf.build_folder(...)`` with ``num_proc`` 1 and 2 (default: no CDC, no page index),
  and with ``content_defined_chunking=True, page_index=True`` (when the builder is installed).

Reported: wall time; CPU time (user + system, child processes included) and its user part (the
kernel's part, mostly copying bytes into and out of the page cache, is shared with (a) and varies by
2x between runs on a VM); CPU seconds per GB of image bytes; peak RSS (main process, and the largest child); output size; ratios against (a) and (b).
The corpus is read again right before each contender, so every contender reads the same warm files
(the VMs measured page out file cache that has not been touched for ~30 s, DAMON's ``pageout`` scheme,
so one read up front left later contenders a colder cache than earlier ones).

``CPU vs (a)`` divides the medians; ``CPU vs (a), per round`` is the median of each round's ratio (the
copy and the contender of the same round run within a minute of each other, so a slow spell of the VM
hits both). ``--scaling`` runs only the copy and the build with ``num_proc`` 1 and 2, writing to a tmpfs
folder: where the disk caps nothing, the wall time of two processes against one shows how the build
scales with cores.

Usage: ``python benchmarks/bench_build.py [--small] [--samples N] [--workdir DIR] [--repeat R]
[--scaling] [--output-root DIR]``
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Result,
    base_parser,
    corpus_location,
    fsync_tree,
    machine_facts,
    print_facts,
    print_table,
    report_work,
    run_contender,
    spread,
    summarize,
    tree_bytes,
    warm_page_cache,
)

FULL_SAMPLES = 20_000
SMALL_SAMPLES = 100
ROW_GROUP = 100
#: ``--scaling`` writes here by default: a tmpfs (RAM), where the disk's speed caps nothing.
SCALING_ROOT = Path("/dev/shm/llava-hf-bench-scaling")

COPY = "(a) copy"
NAIVE = "(b) datasets"
NAIVE_NO_CDC = "(b) datasets, no CDC"
PA_PLAIN = "pyarrow, no CDC"
PA_CDC = "pyarrow + CDC + page index"
BUILD_1 = "llava-hf build, num_proc=1"
BUILD_2 = "llava-hf build, num_proc=2"
BUILD_CDC = "llava-hf build + CDC + page index, num_proc=1"


def _image_list(record: dict[str, Any]) -> list[str]:
    image = record.get("image", record.get("images"))
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def _copy(corpus: Path, out: Path) -> dict[str, Any]:
    records = json.loads((corpus / "data.json").read_text())
    out.mkdir(parents=True)
    written = 0
    with open(out / "images.bin", "wb") as f:
        for record in records:
            for path in _image_list(record):
                with open(corpus / "images" / path, "rb") as src:
                    written += f.write(src.read())
        f.flush()
        os.fsync(f.fileno())
    return {"rows": len(records), "bytes": written}


def _naive(corpus: Path, out: Path, cdc: bool) -> dict[str, Any]:
    import datasets
    from datasets.table import embed_table_storage

    datasets.disable_progress_bars()
    records = json.loads((corpus / "data.json").read_text())
    image_root = corpus / "images"
    rows = [
        {
            "id": str(r["id"]),  # mixed int/str ids make from_list fail: users fix them first
            "images": [str(image_root / p) for p in _image_list(r)],
            "conversations": r["conversations"],
        }
        for r in records
    ]
    ds = datasets.Dataset.from_list(rows)
    ds = ds.cast_column("images", datasets.List(datasets.Image()))
    ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    out.mkdir(parents=True)
    target = out / "train-00000-of-00001.parquet"
    kwargs: dict[str, Any] = {} if cdc else {"use_content_defined_chunking": False, "write_page_index": False}
    ds.to_parquet(str(target), **kwargs)
    fsync_tree(out)
    return {"rows": len(ds)}


def _pyarrow(corpus: Path, out: Path, cdc: bool) -> dict[str, Any]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "conversations": datasets.List(
                {"from": datasets.Value("string"), "value": datasets.Value("string")}
            ),
        }
    )
    schema = features.arrow_schema
    records = json.loads((corpus / "data.json").read_text())
    image_root = corpus / "images"
    out.mkdir(parents=True)
    options: dict[str, Any] = (
        {"use_content_defined_chunking": datasets.config.DEFAULT_CDC_OPTIONS, "write_page_index": True}
        if cdc
        else {"use_content_defined_chunking": False, "write_page_index": False}
    )
    with pq.ParquetWriter(str(out / "train-00000-of-00001.parquet"), schema, **options) as writer:
        for start in range(0, len(records), ROW_GROUP):
            chunk = records[start : start + ROW_GROUP]
            batch = {
                "id": [str(r["id"]) for r in chunk],
                "images": [
                    [{"bytes": (image_root / p).read_bytes(), "path": p} for p in _image_list(r)]
                    for r in chunk
                ],
                "conversations": [r["conversations"] for r in chunk],
            }
            writer.write_table(pa.Table.from_pydict(batch, schema=schema), row_group_size=ROW_GROUP)
    fsync_tree(out)
    return {"rows": len(records)}


def _build(corpus: Path, out: Path, num_proc: int, cdc: bool = False) -> dict[str, Any]:
    import datasets

    import llava_hf

    datasets.disable_progress_bars()
    llava_hf.build_folder(
        [str(corpus / "data.json")],
        str(out),
        image_folder=str(corpus / "images"),
        num_proc=num_proc,
        content_defined_chunking=cdc,
        page_index=cdc,
    )
    fsync_tree(out)
    manifest = json.loads((out / "llava_hf.json").read_text())
    return {"rows": sum(s["num_rows"] for s in manifest["splits"].values())}


def _builder_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("llava_hf") is None:
        return False
    import llava_hf

    return hasattr(llava_hf, "build_folder")


def _work(name: str, corpus: Path, out: Path) -> None:
    jobs = {
        COPY: lambda: _copy(corpus, out),
        NAIVE: lambda: _naive(corpus, out, cdc=True),
        NAIVE_NO_CDC: lambda: _naive(corpus, out, cdc=False),
        PA_PLAIN: lambda: _pyarrow(corpus, out, cdc=False),
        PA_CDC: lambda: _pyarrow(corpus, out, cdc=True),
        BUILD_1: lambda: _build(corpus, out, 1),
        BUILD_2: lambda: _build(corpus, out, 2),
        BUILD_CDC: lambda: _build(corpus, out, 1, cdc=True),
    }
    if name not in jobs:
        raise SystemExit(f"unknown contender {name!r}")
    if name != COPY:  # imports happen before the timed phase
        import datasets
        import datasets.table  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        if name.startswith("llava-hf"):
            import llava_hf  # noqa: F401
    report_work(jobs[name])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=int, default=None, help=f"default {FULL_SAMPLES} ({SMALL_SAMPLES} small)"
    )
    parser.add_argument("--out", type=Path, default=None, help=argparse_suppress())
    parser.add_argument(
        "--keep", action="store_true", help="keep the outputs (default: delete each after measuring)"
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="only the copy and the build with num_proc 1 and 2, writing to --output-root (default: a "
        f"tmpfs folder, {SCALING_ROOT}): how the build scales where the disk caps nothing",
    )
    parser.add_argument(
        "--output-root",
        type=Path,
        default=None,
        help="where the contenders write (default: WORKDIR/build-out; with --scaling, the tmpfs folder)",
    )
    args = parser.parse_args()
    workdir, samples, corpus = corpus_location(args, FULL_SAMPLES, SMALL_SAMPLES)
    if args.contender:
        _work(args.contender, corpus, args.out)
        return

    from corpus import make_corpus

    stats = make_corpus(corpus, samples)
    contenders = [COPY] if args.scaling else [COPY, NAIVE, NAIVE_NO_CDC, PA_PLAIN, PA_CDC]
    notes = []
    if _builder_available():
        contenders += [BUILD_1, BUILD_2] if args.scaling else [BUILD_1, BUILD_2, BUILD_CDC]
    elif args.scaling:
        raise SystemExit("--scaling needs llava_hf.build_folder (pip install -e .)")
    else:
        notes.append("llava_hf.build_folder is not available in this checkout: builder rows missing")
    output_root = args.output_root or (SCALING_ROOT if args.scaling else workdir / "build-out")
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    sizes: dict[str, int] = {}
    for k in range(args.repeat):  # interleaved, so a slow spell of a shared machine hits every contender
        # in a new order each round: a contender pays for what the one before it left (the page cache it
        # freed, memory the VM takes back), so a fixed order would bias every row the same way
        order = contenders[:] if k == 0 else random.Random(k).sample(contenders, len(contenders))
        for name in order:
            out = output_root / _slug(name)
            shutil.rmtree(out, ignore_errors=True)
            warm_page_cache([corpus])
            r = run_contender(
                __file__, name, ["--workdir", str(workdir), "--samples", str(samples), "--out", str(out)]
            )
            if r.extra.get("rows") != samples:
                raise SystemExit(f"{name} wrote {r.extra.get('rows')} rows, expected {samples}")
            sizes[name] = tree_bytes(out)
            runs[name].append(r)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    results = [summarize(runs[name]) for name in contenders]
    if args.scaling and not args.keep:  # the folder made on tmpfs (RAM)
        shutil.rmtree(output_root, ignore_errors=True)

    gb = stats["image_bytes"] / 1e9
    by_name = {r.name: r for r in results}
    copy, naive = by_name[COPY], by_name.get(NAIVE)
    print_facts(
        "Build",
        machine_facts(workdir),
        [
            f"corpus: {samples:,} samples, {stats['images']:,} distinct JPEGs, {gb:.2f} GB of image bytes, "
            f"images per sample {stats['images_per_sample']}, {stats['turn_pairs_mean']:.1f} Q/A pairs on average",
            "each contender in a fresh process, outputs fsync'ed inside the timed phase, page cache warmed right before each; "
            "times exclude interpreter start-up and imports",
            f"outputs written under {output_root} ({_fs_type(output_root)})",
            f"{args.repeat} run(s) per contender, interleaved (a new order each round); medians shown, "
            "'wall range' = min-max",
            *notes,
        ],
    )
    rows = []
    for r in results:
        rows.append(
            [
                r.name,
                f"{r.wall_s:.1f}",
                spread(r),
                f"{r.cpu_s:.1f}",
                f"{r.extra['cpu_min']:.1f}-{r.extra['cpu_max']:.1f}",
                f"{r.user_s:.1f}",
                f"{r.cpu_s / gb:.1f}",
                f"{gb * 1000 / r.wall_s:.0f}",
                f"{r.peak_rss_mb:.0f}"
                + (f" / {r.peak_rss_children_mb:.0f}" if r.peak_rss_children_mb else ""),
                f"{sizes[r.name] / 1e9:.2f}",
                f"{r.wall_s / copy.wall_s:.2f}",
                f"{r.cpu_s / copy.cpu_s:.2f}",
                _paired(runs[r.name], runs[COPY]),
                f"{naive.cpu_s / r.cpu_s:.2f}" if naive else "-",
                f"{naive.wall_s / r.wall_s:.2f}" if naive else "-",
            ]
        )
    print_table(
        [
            "contender",
            "wall s",
            "wall range s",
            "CPU s",
            "CPU range s",
            "user CPU s",
            "CPU s/GB",
            "MB/s",
            "peak RSS MB (main / child)",
            "output GB",
            "wall vs (a)",
            "CPU vs (a)",
            "CPU vs (a), per round",
            "(b) CPU / this",
            "(b) wall / this",
        ],
        rows,
    )
    if BUILD_1 in runs and BUILD_2 in runs:
        speedups = [one.wall_s / two.wall_s for one, two in zip(runs[BUILD_1], runs[BUILD_2])]
        print(
            f"Scaling, num_proc 1 -> 2 (wall time of the same round): {statistics.median(speedups):.2f}x "
            f"(range {min(speedups):.2f}-{max(speedups):.2f}); with two processes the build ran at "
            f"{copy.wall_s / by_name[BUILD_2].wall_s:.0%} of the copy's throughput.\n"
        )
    print(
        "'CPU vs (a), per round': the median, over rounds, of this contender's CPU time divided by the "
        "copy's in the same round (range in brackets); 'CPU vs (a)' divides the medians.\n"
    )


def _paired(runs: list[Result], copies: list[Result]) -> str:
    """The median and range of per-round CPU ratios to the copy (round k of each, run close in time)."""
    ratios = [r.cpu_s / c.cpu_s for r, c in zip(runs, copies)]
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts; "?" elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    target = str(path.resolve())
    best = ("", "?")
    for fields in mounts:
        point = fields[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fields[2])
    return best[1]


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
