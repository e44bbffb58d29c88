"""Why a build writes one Parquet data page per image: the kernel's cost of writing by write size.

Each contender, in a fresh process, writes the same bytes (default 2.26 GB, the build corpus's image
bytes; ``--small``: 64 MB) from one hot 1 MB buffer into a new file with ``os.write`` calls of a fixed
size, then ``fsync``s it inside the timed phase; the file is deleted afterwards. Only the write size
differs, so the CPU time is the kernel's (copying into the page cache, writeback) by write size.

A build's Parquet writer issues one ``write`` per data page (plus a small one for its header). On the
Firecracker VMs measured here, writes of 512 KB-2 MB cost the kernel several times what 64-160 KB (or
768 KB, 1.5 MB) writes cost, and varied run to run: nearly all of it is the copy into freshly allocated
page-cache folios, whose size follows the write's size and alignment. With Arrow's default ~1 MB pages
the kernel's part of a build was about twice the plain copy's; with a page per image (~90-160 KB) it is
close to it. See benchmarks/README.md.

Usage: ``python benchmarks/bench_write_size.py [--small] [--gb N] [--repeat R]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Result,
    base_parser,
    default_workdir,
    machine_facts,
    print_facts,
    print_table,
    report_work,
    run_contender,
    spread,
    summarize,
)

FULL_BYTES = 2_260_000_000
SMALL_BYTES = 64 << 20
SIZES_KB = (16, 64, 160, 512, 768, 1024, 1536, 2048, 4096)
BASELINE_KB = 64


def _write(path: Path, total: int, chunk: int) -> dict[str, Any]:
    window = max(chunk, 1 << 20)
    source = memoryview(os.urandom(window) * 2)  # any slice of `window` bytes from its first half
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = start = 0
        while written < total:
            n = os.write(fd, source[start : start + min(chunk, total - written)])
            written += n
            start = (start + n) % window
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"bytes": written}


def _name(kb: int) -> str:
    return f"write({kb} KB)" if kb < 1024 else f"write({kb / 1024:g} MB)"


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=None, help="GB written per contender (default 2.26)")
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = int(args.gb * 1e9) if args.gb else SMALL_BYTES if args.small else FULL_BYTES
    workdir = args.workdir or default_workdir(args.small)
    if args.contender:
        kb = int(args.contender)
        try:
            report_work(lambda: _write(args.out, total, kb << 10))
        finally:
            args.out.unlink(missing_ok=True)
        return

    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "write-size.bin"
    runs: dict[int, list[Result]] = {kb: [] for kb in SIZES_KB}
    for _ in range(args.repeat):  # interleaved, so a slow spell of a shared machine hits every size
        for kb in SIZES_KB:
            extra = ["--out", str(target), "--gb", str(total / 1e9)] + (["--small"] if args.small else [])
            r = run_contender(__file__, str(kb), extra)
            runs[kb].append(r)
    results = {kb: summarize(rs) for kb, rs in runs.items()}
    base = results[BASELINE_KB]
    print_facts(
        "Write size",
        machine_facts(workdir),
        [
            f"{total / 1e9:.2f} GB per contender from a hot buffer, fsync'ed inside the timed phase",
            f"{args.repeat} run(s) per write size, interleaved; medians shown",
        ],
    )
    rows = []
    for kb, r in results.items():
        system = r.cpu_s - r.user_s
        rows.append(
            [
                _name(kb),
                f"{r.wall_s:.2f}",
                spread(r),
                f"{r.cpu_s:.2f}",
                f"{system:.2f}",
                f"{total / 1e6 / r.wall_s:.0f}",
                f"{r.cpu_s / base.cpu_s:.2f}",
            ]
        )
    print_table(
        ["contender", "wall s", "wall range s", "CPU s", "system CPU s", "MB/s", f"CPU vs {BASELINE_KB} KB"],
        rows,
    )


if __name__ == "__main__":
    main()
