"""The Hub calls of a push, each retried on transient failures: the files and a text file of a repository at a
commit, one commit pinned to its parent commit (a 412: :class:`~llava_hf.errors.PushConflictError`), a tag that
never moves (:class:`~llava_hf.errors.TagExistsError`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PushConflictError, TagExistsError
from ..utils.logging import get_logger
from .retries import retry, status_of

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = [
    "REPO_TYPE",
    "RETRY_DELAYS",
    "call",
    "commit_pinned",
    "create_tag",
    "download_text",
    "remote_files",
]

logger = get_logger(__name__)

#: Seconds to wait before each retry of a call that failed transiently; one retry per entry.
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)

REPO_TYPE = "dataset"

T = TypeVar("T")


def remote_files(api: HfApi, repo_id: str, sha: str) -> dict[str, str | None]:
    """Every file of the repository at ``sha`` → its sha256 (LFS files) or None (regular files)."""
    from huggingface_hub import RepoFile

    def list_files() -> dict[str, str | None]:
        files: dict[str, str | None] = {}
        for entry in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=sha, recursive=True):
            if isinstance(entry, RepoFile):
                files[entry.path] = entry.lfs.sha256 if entry.lfs is not None else None
        return files

    return list_files()  # tree pages are retried by huggingface_hub


def download_text(api: HfApi, repo_id: str, path: str, sha: str) -> str | None:
    from huggingface_hub.errors import EntryNotFoundError

    def download() -> str | None:
        try:
            local = api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=sha)
        except EntryNotFoundError:
            return None
        return Path(local).read_text(encoding="utf-8")

    return call(f"download {path}", download)


def commit_pinned(
    api: HfApi, repo_id: str, operations: list[Any], title: str, revision: str, parent: str, create_pr: bool
) -> tuple[str, str, str | None, bool]:
    """One commit pinned to ``parent``; a 412 means someone else pushed first.

    If the answer to a commit was lost (connection dropped) and the retry gets 412, the first attempt may
    have landed: the branch head is then checked (our title, our parent) before calling it a conflict.
    """
    from huggingface_hub.errors import HfHubHTTPError

    attempts = 0

    def commit() -> Any:
        nonlocal attempts
        attempts += 1
        return api.create_commit(
            repo_id,
            operations=operations,
            commit_message=title,
            commit_description="Published with llava-hf.",
            repo_type=REPO_TYPE,
            revision=revision,
            create_pr=create_pr,
            parent_commit=parent,
        )

    try:
        info = call("commit", commit)
    except HfHubHTTPError as err:
        if status_of(err) != 412:
            raise
        if attempts > 1 and not create_pr:
            landed = _landed_commit(api, repo_id, revision, parent, title)
            if landed is not None:
                logger.info("The commit had landed before its answer was lost: %s", landed[:10])
                return landed, f"{api.endpoint}/datasets/{repo_id}/commit/{landed}", None, True
        raise PushConflictError(
            f"{repo_id}@{revision} moved while pushing (it is no longer at {parent[:10]}): someone else "
            "pushed first, so nothing was committed",
            repo_id=repo_id,
            hint="run the push again: it starts from the new head and uploads only what is missing",
            revision=revision,
            parent_commit=parent,
        ) from err
    return str(info.oid), str(info.commit_url), getattr(info, "pr_url", None), True


def _landed_commit(api: HfApi, repo_id: str, revision: str, parent: str, title: str) -> str | None:
    commits = call(
        "list commits",
        lambda: list(_first(api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=revision), 2)),
    )
    if len(commits) == 2 and commits[0].title == title and commits[1].commit_id == parent:
        return str(commits[0].commit_id)
    return None


def _first(items: Any, n: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def create_tag(api: HfApi, repo_id: str, tag: str, sha: str) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        call("create the tag", lambda: api.create_tag(repo_id, tag=tag, revision=sha, repo_type=REPO_TYPE))
    except HfHubHTTPError as err:
        if status_of(err) != 409:
            raise
        raise TagExistsError(
            f"tag {tag!r} appeared in {repo_id} while pushing; the data was committed ({sha[:10]}) but the tag "
            "was not moved",
            repo_id=repo_id,
            hint=f"pick a new tag and create it on commit {sha}",
            tag=tag,
            commit=sha,
        ) from err


def call(what: str, fn: Callable[[], T]) -> T:
    """``fn()`` with retries on transient failures, waiting :data:`RETRY_DELAYS` (read at each call)."""
    return retry(what, fn, RETRY_DELAYS)
