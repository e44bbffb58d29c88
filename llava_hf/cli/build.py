"""``llava-hf build``: LLaVA JSON + media folders → Parquet shards in the Hub layout."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from ..errors import UsageError
from ..media.remote import redact_url
from ._common import add_command, add_media_options, check_folders

EXAMPLES = [
    "llava-hf build llava_instruct_150k.json --image-folder coco/train2017 --output-dir out/",
    "llava-hf build train=train.json validation=val.json --image-folder images/ --output-dir out/ --num-proc 2",
    "llava-hf build mix665k.json --image-folder data/ --on-error skip --output-dir out/   # bad records -> rejected.jsonl",
    "llava-hf build --mixture mix.yaml --seed 0 --output-dir out/",
    "llava-hf build data.json --format messages --output-dir out/      # TRL-ready messages + images",
    "llava-hf build data.json --image-folder images/ --output-dir out/ --engine ray --num-proc 8   # a local Ray",
    "RAY_ADDRESS=head:6379 llava-hf build data.json --image-folder /shared/images --output-dir /shared/out --engine ray",
    "python -c \"import datasets; print(datasets.load_dataset('out/'))\"   # no llava_hf needed to read it",
]

_SPLIT_RE = re.compile(r"^(?P<split>\w+(?:[.-]\w+)*)=(?P<file>.+)$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        subparsers,
        "build",
        help="build LLaVA JSON + media into Parquet shards that load_dataset reads",
        description="""
        Build LLaVA-format files (.json, .jsonl, .gz) and their image/video folders into
        OUT/data/{split}-NNNNN-of-NNNNN.parquet plus OUT/README.md (a card whose YAML declares the
        configs, data files and features), so that datasets.load_dataset(OUT) works with plain datasets,
        streaming or not. Media are stored as the original files' bytes with their relative paths.
        Every record is validated on the way (see 'llava-hf validate'); with --on-error skip, bad
        records are dropped, counted by code, and listed in OUT/rejected.jsonl. The folder appears only
        when the build succeeded.
        """,
        examples=EXAMPLES,
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="input files; NAME=FILE puts a file in split NAME (others go to --split)",
    )
    parser.add_argument(
        "--split", default="train", metavar="NAME", help="split of plain FILEs (default: train)"
    )
    parser.add_argument("--output-dir", "-o", required=True, metavar="OUT", help="the folder to write")
    add_media_options(parser)
    parser.add_argument("--num-proc", type=int, default=None, metavar="N", help="processes (default: 1)")
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="stop at the first bad record (default), or drop bad records and go on",
    )
    parser.add_argument(
        "--max-shard-size",
        default="500MB",
        metavar="SIZE",
        help="largest size of a Parquet file (default 500MB): a file takes records while their JSON "
        "text plus their media files stay within SIZE, so files come out close to it, not above it "
        "(further below when text is much of the data: it shrinks in Parquet); each file is one "
        "unit of --num-proc's parallel work",
    )
    parser.add_argument(
        "--format",
        choices=("conversations", "messages"),
        default="conversations",
        help="store LLaVA conversations (default) or TRL-ready messages + images",
    )
    parser.add_argument("--deep", action="store_true", help="decode every image fully while building")
    parser.add_argument(
        "--records-per-shard",
        type=int,
        default=None,
        metavar="N",
        help="at most N records per Parquet file (default: no limit, --max-shard-size decides); "
        "smaller files also mean more units of parallel work for --num-proc",
    )
    parser.add_argument(
        "--cdc",
        action="store_true",
        help="Parquet content-defined chunking + page index: cheaper Hub re-uploads of "
        "edited data (Xet dedup), more CPU to write",
    )
    parser.add_argument(
        "--mixture",
        metavar="MIX.yaml",
        help="a LLaVA-NeXT-style mixture YAML instead of FILEs (writes OUT/mixture.json)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of a mixture's random sampling (default 0)")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine's processes (default); ray: one Ray Data task per shard, same output "
        "(needs the [ray] extra)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: join this Ray cluster (default: RAY_ADDRESS, else start a local Ray "
        "with --num-proc CPUs); inputs and OUT must be on storage every node sees",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another llava-hf run is writing to OUT, wait for it to end (default: fail at once)",
    )
    parser.set_defaults(func=run)


def data_files_from_args(files: list[str], split: str) -> dict[str, list[str]]:
    """``["a.json", "validation=b.json"]`` → ``{"train": ["a.json"], "validation": ["b.json"]}``."""
    out: dict[str, list[str]] = {}
    for arg in files:
        m = _SPLIT_RE.match(arg)
        if m and not os.path.exists(arg):
            out.setdefault(m["split"], []).append(m["file"])
        else:
            out.setdefault(split, []).append(arg)
    for name, paths in out.items():
        for path in paths:
            if "://" not in path and not os.path.isfile(path):
                raise UsageError(f"input file {path!r} (split {name}) does not exist", hint="check the path")
    return out


def build_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options of build_folder shared by ``build`` and ``push``."""
    check_folders(args.image_folder, args.video_folder, args.audio_folder)
    if args.mixture and args.files:
        raise UsageError("give either FILEs or --mixture, not both")
    if not args.mixture and not args.files:
        raise UsageError("no input: give LLaVA JSON/JSONL FILEs or --mixture MIX.yaml")
    mixture = None
    if args.mixture:
        from ..mixture import load_mixture

        mixture = load_mixture(args.mixture, seed=args.seed)
    return {
        "data_files": (
            None
            if mixture
            else args.files[0]
            if args.dataset
            else data_files_from_args(args.files, args.split)
        ),
        "image_folder": args.image_folder,
        "video_folder": args.video_folder,
        "audio_folder": args.audio_folder,
        "allow_outside_root": args.allow_outside_root,
        "allow_remote_media": args.allow_remote_media,
        "max_remote_bytes": args.max_remote_bytes,
        "remote_timeout": args.remote_timeout,
        "strict": args.strict,
        "task": args.task,
        "on_error": args.on_error,
        "num_proc": args.num_proc,
        "max_shard_size": args.max_shard_size,
        "format": args.format,
        "deep": args.deep,
        "records_per_shard": args.records_per_shard,
        "content_defined_chunking": args.cdc,
        "page_index": args.cdc,
        "mixture": mixture,
        **dataset_kwargs(args),
    }


def dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--dataset NAME`` (repeated): FILE is a dataset_info.json; one name is built as the default
    config, several as one config each."""
    if not args.dataset:
        return {}
    if len(args.files) != 1:
        raise UsageError("--dataset reads one dataset_info.json", hint="give it as the only FILE")
    return {"dataset": args.dataset[0] if len(args.dataset) == 1 else list(args.dataset)}


def run(args: argparse.Namespace) -> int:
    from ..build.folder import build_folder

    kwargs = build_kwargs(args)
    data_files = kwargs.pop("data_files")
    if args.ray_address and args.engine != "ray":
        raise UsageError("--ray-address is for --engine ray", hint="add --engine ray")
    result = build_folder(
        data_files,
        args.output_dir,
        wait=args.wait,
        engine=args.engine,
        ray_address=args.ray_address,
        **kwargs,
    )
    total = sum(result.num_rows.values())
    splits = ", ".join(f"{split}: {n}" for split, n in result.num_rows.items())
    print(f"Built {redact_url(args.output_dir)}: {total} rows ({splits})")
    for split, files in result.files.items():
        where = os.path.dirname(_join(args.output_dir, files[0])) if files else args.output_dir
        print(f"  {split}: {len(files)} file(s) in {redact_url(where)}")
    if result.fetched:
        print(f"  fetched {result.fetched} remote media file(s), {result.fetched_bytes} bytes")
    if result.warnings:
        print("  warnings: " + ", ".join(f"{c}={n}" for c, n in sorted(result.warnings.items())))
    if result.rejected:
        print(
            f"  rejected {result.num_rejected} record(s), listed in "
            f"{redact_url(_join(args.output_dir, 'rejected.jsonl'))}:"
        )
        for code, n in sorted(result.rejected.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"    {code:<22} {n}")
    config = f", {next(iter(result.configs))!r}" if result.configs else ""
    print(f"Load it with: datasets.load_dataset({redact_url(args.output_dir)!r}{config})")
    sys.stdout.flush()
    return 0


def _join(output_dir: str, name: str) -> str:
    return f"{output_dir.rstrip('/')}/{name}" if "://" in output_dir else os.path.join(output_dir, name)
