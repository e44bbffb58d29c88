"""Retries and error messages for the Hub calls of :mod:`llava_hf.hub` (private).

huggingface_hub retries its upload calls (preupload, LFS batch, PUT, verify) itself, but not repo info,
refs, branches, tags or ``create_commit``: :func:`retry` covers those. :func:`hub_errors` turns what the
client raises into :class:`~llava_hf.errors.HubError` with a hint; a token never appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ._logging import get_logger
from .errors import HubError

__all__ = ["RETRY_STATUSES", "hub_errors", "is_transient", "retry", "status_of"]

logger = get_logger("llava_hf.hub")

#: HTTP statuses worth retrying: timeouts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER = 300.0

T = TypeVar("T")
_sleep = time.sleep  # a seam for tests that check the waits


def status_of(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _transient_exceptions() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
        ("requests", "Timeout"),
    ):
        try:
            kinds.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(kinds)


def is_transient(err: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        return status_of(err) in RETRY_STATUSES
    return isinstance(err, _transient_exceptions())


def retry(what: str, fn: Callable[[], T], delays: Sequence[float]) -> T:
    """Call ``fn``; on a transient failure (429, 5xx, dropped connection) wait ``delays[i]`` and try again."""
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except Exception as err:
            if attempt >= len(delays) or not is_transient(err):
                raise
            wait = max(delays[attempt], _retry_after(err))
            logger.warning(
                "Could not %s (%s); retrying in %.1f s (%d/%d)",
                what,
                _short(err),
                wait,
                attempt + 1,
                len(delays),
            )
            _sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(err: BaseException) -> float:
    """The server's ``Retry-After`` in seconds (rate limits send it), at most ``MAX_RETRY_AFTER``; else 0."""
    response = getattr(err, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value is not None else 0.0
    except ValueError:  # an HTTP date: use our own backoff
        return 0.0


def _short(err: BaseException) -> str:
    status = status_of(err)
    return f"HTTP {status}" if status is not None else type(err).__name__


@contextmanager
def hub_errors(repo_id: str, token: str | None) -> Iterator[None]:
    """Turn the Hub client's errors into :class:`HubError` with a hint (the token is never shown)."""
    try:
        yield
    except HubError:
        raise
    except Exception as outer:
        # huggingface_hub wraps upload failures (RuntimeError "Error while uploading ..."): use the cause.
        cause = _hub_cause(outer)
        if cause is None:
            raise
        raise _to_hub_error(cause, repo_id, token) from outer


def _hub_cause(err: BaseException) -> BaseException | None:
    """``err`` or the first error in its ``__cause__``/``__context__`` chain that came from the Hub."""
    from huggingface_hub.errors import HfHubHTTPError

    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, (HfHubHTTPError, *_transient_exceptions())):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _to_hub_error(err: BaseException, repo_id: str, token: str | None) -> HubError:
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    status = status_of(err)
    no_token = token is None and get_token() is None
    login = "log in with `hf auth login` or set HF_TOKEN to a token with write access"
    if isinstance(err, RepositoryNotFoundError):
        if no_token:
            return HubError(
                f"dataset repository {repo_id} was not found, or it is private and you are not logged in",
                repo_id=repo_id,
                hint=login,
                status=status,
            )
        return HubError(
            f"dataset repository {repo_id} was not found, or your token has no access to it",
            repo_id=repo_id,
            hint="check the name, and that the token's user (or one of its orgs) owns the namespace",
            status=status,
        )
    if isinstance(err, RevisionNotFoundError):
        return HubError(
            f"revision not found in {repo_id}: {_server_message(err)}",
            repo_id=repo_id,
            hint="push to an existing branch, or let push create it with --revision NAME",
            status=status,
        )
    if isinstance(err, HfHubHTTPError) and status == 401:
        if no_token:
            return HubError(
                f"pushing to {repo_id} needs a Hub token, and none was found",
                repo_id=repo_id,
                hint=login,
                status=status,
            )
        return HubError(
            f"the Hub refused the token (401: {_server_message(err)})",
            repo_id=repo_id,
            hint="the token is invalid or expired: create one with write access in your Hub settings, then "
            "`hf auth login` or set HF_TOKEN",
            status=status,
        )
    if isinstance(err, HfHubHTTPError) and status == 403:
        return HubError(
            f"your token cannot write to {repo_id} (403: {_server_message(err)})",
            repo_id=repo_id,
            hint="use a token with write access to this namespace, or open a pull request with --create-pr",
            status=status,
        )
    if isinstance(err, HfHubHTTPError):
        return HubError(
            f"the Hub refused the push to {repo_id} (HTTP {status}: {_server_message(err)})",
            repo_id=repo_id,
            hint="run the same push again: it resumes and uploads only what is missing",
            status=status,
        )
    return HubError(
        f"could not reach the Hub while pushing to {repo_id} ({type(err).__name__}: {err})",
        repo_id=repo_id,
        hint="check the connection (HF_ENDPOINT) and run the same push again: it resumes where it stopped",
    )


def _server_message(err: BaseException) -> str:
    message = getattr(err, "server_message", None)
    if message:
        return str(message).strip().splitlines()[0]
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
