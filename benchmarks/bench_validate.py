"""Validate speed: ``llava-hf validate`` against the existence-only pass of training scripts (issue 23).

Two corpora of small JPEGs (32x32, about 1 KB each; made once and cached under ``--workdir``):

- ``200k``: 200,000 records, 180,000 of them with one image each, 180,000 distinct files;
- ``665k``: 665,000 records, 598,438 image references to 20,000 files (each file named ~30 times, in
  shuffled order, as LLaVA-665K-like mixtures reuse COCO images).

The records are those of ``corpus.py`` (1-4 Q/A pairs, an ``<image>`` tag per image in the first
human turn, a few integer ids), in the 5 LLaVA-like subfolders. The files are a few encoded JPEGs
written with a distinct comment (COM) segment each: valid, distinct files, written quickly.

Contenders, each a command run in a fresh process as a user runs it (interpreter start-up and
imports included), interleaved over ``--repeat`` rounds (a new order each round), the corpus read
right before each one (warm page cache):

- ``(a) existence-only``: what training scripts check before they start (Qwen-VL's ``check_image``):
  ``json.load``, ``os.path.exists`` per image reference, and a count of ``<image>`` tags per record
  against its images;
- ``(b) llava-hf validate``: ``llava-hf validate FILE --image-folder DIR``, the CLI.

With ``--deep``, instead: ``llava-hf validate --deep`` against decoding the same files with Pillow
alone (``json.load``, then ``Image.open(path).load()`` once per distinct file, in 1 and in 2 processes).

Reported per contender: wall time (median and range), CPU time (user + system, the command and its
children), its user and system parts, the command's peak RSS (``ru_maxrss`` of its largest process),
and the ratios to (a): of the medians, and the median of each round's ratio. Every run is checked:
(b) must count every record and image reference with no error, (a) must find every file and tag.

Usage: ``python benchmarks/bench_validate.py [--small] [--corpus 200k|665k|both] [--repeat R]
[--workdir DIR] [--deep]``
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
    summarize,
    warm_page_cache,
)


@dataclass(frozen=True)
class Spec:
    records: int
    references: int  # records with an image (one each)
    files: int  # distinct image files the references name


CORPORA = {
    "200k": Spec(200_000, 180_000, 180_000),
    "665k": Spec(665_000, 598_438, 20_000),
}
SMALL_DIVISOR = 100  # --small: the same shapes, 100 times smaller
IMAGE_SIZE = (32, 32)
BASES = 16  # distinct encoded JPEGs; every file is one of them with its own comment segment
CHUNK = 25_000  # records (or files) per generation task

EXISTS = "(a) existence-only: json.load + os.path.exists + <image> count"
VALIDATE = "(b) llava-hf validate"
DEEP = "llava-hf validate --deep"
PILLOW_1 = "(p1) Pillow decode, 1 process"
PILLOW_2 = "(p2) Pillow decode, 2 processes"

_SUMMARY_COUNTS = re.compile(r"records: (\d+)\s+images: (\d+)")
_SUMMARY_PROBLEMS = re.compile(r"errors: (\d+)\s+warnings: (\d+)")


# ------------------------------------------------------------------------------------------- corpus


def _small_spec(spec: Spec) -> Spec:
    return Spec(*(max(1, n // SMALL_DIVISOR) for n in (spec.records, spec.references, spec.files)))


def _file_name(k: int) -> str:
    from corpus import SUBFOLDERS

    return f"{SUBFOLDERS[k % len(SUBFOLDERS)]}/{k:012d}.jpg"


def _bases() -> list[bytes]:
    from corpus import photo_jpeg

    return [photo_jpeg(7_000 + i, IMAGE_SIZE, 85) for i in range(BASES)]


def _write_files(args: tuple[str, int, int]) -> int:
    """Write files ``start..stop-1``: a base JPEG with a comment segment naming the file (distinct bytes)."""
    root, start, stop = args
    bases = _bases()
    written = 0
    for k in range(start, stop):
        base = bases[k % BASES]
        text = f"llava-hf bench image {k:012d}".encode()
        data = base[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + base[2:]  # SOI, COM, rest
        target = os.path.join(root, _file_name(k))
        with open(target, "wb") as f:
            written += f.write(data)
    return written


def _json_chunk(args: tuple[int, int, list[str | None]]) -> str:
    """The JSON text of records ``start..``, joined by ``,\\n`` (each record has its own random stream)."""
    import numpy as np
    from corpus import _record

    seed, start, images = args
    rng = np.random.default_rng([seed, start])
    return ",\n".join(
        json.dumps(_record(start + j, rng, [] if p is None else [p], (8, 40)), indent=1)
        for j, p in enumerate(images)
    )


def make_validate_corpus(root: Path, spec: Spec, *, seed: int = 0) -> dict[str, Any]:
    """Write ``root/data.json`` and ``root/images/`` for ``spec`` (reused when already there)."""
    import numpy as np
    from corpus import SUBFOLDERS

    stamp = root / "corpus-stats.json"
    want = {"records": spec.records, "references": spec.references, "files": spec.files, "seed": seed}
    if stamp.exists():
        stats = json.loads(stamp.read_text())
        if all(stats.get(k) == v for k, v in want.items()):
            return dict(stats)
    print(
        f"generating {root} ({spec.records:,} records, {spec.files:,} files) ...", file=sys.stderr, flush=True
    )
    rng = np.random.default_rng(seed)
    with_image = np.zeros(spec.records, dtype=bool)
    with_image[rng.choice(spec.records, size=spec.references, replace=False)] = True
    file_of_ref = np.arange(spec.references) % spec.files  # every file named, ~references/files times
    rng.shuffle(file_of_ref)
    images: list[str | None] = [None] * spec.records
    for i, k in zip(np.flatnonzero(with_image).tolist(), file_of_ref.tolist()):
        images[i] = _file_name(k)

    image_root = root / "images"
    for folder in SUBFOLDERS:
        (image_root / folder).mkdir(parents=True, exist_ok=True)
    file_jobs = [(str(image_root), a, min(a + CHUNK, spec.files)) for a in range(0, spec.files, CHUNK)]
    json_jobs = [(seed, a, images[a : a + CHUNK]) for a in range(0, spec.records, CHUNK)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        image_bytes = sum(pool.map(_write_files, file_jobs))
        with open(root / "data.json", "w") as f:
            f.write("[\n")
            for n, text in enumerate(pool.map(_json_chunk, json_jobs)):
                f.write(("" if n == 0 else ",\n") + text)
            f.write("\n]\n")
    stats = {
        **want,
        "image_bytes": image_bytes,
        "json_bytes": (root / "data.json").stat().st_size,
    }
    stamp.write_text(json.dumps(stats, indent=1))
    return stats


# --------------------------------------------------------------------------------------- contenders


def _cli() -> list[str]:
    """The ``llava-hf`` console script of this interpreter (not a pyenv shim, whose bash start-up is noise)."""
    script = Path(sys.executable).parent / "llava-hf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "llava_hf.cli"]


def _command(name: str, json_file: str, image_folder: str) -> list[str]:
    me = [sys.executable, str(Path(__file__).resolve().parent / "_validate_passes.py")]
    return {
        EXISTS: [*me, "exists", json_file, image_folder],
        VALIDATE: [*_cli(), "validate", json_file, "--image-folder", image_folder],
        DEEP: [*_cli(), "validate", "--deep", json_file, "--image-folder", image_folder],
        PILLOW_1: [*me, "pillow1", json_file, image_folder],
        PILLOW_2: [*me, "pillow2", json_file, image_folder],
    }[name]


def _run(name: str, json_file: str, image_folder: str) -> dict[str, Any]:
    """Run the contender's command; its counts, from its output."""
    cmd = _command(name, json_file, image_folder)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if name in (VALIDATE, DEEP):
        counts, problems = _SUMMARY_COUNTS.search(proc.stdout), _SUMMARY_PROBLEMS.search(proc.stdout)
        if counts is None or problems is None:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"{name}: no summary in the output of {' '.join(cmd)} (exit {proc.returncode})")
        return {
            "exit": proc.returncode,
            "records": int(counts[1]),
            "images": int(counts[2]),
            "errors": int(problems[1]),
            "warnings": int(problems[2]),
        }
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{name}: exit {proc.returncode}: {' '.join(cmd)}")
    return {"exit": 0, **json.loads(proc.stdout.strip().splitlines()[-1])}


