"""``llava-hf``: a thin command line over the library.

Each command lives in its own module with a ``register(subparsers)`` function that adds its parser
(help text with examples) and sets ``func`` to a callable ``(args) -> exit code``. Known errors
(:class:`~llava_hf.errors.LlavaHFError`) print one line plus a hint; ``LLAVA_HF_DEBUG=1`` shows the
traceback. Exit codes: 0 success, 1 failure (bad data, push refused), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import InputFileError, LlavaHFError, UsageError

__all__ = ["main"]

# Modules under llava_hf.cli, one per command, in the order `--help` lists them.
COMMAND_MODULES = ("validate", "build", "export", "push")


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
        print(f"llava-hf {args.command}: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
        print("  (set LLAVA_HF_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2 if isinstance(err, (UsageError, InputFileError)) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
