"""Helpers shared by the command modules: formatting of examples and common options."""

from __future__ import annotations

import argparse
import textwrap


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: list[str],
) -> argparse.ArgumentParser:
    """Add a sub-command whose ``--help`` ends with an Examples section."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return subparsers.add_parser(
        name,
        help=help,
        description=textwrap.dedent(description).strip(),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_media_options(parser: argparse.ArgumentParser) -> None:
    """--image-folder, --video-folder, --audio-folder, --allow-outside-root, --strict: shared by validate and build."""
    parser.add_argument(
        "--image-folder",
        metavar="DIR",
        help="root that relative image paths resolve against (default: the JSON file's folder)",
    )
    parser.add_argument(
        "--video-folder",
        metavar="DIR",
        help="root that relative video paths resolve against (default: the JSON file's folder)",
    )
    parser.add_argument(
        "--audio-folder",
        metavar="DIR",
        help="root that relative audio paths (audios, LLaMA-Factory's) resolve against (default: the "
        "JSON file's folder)",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept absolute media paths and paths that leave their root (only for trusted JSON)",
    )
    parser.add_argument(
        "--allow-remote-media",
        action="store_true",
        help="fetch media given as http(s):// URLs (within --max-remote-bytes and --remote-timeout) "
        "instead of refusing them as remote_media (only for trusted JSON); needs the remote extra (aiohttp)",
    )
    parser.add_argument(
        "--max-remote-bytes",
        type=int,
        default=DEFAULT_MAX_REMOTE_BYTES,
        metavar="N",
        help=f"largest media file fetched from a URL, in bytes (default {DEFAULT_MAX_REMOTE_BYTES})",
    )
    parser.add_argument(
        "--remote-timeout",
        type=float,
        default=DEFAULT_REMOTE_TIMEOUT,
        metavar="SECONDS",
        help=f"longest fetch of one media URL (default {DEFAULT_REMOTE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a record with media but no <image>/<video>/<audio> tag is an error, not a fixed warning",
    )
    parser.add_argument(
        "--task",
        choices=("sft", "pretrain"),
        default="sft",
        help="pretrain: accept captioning/pre-training records (the answer alone, <image>/<video> tags in "
        "it); default sft: a human turn first, no tag in an answer",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="NAME",
        help="FILE is LLaMA-Factory's dataset_info.json: read its entry NAME (its file, columns and tags)",
    )


def check_folders(*folders: str | None) -> None:
    """A media root that does not exist is a usage error, reported before any work starts."""
    import os

    from ..errors import UsageError

    for folder in folders:
        if folder is not None and "://" not in folder and not os.path.isdir(folder):
            raise UsageError(
                f"media folder {folder!r} does not exist",
                hint="check --image-folder/--video-folder/--audio-folder",
            )


from ..media.remote import DEFAULT_MAX_REMOTE_BYTES, DEFAULT_REMOTE_TIMEOUT  # noqa: E402
from ..utils.output import atomic_text_file  # noqa: E402  (re-exported for the command modules)

__all__ = ["add_command", "add_media_options", "atomic_text_file", "check_folders"]
