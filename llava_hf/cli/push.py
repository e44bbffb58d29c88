"""``llava-hf push``: publish a built folder (or LLaVA JSON, built on the way) to the Hub in one commit."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._common import add_command, add_media_options, check_folders

if TYPE_CHECKING:
    from ..hub.push import PushResult

EXAMPLES = [
    "llava-hf push out/ my-org/my-llava-data                        # a folder from `llava-hf build`",
    "llava-hf push out/ my-org/my-llava-data --tag v1.0 --license apache-2.0",
    "llava-hf push coco_out/ my-org/my-llava-data --config-name coco  # add a config next to the others",
    "llava-hf push out/ my-org/my-llava-data --revision dev          # push to branch dev (created if missing)",
    "llava-hf push out/ my-org/my-llava-data --create-pr --message 'Fix captions'",
    "llava-hf push data.json my-org/my-llava-data --image-folder images/ --private   # build, then push",
    "llava-hf push --mixture mix.yaml --seed 0 my-org/my-mix                  # resolve, build, push",
    "python -c \"import datasets; print(datasets.load_dataset('my-org/my-llava-data', revision='v1.0'))\"",
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        subparsers,
        "push",
        help="publish a built folder to the Hub: Parquet shards + dataset card in one commit",
        description="""
        Publish SOURCE to the dataset repository REPO_ID (created if missing) in ONE commit: the Parquet
        shards, the dataset card (README.md, merged with the card already there) and a preview image.
        SOURCE is a folder written by `llava-hf build`, or LLaVA JSON file(s), which are built first.
        Unchanged shards are not uploaded again; an interrupted push leaves the branch as it was and
        re-running it uploads only what is missing. Anyone can then read the data with plain datasets:
        load_dataset("REPO_ID", revision="TAG").
        The token comes from HF_TOKEN or `hf auth login` (never from the command line).
        Exit code: 0 pushed (or nothing changed), 1 refused (existing tag, conflict, auth), 2 bad usage.
        """,
        examples=EXAMPLES,
    )
    parser.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="a built output folder, or LLaVA JSON/JSONL file(s)"
    )
    parser.add_argument("repo_id", metavar="REPO_ID", help="the dataset repository, namespace/name")
    parser.add_argument(
        "--config-name",
        default="default",
        metavar="NAME",
        help="publish as this config (default: 'default', under data/; others under NAME/)",
    )
    parser.add_argument(
        "--revision",
        default="main",
        metavar="BRANCH",
        help="branch to push to, created if missing (default: main)",
    )
    parser.add_argument(
        "--tag", metavar="TAG", help="tag the new commit (e.g. v1.0); refused if the tag already exists"
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument(
        "--message", metavar="MSG", help="commit title (default: 'Upload CONFIG with llava-hf')"
    )
    parser.add_argument(
        "--license", metavar="ID", help="license id for the card (apache-2.0, cc-by-4.0, ...)"
    )
    parser.add_argument(
        "--max-shard-size",
        default="500MB",
        metavar="SIZE",
        help="re-shard only if a shard is larger than this (default: 500MB)",
    )
    add_media_options(parser)
    parser.add_argument(
        "--mixture",
        metavar="MIX.yaml",
        help="build this LLaVA-NeXT-style mixture YAML (instead of SOURCE) and push it",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the mixture's random sampling (default 0)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.mixture:
        if args.sources:
            raise UsageError("give either SOURCE or --mixture, not both")
        return _push_mixture(args)
    if not args.sources:
        raise UsageError(
            "no SOURCE given", hint="llava-hf push OUT/ org/name, or --mixture MIX.yaml org/name"
        )
    from ..hub.retries import check_online
    from ..hub.shards import build_to_temp, check_local_sources

    check_local_sources(args.sources)
    check_online(f"pushing to {args.repo_id}", args.repo_id)  # before building anything
    sources = [Path(s) for s in args.sources]
    is_folder = len(sources) == 1 and sources[0].is_dir()
    media_options = (
        args.image_folder
        or args.video_folder
        or args.audio_folder
        or args.allow_outside_root
        or args.strict
        or args.allow_remote_media
    )
    if is_folder and media_options:
        raise UsageError(
            f"{sources[0]} is a built folder: --image-folder/--video-folder/--audio-folder/--strict only apply to JSON sources",
            hint="drop those options, or pass the JSON file(s) to build and push them",
        )
    check_folders(args.image_folder, args.video_folder, args.audio_folder)
    with ExitStack() as stack:
        source: Path | list[Path] = sources[0] if is_folder else sources
        if not is_folder and media_options:
            source = build_to_temp(sources, stack, **_build_options(args))
        result = _push(args, source)
    print(_summary(result))
    return 0


def _push_mixture(args: argparse.Namespace) -> int:
    """Resolve the mixture with the seed, build it into a temporary folder, push that folder."""
    from ..hub.retries import check_online
    from ..hub.shards import build_to_temp
    from ..mixture import load_mixture

    check_folders(args.image_folder, args.video_folder, args.audio_folder)
    check_online(f"pushing to {args.repo_id}", args.repo_id)  # before building anything
    mixture = load_mixture(args.mixture, seed=args.seed)
    with ExitStack() as stack:
        result = _push(args, build_to_temp(None, stack, mixture=mixture, **_build_options(args)))
    print(_summary(result))
    return 0


def _build_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "image_folder": args.image_folder,
        "video_folder": args.video_folder,
        "audio_folder": args.audio_folder,
        "allow_outside_root": args.allow_outside_root,
        "strict": args.strict,
        "max_shard_size": args.max_shard_size,
        "allow_remote_media": args.allow_remote_media,
        "max_remote_bytes": args.max_remote_bytes,
        "remote_timeout": args.remote_timeout,
    }


def _push(args: argparse.Namespace, source: Path | list[Path]) -> PushResult:
    from ..hub.push import push_to_hub

    return push_to_hub(
        source,
        args.repo_id,
        config_name=args.config_name,
        revision=args.revision,
        tag=args.tag,
        private=True if args.private else None,
        create_pr=args.create_pr,
        commit_message=args.message,
        license=args.license,
        max_shard_size=args.max_shard_size,
    )


def _summary(result: PushResult) -> str:
    where = f"{result.repo_id}@{result.revision}"
    if result.pr_url:
        head = f"Opened a pull request on {where}: {result.pr_url}"
    elif result.created_commit:
        names = ", ".join(repr(name) for name in result.configs or (result.config_name,))
        head = f"Pushed config{'s' if len(result.configs) > 1 else ''} {names} to {where} (commit {result.commit_sha[:10]})"
    else:
        head = f"Nothing changed in {where} (still at {result.commit_sha[:10]}): nothing uploaded"
    lines = [
        head,
        f"  {len(result.uploaded)} file(s) uploaded, {len(result.unchanged)} unchanged, {len(result.deleted)} deleted",
    ]
    if result.tag:
        lines.append(f"  tagged {result.tag}")
    rev = result.tag or (None if result.revision == "main" else result.revision)
    name = "" if result.config_name == "default" else f", {result.config_name!r}"
    rev_arg = f", revision={rev!r}" if rev else ""
    lines.append(f"  load it with: datasets.load_dataset({result.repo_id!r}{name}{rev_arg})")
    return "\n".join(lines)
