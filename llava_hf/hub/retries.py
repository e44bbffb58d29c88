"""Retries and error messages for the Hub calls of :mod:`llava_hf.hub.push` and :mod:`llava_hf.export` (private).

huggingface_hub retries its upload calls (preupload, LFS batch, PUT, verify) itself, but not repo info,
refs, branches, tags or ``create_commit``: :func:`retry` covers those, and only for what can pass (429,
5xx, a dropped connection): offline mode, a host name that does not resolve or a malformed endpoint
fail at once. :func:`check_online` refuses a Hub call in offline mode before anything starts.
:func:`hub_errors` turns what the client raises into :class:`~llava_hf.errors.HubError` with a hint; a
token never appears in a message. :func:`looks_like_repo_id` tells a Hub id from a local path.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ..errors import HubError
from ..utils.logging import get_logger

__all__ = [
    "RETRY_STATUSES",
    "check_online",
    "hub_errors",
    "is_connection_error",
    "is_offline",
    "is_transient",
    "looks_like_repo_id",
    "offline_error",
    "offline_setting",
    "retry",
    "status_of",
]

logger = get_logger("llava_hf.hub.push")

#: HTTP statuses worth retrying: timeouts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER = 300.0

T = TypeVar("T")
_sleep = time.sleep  # a seam for tests that check the waits

#: One part of a Hub repository id (``namespace`` or ``name``).
REPO_NAME_RE = re.compile(r"[A-Za-z0-9][\w\-.]*")
#: How local data files end: a source named so is a path, never a Hub id.
_LOCAL_SUFFIXES = (".json", ".jsonl", ".gz", ".parquet", ".arrow", ".yaml", ".yml", ".csv", ".txt")
#: The environment variables that turn the Hub clients' offline mode on.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def looks_like_repo_id(source: str) -> bool:
    """``namespace/name`` as the Hub spells it; anything else (``./x``, ``~/x``, ``a/b/c``, ``x``,
    ``x.json``, ``out/``, a Windows path) is a local path."""
    if any(sep in source for sep in (os.sep, os.altsep) if sep and sep != "/"):
        return False
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(REPO_NAME_RE.fullmatch(p) for p in parts)
        and not source.lower().endswith(_LOCAL_SUFFIXES)
    )


def is_offline() -> bool:
    """Offline mode of huggingface_hub (``HF_HUB_OFFLINE``) or of datasets (``HF_DATASETS_OFFLINE``) is on."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    import datasets.config

    return bool(datasets.config.HF_HUB_OFFLINE)


def offline_setting() -> tuple[str, str]:
    """What turned offline mode on (``HF_HUB_OFFLINE=1``) and a hint that says how to turn it off."""
    on = [name for name in OFFLINE_VARIABLES if os.environ.get(name, "").upper() in _TRUE]
    where = (
        ", ".join(f"{name}={os.environ[name]}" for name in on) or "huggingface_hub.constants.HF_HUB_OFFLINE"
    )
    unset = " ".join(f"-u {name}" for name in on or ["HF_HUB_OFFLINE"])
    return where, f"turn offline mode off to reach the Hub (unset it, e.g. `env {unset} llava-hf ...`)"


def offline_error(what: str, repo_id: str | None = None) -> HubError:
    """``what`` needs the Hub and offline mode is on: the message names the variable(s) to unset."""
    where, hint = offline_setting()
    return HubError(
        f"{what} needs the Hub, and offline mode is on ({where}): nothing was sent",
        repo_id=repo_id,
        hint=hint,
    )


_TRUE = {"1", "ON", "YES", "TRUE"}


def check_online(what: str, repo_id: str | None = None) -> None:
    """Raise :func:`offline_error` at once when offline mode is on: no request, no retry."""
    if is_offline():
        raise offline_error(what, repo_id)


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


def _permanent_exceptions() -> tuple[type[BaseException], ...]:
    """Connection-level errors that another attempt cannot fix: offline mode, a malformed endpoint."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    kinds: list[type[BaseException]] = [OfflineModeIsEnabled]
    for module in ("httpx2", "httpx"):
        for name in ("UnsupportedProtocol", "LocalProtocolError"):
            try:
                kinds.append(getattr(__import__(module), name))
            except (ImportError, AttributeError):
                continue
    return tuple(kinds)


def _unknown_host(err: BaseException) -> bool:
    """The endpoint's host name does not resolve (a typo in HF_ENDPOINT, no network at all)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror) and current.errno in _NO_NAME:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


_NO_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


def is_connection_error(err: BaseException) -> bool:
    """The request got no HTTP answer: no connection, a timeout, offline mode, a malformed endpoint."""
    return isinstance(err, (*_transient_exceptions(), *_permanent_exceptions()))


def is_transient(err: BaseException) -> bool:
    """429, 5xx, a timeout or a dropped connection: worth another attempt. Never offline mode."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        return status_of(err) in RETRY_STATUSES
    if isinstance(err, _permanent_exceptions()) or _unknown_host(err):
        return False
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
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, OfflineModeIsEnabled):
        return offline_error(f"pushing to {repo_id}", repo_id)
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
            hint="push to an existing branch, or let push create it: revision='NAME'",
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
            hint="use a token with write access to this namespace, or open a pull request: create_pr=True",
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