def _check(name: str, extra: dict[str, Any], spec: Spec) -> None:
    """Every run must see the whole corpus and find nothing wrong, or its time means nothing."""
    bad = []
    if extra.get("records") != spec.records:
        bad.append(f"records {extra.get('records')} (expected {spec.records})")
    if name in (EXISTS, VALIDATE, DEEP) and extra.get("images") != spec.references:
        bad.append(f"image references {extra.get('images')} (expected {spec.references})")
    if name in (PILLOW_1, PILLOW_2) and extra.get("files") != spec.files:
        bad.append(f"files {extra.get('files')} (expected {spec.files})")
    for key in ("errors", "missing", "tag_mismatches", "failed"):
        if extra.get(key):
            bad.append(f"{key}: {extra[key]}")
    if extra.get("exit"):
        bad.append(f"exit {extra['exit']}")
    if bad:
        raise SystemExit(f"{name}: {'; '.join(bad)}")


# ------------------------------------------------------------------------------------------- report


def _per_round(runs: list[Result], base: list[Result], attr: str) -> str:
    """The median and range of each round's ratio to the baseline (round k of each, run close in time)."""
    ratios = [getattr(r, attr) / getattr(b, attr) for r, b in zip(runs, base)]
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _table(runs: dict[str, list[Result]], base_name: str) -> None:
    results = {name: summarize(rs) for name, rs in runs.items()}
    base = results[base_name]
    rows = []
    for name, r in results.items():
        several = r.extra["runs"] > 1
        wall_range = f"{r.extra['wall_min']:.2f}-{r.extra['wall_max']:.2f}" if several else "-"
        cpu_range = f"{r.extra['cpu_min']:.2f}-{r.extra['cpu_max']:.2f}" if several else "-"
        rows.append(
            [
                name,
                f"{r.wall_s:.2f}",
                wall_range,
                f"{r.cpu_s:.2f}",
                cpu_range,
                f"{r.user_s:.2f}",
                f"{r.cpu_s - r.user_s:.2f}",
                f"{r.peak_rss_children_mb:.0f}",
                f"{r.wall_s / base.wall_s:.2f}",
                _per_round(runs[name], runs[base_name], "wall_s"),
                f"{r.cpu_s / base.cpu_s:.2f}",
            ]
        )
    print_table(
        [
            "contender",
            "wall s",
            "wall range s",
            "CPU s",
            "CPU range s",
            "user s",
            "system s",
            "peak RSS MB",
            "wall vs base",
            "wall vs base, per round",
            "CPU vs base",
        ],
        rows,
    )


