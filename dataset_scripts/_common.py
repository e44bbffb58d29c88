"""What every recipe in ``dataset_scripts/`` shares: the options, the build loop, the push loop.

A recipe declares its subsets (one config each: which JSON files, which media roots) and calls
:func:`run`; building goes through :func:`llava_hf.build_folder` and pushing through
:func:`llava_hf.hub.push_to_hub`, so a recipe holds no data logic of its own.

Each subset is built into ``OUT/<config>/`` (a folder ``datasets.load_dataset`` opens) and, with
``--push REPO_ID``, published as config ``<config>`` of that repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BuildPlan", "Subset", "add_common_options", "make_parser", "pick_subsets", "run"]


@dataclass(frozen=True)
class Subset:
    """A subset of a published dataset: one config of the built dataset.

    ``files`` are relative to the recipe's ``--data-dir`` (the folder the user downloaded);
    ``image_subdir`` / ``video_subdir`` are relative to ``--image-folder`` / ``--video-folder``
    (``None``: the folder itself).
    """

    name: str
    files: tuple[str, ...]
    description: str
    image_subdir: str | None = None
    video_subdir: str | None = None


@dataclass(frozen=True)
class BuildPlan:
    """One config to build: the arguments of one :func:`llava_hf.build_folder` call."""

    config: str
    data_files: tuple[str, ...]
    image_folder: str | None = None
    video_folder: str | None = None
    allow_outside_root: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def make_parser(prog: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """An argparse parser whose ``--help`` ends with the examples."""
    return argparse.ArgumentParser(
        prog=prog,
        description=textwrap.dedent(description).strip(),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_common_options(parser: argparse.ArgumentParser, *, subsets: Sequence[Subset] = ()) -> None:
    """--output-dir, --subset, the build options and the push options."""
    parser.add_argument(
        "--output-dir",
        "-o",
        required=True,
        metavar="OUT",
        help="where to write the built dataset: one folder OUT/<config>/ per subset",
    )
    if subsets:
        listing = "; ".join(f"{s.name}: {s.description}" for s in subsets)
        parser.add_argument(
            "--subset",
            action="append",
            choices=[s.name for s in subsets],
            metavar="NAME",
            help=f"build only this subset (repeatable; default: every subset whose file is "
            f"present). Subsets: {listing}",
        )
    build = parser.add_argument_group("build")
    build.add_argument(
        "--num-proc", type=int, default=None, metavar="N", help="worker processes for the build"
    )
    build.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="stop at the first bad record (raise), or drop bad records, count them by code "
        "and list them in OUT/<config>/rejected.jsonl (skip)",
    )
    build.add_argument(
        "--strict",
        action="store_true",
        help="a record with media but no <image>/<video> tag is an error, not a fixed warning",
    )
    build.add_argument(
        "--max-shard-size", default="500MB", metavar="SIZE", help="Parquet shard size (default 500MB)"
    )
    build.add_argument(
        "--format",
        choices=["conversations", "messages"],
        default="conversations",
        help="output columns: LLaVA `conversations` (default) or TRL-style `messages`",
    )
    push = parser.add_argument_group("publish (optional)")
    push.add_argument(
        "--push",
        metavar="REPO_ID",
        help="after building, push every built subset to this Hub "
        "dataset repository, one config per subset (uses your HF token)",
    )
    push.add_argument(
        "--config-name",
        metavar="NAME",
        help="config name on the Hub when a single subset is built (default: the subset name)",
    )
    push.add_argument(
        "--private", action="store_true", help="create the repository as private if it does not exist"
    )


def pick_subsets(subsets: Sequence[Subset], chosen: Sequence[str] | None, data_dir: Path) -> list[Subset]:
    """The chosen subsets, or by default every subset whose files are all present under ``data_dir``."""
    from llava_hf.errors import UsageError

    if chosen:
        picked = [s for s in subsets if s.name in set(chosen)]
        for s in picked:
            missing = [f for f in s.files if not (data_dir / f).exists()]
            if missing:
                raise UsageError(
                    f"subset {s.name!r} needs {', '.join(missing)} under {data_dir}, which is missing",
                    hint="point --data-dir at the folder you downloaded, or pick another --subset",
                )
        return picked
    present = [s for s in subsets if all((data_dir / f).exists() for f in s.files)]
    if not present:
        expected = "; ".join(f"{s.name}: {', '.join(s.files)}" for s in subsets)
        raise UsageError(
            f"no subset found under {data_dir}; expected one of: {expected}",
            hint="point --data-dir at the folder you downloaded",
        )
    return present


def file_stem(path: str) -> str:
    """``a/b/train.jsonl.gz`` -> ``train``: a data file's name without its JSON/JSONL/gzip suffixes."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _join(root: str | None, sub: str | None) -> str | None:
    if root is None:
        return None
    return str(Path(root) / sub) if sub else root


