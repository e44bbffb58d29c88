"""Every error llava-hf raises on purpose.

The hierarchy::

    LlavaHFError                      root: catch this to catch everything below
    ├── UsageError (ValueError)       a bad argument or option; the message says the fix
    ├── MissingDependencyError (ImportError)
    │                                 an optional extra is not installed; names the extra
    ├── InputFileError                a whole input file is unusable (missing, not JSON, ...)
    ├── OutputLockedError             another llava-hf run is writing to the same output
    ├── MediaDecodeError              a stored media file cannot be decoded for training
    ├── RecordError                   one record broke a rule under ``on_error="raise"``;
    │                                 carries the :class:`~llava_hf.problems.Problem`
    ├── ChatTemplateError             a conversation cannot be mapped or rendered
    │   └── LabelMaskError            assistant spans do not line up with the tokens
    └── HubError                      publishing failed
        ├── TagExistsError            the tag is already on the Hub; tags never move
        └── PushConflictError         someone else pushed in between (parent commit moved)

A validation *problem* is data (:class:`llava_hf.problems.Problem`), not an exception, until a
policy turns it into one (:class:`RecordError`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .problems import Problem

__all__ = [
    "ChatTemplateError",
    "HubError",
    "InputFileError",
    "LabelMaskError",
    "LlavaHFError",
    "MediaDecodeError",
    "MissingDependencyError",
    "OutputLockedError",
    "PushConflictError",
    "RecordError",
    "TagExistsError",
    "UsageError",
]


class LlavaHFError(Exception):
    """Root of every error llava-hf raises on purpose.

    ``hint`` is a one-line fix that the CLI prints under the message.
    """

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments: rebuild from the state, so an error raised in
        # a worker process (num_proc) reaches the parent intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[LlavaHFError], args: tuple[Any, ...], state: dict[str, Any]) -> LlavaHFError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class UsageError(LlavaHFError, ValueError):
    """A bad argument: a wrong option value, a missing folder, an unknown split name."""


class MissingDependencyError(LlavaHFError, ImportError):
    """An optional dependency is missing. The message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {package!r}, which is not installed.",
            hint=f"pip install {package} (or, in a clone of llava-hf: pip install -e '.[{extra}]')",
        )
        self.package = package
        self.extra = extra


class InputFileError(LlavaHFError):
    """A whole input file cannot be read (missing, unsupported extension, compressed wrongly)."""

    def __init__(self, message: str, *, file: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file


class OutputLockedError(LlavaHFError):
    """Another llava-hf run (``pid``, when known) holds the lock of the output being written."""

    def __init__(self, output: os.PathLike[str] | str, pid: str = "") -> None:
        who = f"another llava-hf run (pid {pid})" if pid else "another llava-hf run"
        super().__init__(
            f"{who} is writing to {os.fspath(output)!r}",
            hint="wait for it to finish, or wait for it with --wait (wait=True in Python)",
        )
        self.output = os.fspath(output)
        self.pid = int(pid) if pid.isdigit() else None


class MediaDecodeError(LlavaHFError):
    """A stored media file cannot be decoded (``decode_media``); names the record, column and path."""

    def __init__(
        self, message: str, *, id: str | None = None, path: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.id = id
        self.path = path


class RecordError(LlavaHFError):
    """A record broke a validation rule while the policy was ``on_error="raise"``.

    Attributes mirror the problem: ``file``, ``index``, ``id``, ``code``, ``field``.
    """

    def __init__(self, problem: Problem) -> None:
        super().__init__(
            problem.message,
            hint="fix the record, or pass on_error='skip' to drop bad records (they are counted "
            "and listed in rejected.jsonl)",
        )
        self.problem = problem
        self.file = problem.file
        self.index = problem.index
        self.id = problem.id
        self.code = problem.code
        self.field = problem.field


class ChatTemplateError(LlavaHFError):
    """A conversation cannot be mapped to or from chat messages, or rendered."""

    def __init__(self, message: str, *, id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.id = id


class LabelMaskError(ChatTemplateError):
    """The assistant spans found by rendering prefixes do not line up with the tokenized text.

    Raised instead of returning a silently all-masked sample.
    """


class HubError(LlavaHFError):
    """Publishing to the Hub failed."""

    def __init__(self, message: str, *, repo_id: str | None = None, hint: str | None = None, **context: Any):
        super().__init__(message, hint=hint)
        self.repo_id = repo_id
        self.context = context


class TagExistsError(HubError):
    """The tag already exists on the Hub: a release never moves."""


class PushConflictError(HubError):
    """The branch moved while pushing (another push landed first): nothing was committed."""
