"""Peak memory of reading / validating a big LLaVA JSON array: llava-hf's incremental reader vs json.load.

Contenders, each in a fresh process, on the same ~200 MB JSON array (``--small``: ~5 MB):

- ``json.load``: what trainers do today (``json.load`` the whole file, then walk the records);
- ``iter_records``: ``llava_hf.records.iter_records(path)``, the incremental reader (every record
  read and normalized to the record model);
- ``validate (no media)``: ``llava_hf.validate.Validator(check_media=False).iter_checked([path])``, every
  structural rule, as ``llava-hf validate`` runs them, without touching media files.

Target (issue 2): the reader well under 300 MB of RSS for a 200 MB array. RSS includes the interpreter
and the imports (``llava_hf`` imports datasets and pyarrow); the "growth" column is the peak minus the
RSS after imports.

Usage: ``python benchmarks/bench_reader_memory.py [--small] [--workdir DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    base_parser,
    default_workdir,
    machine_facts,
    print_facts,
    print_table,
    report_work,
    run_contender,
    warm_page_cache,
)

FULL_BYTES = 200 * 1000 * 1000
SMALL_BYTES = 5 * 1000 * 1000
CONTENDERS = ("json.load", "iter_records", "validate (no media)")


def _work(name: str, path: Path) -> None:
    if name == "json.load":
        import json

        def work() -> dict[str, Any]:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            turns = sum(len(r["conversations"]) for r in data)
            return {"records": len(data), "turns": turns}

    elif name == "iter_records":
        from llava_hf.records import iter_records

        def work() -> dict[str, Any]:
            n = turns = 0
            for record, _problems in iter_records(str(path)):
                n += 1
                turns += len(record.conversations) if record is not None else 0
            return {"records": n, "turns": turns}

    elif name == "validate (no media)":
        from llava_hf.validate import Validator

        def work() -> dict[str, Any]:
            n = turns = problems = 0
            for checked in Validator(check_media=False).iter_checked([str(path)]):
                n += 1
                problems += len(checked.problems)
                turns += len(checked.record.conversations) if checked.record is not None else 0
            return {"records": n, "turns": turns, "problems": problems}

    else:
        raise SystemExit(f"unknown contender {name!r}")
    report_work(work)


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    workdir = args.workdir or default_workdir(args.small)
    path = workdir / "reader" / "big.json"
    if args.contender:
        _work(args.contender, path)
        return

    from corpus import make_big_json

    stats = make_big_json(path, SMALL_BYTES if args.small else FULL_BYTES)
    warm_page_cache([path])
    results = [run_contender(__file__, name, ["--workdir", str(workdir)]) for name in CONTENDERS]
    records = {r.extra["records"] for r in results}
    if len(records) != 1:
        raise SystemExit(f"contenders disagree on the number of records: {records}")

    size_mb = stats["bytes"] / 1e6
    print_facts(
        "Reader memory",
        machine_facts(workdir),
        [
            f"input: one JSON array, {size_mb:.0f} MB, {stats['records']:,} records (text-heavy LLaVA records)",
            "each contender in a fresh process; RSS = ru_maxrss; growth = peak - RSS after imports",
        ],
    )
    base = results[0]
    rows = [
        [
            r.name,
            f"{r.peak_rss_mb:.0f}",
            f"{r.peak_rss_mb - r.rss_before_mb:.0f}",
            f"{r.peak_rss_mb / size_mb:.2f}",
            f"{r.peak_rss_mb / base.peak_rss_mb:.2f}",
            f"{r.wall_s:.1f}",
            f"{r.cpu_s:.1f}",
            f"{r.extra['records'] / r.wall_s:,.0f}",
        ]
        for r in results
    ]
    print_table(
        [
            "contender",
            "peak RSS MB",
            "growth MB",
            "RSS / file size",
            "RSS vs json.load",
            "wall s",
            "CPU s",
            "records/s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
