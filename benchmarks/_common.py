"""Shared harness of the benchmark scripts: run contenders in subprocesses, measure, print tables.

Every contender runs in its own fresh Python process, so its peak RSS is its own (``ru_maxrss``). The
child measures only its work phase (after its imports): wall time, and CPU time (user + system) of the
process and of every child process it waited for (``RUSAGE_SELF`` + ``RUSAGE_CHILDREN``). It reports
one JSON line on stdout, which the parent collects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "@@BENCH@@ "
MB = 1024 * 1024


@dataclass
class Result:
    name: str
    wall_s: float
    cpu_s: float  # user + system, this process and its waited-for children, work phase only
    peak_rss_mb: float  # ru_maxrss of the contender's main process
    peak_rss_children_mb: float  # largest ru_maxrss among its child processes (0 when none)
    rss_before_mb: float  # RSS after imports, before the work
    extra: dict[str, Any] = field(default_factory=dict)
    user_s: float = 0.0  # the user part of cpu_s (the kernel's part varies most on a shared VM)


def summarize(runs: Sequence[Result]) -> Result:
    """One row from repeated runs of a contender: median wall and CPU time, the largest RSS."""
    wall = [r.wall_s for r in runs]
    return Result(
        name=runs[0].name,
        wall_s=statistics.median(wall),
        cpu_s=statistics.median(r.cpu_s for r in runs),
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        peak_rss_children_mb=max(r.peak_rss_children_mb for r in runs),
        rss_before_mb=statistics.median(r.rss_before_mb for r in runs),
        extra={
            **runs[0].extra,
            "runs": len(runs),
            "wall_min": min(wall),
            "wall_max": max(wall),
            "cpu_min": min(r.cpu_s for r in runs),
            "cpu_max": max(r.cpu_s for r in runs),
        },
        user_s=statistics.median(r.user_s for r in runs),
    )


def spread(r: Result) -> str:
    """The range of wall times behind a summarized row, e.g. ``31-36``."""
    if r.extra.get("runs", 1) < 2:
        return "-"
    return f"{r.extra['wall_min']:.1f}-{r.extra['wall_max']:.1f}"


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def report_work(work: Callable[[], dict[str, Any] | None]) -> None:
    """Run ``work`` in this (child) process and print its measurements as one JSON line."""
    rss_before = _rss_now_mb()
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    extra = work() or {}
    wall = time.perf_counter() - t0
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (_cpu(self1) - _cpu(self0)) + (_cpu(kids1) - _cpu(kids0))
    user = (self1.ru_utime - self0.ru_utime) + (kids1.ru_utime - kids0.ru_utime)
    # A contender may time only part of its work (e.g. pure decoding, not the reads that feed it).
    wall = extra.pop("timed_wall_s", wall)
    cpu = extra.pop("timed_cpu_s", cpu)
    out = {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": self1.ru_maxrss / 1024,  # Linux: KiB
        "peak_rss_children_mb": kids1.ru_maxrss / 1024,
        "rss_before_mb": rss_before,
        "extra": extra,
        "user_s": extra.pop("timed_user_s", user),
    }
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(out), flush=True)


def run_contender(script: str, name: str, args: Sequence[str], *, timeout: float | None = None) -> Result:
    """Run ``python script --contender name args...`` and collect what :func:`report_work` printed."""
    cmd = [sys.executable, script, "--contender", name, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"contender {name!r} failed (exit {proc.returncode}): {' '.join(cmd)}")
    data = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return Result(name=name, **data)


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` (or ``path`` itself) and its directories to disk."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    dirs = {p.parent for p in files} | ({path} if path.is_dir() else set())
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def warm_page_cache(paths: Sequence[Path]) -> int:
    """Read files once so every contender starts with the same (warm) page cache. Returns bytes read."""
    total = 0
    for root in paths:
        for p in [root] if root.is_file() else sorted(root.rglob("*")):
            if p.is_file():
                with open(p, "rb") as f:
                    while chunk := f.read(8 * MB):
                        total += len(chunk)
    return total


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def machine_facts(disk_path: Path | None = None) -> list[tuple[str, str]]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    facts = [
        ("CPU", f"{model}, {os.cpu_count()} cores"),
        ("RAM", ram),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        (
            "versions",
            ", ".join(
                f"{d} {_version(d)}"
                for d in (
                    "llava-hf",
                    "datasets",
                    "pyarrow",
                    "Pillow",
                    "numpy",
                    "huggingface_hub",
                    "torchcodec",
                )
            ),
        ),
    ]
    load = os.getloadavg()
    facts.append(
        ("load average at report time", f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    )
    if disk_path is not None:
        usage = shutil.disk_usage(disk_path)
        facts.append(("disk", f"{disk_path}: {usage.free / 1e9:.0f} GB free of {usage.total / 1e9:.0f} GB"))
    return facts


def print_facts(title: str, facts: list[tuple[str, str]], notes: Sequence[str] = ()) -> None:
    print(f"\n### {title}\n")
    for key, value in facts:
        print(f"- {key}: {value}")
    for note in notes:
        print(f"- {note}")
    print()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    print(flush=True)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="a run of a few seconds (smoke check)")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every contender N times, interleaved, and report medians (the README runs use 3)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where corpora and outputs go (default: /tmp/llava-hf-bench[-small]); reused between runs",
    )
    return parser


def default_workdir(small: bool) -> Path:
    return Path("/tmp/llava-hf-bench-small" if small else "/tmp/llava-hf-bench")


def corpus_location(args: argparse.Namespace, full: int, small: int) -> tuple[Path, int, Path]:
    """``(workdir, samples, corpus folder)`` of a run; every script shares the corpus of a size."""
    workdir = args.workdir or default_workdir(args.small)
    samples = args.samples or (small if args.small else full)
    return workdir, samples, workdir / ("corpus" if samples == full else f"corpus-{samples}")