def _rounds(contenders: list[str], repeat: int) -> Iterator[list[str]]:
    """Round 0 in the given order, then a new order each round (a contender pays for what the one before
    it left: page cache freed, memory the VM takes back; a fixed order would bias every row alike)."""
    for k in range(repeat):
        yield contenders[:] if k == 0 else random.Random(k).sample(contenders, len(contenders))


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(repeat=3)
    parser.add_argument(
        "--corpus", choices=[*CORPORA, "both"], default="both", help="which corpus to run (default both)"
    )
    parser.add_argument(
        "--deep", action="store_true", help="llava-hf validate --deep against Pillow decoding the same files"
    )
    parser.add_argument("--json", help=argparse_suppress())
    parser.add_argument("--image-folder", help=argparse_suppress())
    args = parser.parse_args()

    if args.contender:
        report_work(lambda: _run(args.contender, args.json, args.image_folder))
        return

    workdir = args.workdir or default_workdir(args.small)
    names = list(CORPORA) if args.corpus == "both" else [args.corpus]
    contenders = [PILLOW_2, PILLOW_1, DEEP] if args.deep else [EXISTS, VALIDATE]
    base_name = contenders[0]
    for corpus_name in names:
        spec = _small_spec(CORPORA[corpus_name]) if args.small else CORPORA[corpus_name]
        root = workdir / f"validate-{corpus_name}"
        stats = make_validate_corpus(root, spec)
        json_file, image_folder = str(root / "data.json"), str(root / "images")
        runs: dict[str, list[Result]] = {name: [] for name in contenders}
        for order in _rounds(contenders, args.repeat):
            for name in order:
                warm_page_cache([root / "data.json", root / "images"])
                r = run_contender(
                    __file__,
                    name,
                    ["--workdir", str(workdir), "--json", json_file, "--image-folder", image_folder],
                )
                _check(name, r.extra, spec)
                runs[name].append(r)
        print_facts(
            f"Validate{' --deep' if args.deep else ''}: corpus {corpus_name}",
            machine_facts(workdir),
            [
                f"corpus: {spec.records:,} records, {spec.references:,} image references to {spec.files:,} "
                f"distinct {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEGs ({stats['image_bytes'] / 1e6:.0f} MB), "
                f"JSON {stats['json_bytes'] / 1e6:.0f} MB, at {root}",
                "each contender a command in a fresh process (start-up and imports included), the corpus "
                "read right before each (warm page cache)",
                f"{args.repeat} run(s) per contender, interleaved (a new order each round); medians shown, "
                "'wall range' = min-max; peak RSS: the command's largest process (ru_maxrss)",
                f"base: {base_name}; 'per round': the median (range) of each round's ratio",
            ],
        )
        _table(runs, base_name)


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