def plan_for(
    subset: Subset,
    data_dir: Path,
    image_folder: str | None,
    video_folder: str | None,
    *,
    allow_outside_root: bool = False,
) -> BuildPlan:
    """The build of one subset: its files under ``data_dir``, its media roots under the given folders."""
    return BuildPlan(
        config=subset.name,
        data_files=tuple(str(data_dir / f) for f in subset.files),
        image_folder=_join(image_folder, subset.image_subdir),
        video_folder=_join(video_folder, subset.video_subdir),
        allow_outside_root=allow_outside_root,
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_all(plans: Sequence[BuildPlan], args: argparse.Namespace) -> dict[str, Path]:
    """Build every plan into ``OUT/<config>/`` with :func:`llava_hf.build_folder`."""
    import llava_hf

    out = Path(args.output_dir)
    built: dict[str, Path] = {}
    for plan in plans:
        target = out / plan.config
        _log(f"building {plan.config}: {', '.join(plan.data_files)} -> {target}")
        result = llava_hf.build_folder(
            list(plan.data_files),
            target,
            image_folder=plan.image_folder,
            video_folder=plan.video_folder,
            num_proc=args.num_proc,
            on_error=args.on_error,
            strict=args.strict,
            allow_outside_root=plan.allow_outside_root,
            max_shard_size=args.max_shard_size,
            format=args.format,
            **plan.extra,
        )
        _log(f"  {plan.config}: {_describe(result)}")
        built[plan.config] = target
    return built


def _describe(result: Any) -> str:
    rows = getattr(result, "num_rows", None)
    rejected = getattr(result, "rejected", None)
    parts = []
    if rows is not None:
        parts.append(f"{rows} rows")
    if rejected:
        total = sum(rejected.values()) if isinstance(rejected, dict) else rejected
        parts.append(f"{total} rejected ({rejected})")
    return ", ".join(parts) or "done"


def check_push(plans: Sequence[BuildPlan], args: argparse.Namespace) -> None:
    """Refuse push options that cannot work before anything is built."""
    from llava_hf.errors import UsageError

    if args.config_name and not args.push:
        raise UsageError("--config-name names the config on the Hub; it needs --push REPO_ID")
    if args.config_name and len(plans) > 1:
        raise UsageError(
            f"--config-name names one config, but {len(plans)} subsets would be built "
            f"({', '.join(p.config for p in plans)})",
            hint="drop --config-name (each subset is pushed under its own name) or pick one --subset",
        )


def push_all(built: dict[str, Path], args: argparse.Namespace) -> None:
    """Push each built folder as one config of ``args.push`` with :func:`llava_hf.hub.push_to_hub`."""
    from llava_hf.hub import push_to_hub

    for config, folder in built.items():
        name = args.config_name or config
        _log(f"pushing {folder} to {args.push} (config {name})")
        push_to_hub(folder, args.push, config_name=name, private=True if args.private else None)


def run(
    main: Callable[[argparse.Namespace], list[BuildPlan]],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv``, let the recipe turn the options into build plans, build them, push them.

    Exit codes as the ``llava-hf`` command: 0 success, 1 failure, 2 bad usage.
    """
    args = parser.parse_args(argv)
    from llava_hf.cli import cli_text  # the library names Python arguments; show the flags instead
    from llava_hf.errors import LlavaHFError, UsageError

    try:
        plans = main(args)
        check_push(plans, args)
        built = build_all(plans, args)
        if args.push:
            push_all(built, args)
    except LlavaHFError as err:
        if os.environ.get("LLAVA_HF_DEBUG", "").lower() in {"1", "true", "yes"}:
            raise
        code = getattr(err, "code", None)
        _log(f"{parser.prog}: error: {cli_text(str(err))}" + (f" [{code}]" if code else ""))
        if err.hint:
            _log(f"  hint: {cli_text(err.hint)}")
        return 2 if isinstance(err, UsageError) else 1
    for config, folder in built.items():
        _log(f"{config}: {folder}  (datasets.load_dataset({str(folder)!r}))")
    return 0
