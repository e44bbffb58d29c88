"""``llava-hf``: a thin command line over the library.

Each command lives in its own module with a ``register(subparsers)`` function that adds its parser
(help text with examples) and sets ``func`` to a callable ``(args) -> exit code``. Known errors
(:class:`~llava_hf.errors.LlavaHFError`), and file-system errors (``OSError``: a folder that cannot be
written, a full disk), print one line plus a hint; ``LLAVA_HF_DEBUG=1`` shows the traceback. Exit
codes: 0 success, 1 failure (bad data, push refused, a file-system error), 2 bad usage.

The library's messages name its Python arguments (``video_folder=``, ``on_error='skip'``);
:func:`cli_text` turns them into this command line's flags (``--video-folder``, ``--on-error skip``)
wherever the CLI shows a message: errors, hints, validation problems.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import shlex
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import InputFileError, LlavaHFError, UsageError

__all__ = ["cli_text", "main"]

# Modules under llava_hf.cli, one per command, in the order `--help` lists them.
COMMAND_MODULES = ("validate", "build", "export", "push")


#: The Python arguments that library messages name, and the flag each is on the command line.
FLAGS = {
    "image_folder": "--image-folder",
    "video_folder": "--video-folder",
    "audio_folder": "--audio-folder",
    "allow_outside_root": "--allow-outside-root",
    "allow_remote_media": "--allow-remote-media",
    "max_remote_bytes": "--max-remote-bytes",
    "remote_timeout": "--remote-timeout",
    "strict": "--strict",
    "on_error": "--on-error",
    "output_dir": "--output-dir",
    "records_per_shard": "--records-per-shard",
    "max_shard_size": "--max-shard-size",
    "format": "--format",
    "config_name": "--config-name",
    "revision": "--revision",
    "tag": "--tag",
    "create_pr": "--create-pr",
}
# name=True -> the flag alone; name='value' (or name=value) -> the flag and the value; name= -> the flag
_ARGUMENT_RE = re.compile(
    r"(?<![\w'\"/.=-])(" + "|".join(FLAGS) + r")=(?:(True)\b|'([^']*)'|\"([^\"]*)\"|([^\s'\",;:()]*))"
)


def cli_text(text: str) -> str:
    """A library message as the CLI shows it: ``video_folder='v'`` -> ``--video-folder v``."""

    def flag(m: re.Match[str]) -> str:
        value = next((v for v in m.groups()[2:] if v is not None), "")
        return f"{FLAGS[m[1]]} {shlex.quote(value)}" if value else FLAGS[m[1]]

    return _ARGUMENT_RE.sub(flag, text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llava-hf",
        description="Validate, build, export and publish LLaVA-format vision-language training data.",
        epilog="Run 'llava-hf COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"llava-hf {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:  # a command still being written
            if err.name != f"{__name__}.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    debug = os.environ.get("LLAVA_HF_DEBUG", "").lower() in {"1", "true", "yes"}
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("llava-hf: interrupted; no partial output was left behind.", file=sys.stderr)
        return 130
    except LlavaHFError as err:
        if debug:
            raise
        print(f"llava-hf {args.command}: error: {cli_text(str(err))}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {cli_text(err.hint)}", file=sys.stderr)
        print("  (set LLAVA_HF_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2 if isinstance(err, (UsageError, InputFileError)) else 1
    except OSError as err:  # the file system refused (permissions, no space, not a folder...)
        if debug:
            raise
        print(f"llava-hf {args.command}: error: {_os_error_message(err)}", file=sys.stderr)
        print(f"  hint: {_OS_ERROR_HINTS.get(err.errno or 0, _OS_ERROR_HINT)}", file=sys.stderr)
        print("  (set LLAVA_HF_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1


_OS_ERROR_HINT = "check the paths given (do they exist, can this user write there?) and the free disk space"
_OS_ERROR_HINTS = {
    getattr(errno, name): hint
    for names, hint in (
        (
            ("EACCES", "EPERM"),
            "this user may not write (or read) there: choose another path or fix the permissions",
        ),
        (("EROFS",), "that file system is read-only: write to another disk"),
        (("ENOSPC", "EDQUOT"), "the disk (or the quota) is full: free some space, or write to another disk"),
        (("ENOTDIR",), "a part of that path is a file, not a folder: choose another path"),
        (("ENOENT",), "check that the folders on that path exist"),
    )
    for name in names
    if hasattr(errno, name)  # EDQUOT is POSIX only
}


def _os_error_message(err: OSError) -> str:
    """``strerror: 'path'`` (both paths of a rename), or the error's own text when it has no parts."""
    if not err.strerror:
        return str(err) or type(err).__name__
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(repr(os.fsdecode(p)) for p in paths)
    return f"{err.strerror}: {where}" if where else err.strerror


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
