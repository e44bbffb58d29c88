"""``llava-hf validate``: check every record before training starts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from ..errors import InputFileError, UsageError
from ..media.files import MediaRoots
from ..problems import ProblemCounter
from ..validate import Validator
from . import cli_text
from ._common import add_command, add_media_options, atomic_text_file, check_folders

EXAMPLES = [
    "llava-hf validate llava_v1_5_mix665k.json --image-folder data/",
    "llava-hf validate train.jsonl.gz --image-folder images/ --video-folder videos/ --report problems.jsonl",
    "llava-hf validate a.json b.json --deep --strict      # decode every image; untagged media is an error",
]

SHOWN = 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        subparsers,
        "validate",
        help="check every record of LLaVA-format files (exit 1 if any error)",
        description="""
        Check every record of one or more LLaVA-format files (.json, .jsonl, .gz; local or fsspec URLs):
        structure, roles and turn order, <image>/<video> tags against the media, duplicate ids, and that
        every media file exists inside its root and opens. It does not stop at the first error.
        Exit code: 0 when there is no error (warnings allowed), 1 when there is at least one, 2 on bad usage.
        """,
        examples=EXAMPLES,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="LLaVA JSON/JSONL files (one split)")
    add_media_options(parser)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="decode every image fully and the first frames of every video (catches truncated files)",
    )
    parser.add_argument(
        "--report",
        metavar="REPORT.jsonl",
        help="write one JSON line per problem: file, index, id, code, severity, message",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_folders(args.image_folder, args.video_folder, args.audio_folder)
    if args.report is not None and os.path.isdir(args.report):
        raise UsageError(
            f"--report {args.report!r} is a folder", hint="give a file name, e.g. problems.jsonl"
        )
    for file in args.files:  # a missing input is bad usage: say so before any work starts
        if "://" not in file and not os.path.exists(file):
            raise InputFileError(f"{file}: no such file", file=file, hint="check the path")
    entries = None
    if args.dataset:
        from ..records.dataset_info import by_file, read_dataset_info

        if len(args.files) != 1:
            raise UsageError("--dataset reads one dataset_info.json", hint="give it as the only FILE")
        found = read_dataset_info(args.files[0], args.dataset)
        args.files, entries = [e.file for e in found], by_file(found)
    validator = Validator(
        roots=MediaRoots(
            args.image_folder,
            args.video_folder,
            args.allow_outside_root,
            audio_folder=args.audio_folder,
            allow_remote_media=args.allow_remote_media,
            max_remote_bytes=args.max_remote_bytes,
            remote_timeout=args.remote_timeout,
        ),
        deep=args.deep,
        strict=args.strict,
        task=args.task,
        entries=entries,
    )
    counter = ProblemCounter()
    stats: Counter[str] = Counter()
    shown: list[str] = []
    from ..utils.logging import Progress
    from ..utils.meter import file_size
    from ..validate_parallel import validate_files

    sizes = [file_size(f) for f in args.files]
    total = None if None in sizes else sum(s or 0 for s in sizes)
    # the bar moves in bytes of the input: its total and ETA are known at once
    with atomic_text_file(args.report) as report, Progress("Validating", total) as progress:
        for step in validate_files(validator, args.files):
            if step.records:
                stats["records"] += step.records
                stats["images"] += step.images
                stats["videos"] += step.videos
                stats["text_only"] += step.text_only
                stats["turns"] += step.turns
                stats["audios"] += step.audios
                stats["fetched"] += step.fetched
                stats["fetched_bytes"] += step.fetched_bytes
            progress.update(step.position, records=max(0, step.done - progress.records))
            for problem in step.problems:
                counter.add(problem)
                message = cli_text(problem.message)  # the flags, not the Python arguments
                if report is not None:
                    report.write(
                        json.dumps({**problem.to_dict(), "message": message}, ensure_ascii=False) + "\n"
                    )
                if len(shown) < SHOWN:
                    shown.append(f"  [{problem.severity}] {problem.code}: {message}")
        progress.finish()
    _print_summary(sys.stdout, args.files, stats, counter, shown, args.report)
    return 1 if counter.errors else 0


def _print_summary(
    out: TextIO,
    files: list[str],
    stats: Counter[str],
    counter: ProblemCounter,
    shown: list[str],
    report: str | None,
) -> None:
    n_err, n_warn = sum(counter.errors.values()), sum(counter.warnings.values())
    names = ", ".join(Path(f).name for f in files)
    print(f"Validated {names}", file=out)
    print(
        f"  records: {stats['records']}   images: {stats['images']}   videos: {stats['videos']}   "
        + (f"audios: {stats['audios']}   " if stats["audios"] else "")
        + f"text-only: {stats['text_only']}   turns: {stats['turns']}",
        file=out,
    )
    if stats["fetched"]:
        print(f"  fetched {stats['fetched']} remote media file(s), {stats['fetched_bytes']} bytes", file=out)
    print(f"  errors: {n_err}   warnings: {n_warn}", file=out)
    for code, n in sorted({**counter.errors, **counter.warnings}.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {code:<22} {n}", file=out)
    if shown:
        total = n_err + n_warn
        print(f"First {len(shown)} of {total} problem(s):" if total > len(shown) else "Problems:", file=out)
        for line in shown:
            print(line, file=out)
    if report:
        print(f"Report: {report} ({n_err + n_warn} line(s))", file=out)
    print("OK: no errors." if not n_err else f"FAILED: {n_err} error(s).", file=out)
