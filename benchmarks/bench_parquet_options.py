"""CPU cost of Parquet's content-defined chunking and page index, on the same media rows, in isolation.

``bench_build.py`` measures whole builds, where reads, fsync and a shared machine's noise blur a
difference of a few seconds. Here one process holds a slice of the corpus as an Arrow table in memory
(the llava-hf columns that matter: ``id``, ``images`` with the JPEG bytes, ``conversations``) and writes
it with ``pyarrow.parquet`` again and again, the variants interleaved, timing CPU (``process_time``) and
wall per write (no fsync: the page cache absorbs the writes). Variants: the builder's settings (no
compression or dictionary for the media bytes), then with content-defined chunking (datasets'
``DEFAULT_CDC_OPTIONS``), with the page index, with both (datasets 5.2's ``to_parquet`` default), and
pyarrow's defaults (snappy + dictionary everywhere) for reference.

Usage: ``python benchmarks/bench_parquet_options.py [--small] [--samples N] [--rounds R]``
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, corpus_location, machine_facts, print_facts, print_table

FULL_SAMPLES = 20_000
SMALL_SAMPLES = 100
SLICE = 3_000  # rows held in memory (~330 MB of JPEGs)
ROW_GROUP = 64


def _image_list(record: dict[str, Any]) -> list[str]:
    image = record.get("image")
    return [] if image is None else [image] if isinstance(image, str) else list(image)


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=None, help=f"corpus size (default {FULL_SAMPLES})")
    parser.add_argument("--rounds", type=int, default=None, help="writes per variant (default 5; 2 small)")
    args = parser.parse_args()
    workdir, samples, corpus = corpus_location(args, FULL_SAMPLES, SMALL_SAMPLES)
    rounds = args.rounds or (2 if args.small else 5)

    from corpus import make_corpus

    make_corpus(corpus, samples)
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = json.loads((corpus / "data.json").read_text())[:SLICE]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "conversations": datasets.List(
                {"from": datasets.Value("string"), "value": datasets.Value("string")}
            ),
        }
    )
    table = pa.Table.from_pydict(
        {
            "id": [str(r["id"]) for r in records],
            "images": [
                [{"bytes": (corpus / "images" / p).read_bytes(), "path": p} for p in _image_list(r)]
                for r in records
            ],
            "conversations": [r["conversations"] for r in records],
        },
        schema=features.arrow_schema,
    )
    media_bytes = sum(
        len(b.as_py()) for b in table.column("images").combine_chunks().flatten().field("bytes")
    )
    lean: dict[str, Any] = {
        "compression": {
            "id": "snappy",
            "images.list.element.bytes": "none",
            "images.list.element.path": "snappy",
        },
        "use_dictionary": ["id", "images.list.element.path"],
    }
    cdc = datasets.config.DEFAULT_CDC_OPTIONS
    variants: dict[str, dict[str, Any]] = {
        "builder settings (no CDC, no page index)": {**lean},
        "+ content-defined chunking": {**lean, "use_content_defined_chunking": cdc},
        "+ page index": {**lean, "write_page_index": True},
        "+ CDC + page index (datasets' to_parquet default)": {
            **lean,
            "use_content_defined_chunking": cdc,
            "write_page_index": True,
        },
        "pyarrow defaults (snappy + dictionary for all)": {},
    }
    out = workdir / "parquet-options.parquet"
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, options in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            pq.write_table(table, out, row_group_size=ROW_GROUP, **options)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            sizes[name] = out.stat().st_size
    out.unlink()

    gb = media_bytes / 1e9
    base = statistics.median(cpu[next(iter(variants))])
    print_facts(
        "Parquet writer options",
        machine_facts(workdir),
        [
            f"{len(records):,} rows held in memory, {gb * 1000:.0f} MB of JPEG bytes; {ROW_GROUP}-row groups; "
            f"{rounds} writes per variant, interleaved; medians; no fsync",
        ],
    )
    rows = [
        [
            name,
            f"{statistics.median(cpu[name]):.2f}",
            f"{min(cpu[name]):.2f}-{max(cpu[name]):.2f}",
            f"{statistics.median(cpu[name]) / gb:.2f}",
            f"{statistics.median(cpu[name]) / base - 1:+.0%}",
            f"{statistics.median(wall[name]):.2f}",
            f"{sizes[name] / 1e6:.0f}",
        ]
        for name in variants
    ]
    print_table(
        ["writer", "CPU s", "CPU range s", "CPU s/GB", "CPU vs builder settings", "wall s", "MB"], rows
    )


if __name__ == "__main__":
    main()
