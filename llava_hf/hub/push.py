"""Publish a built folder to the Hugging Face Hub: Parquet shards and the card in ONE commit.

:func:`push_to_hub` is the whole public surface. What it does, in order:

1. resolve ``source`` (a built output folder, or LLaVA JSON that is built into a temporary folder first)
   and re-shard it only if a shard is larger than ``max_shard_size``;
2. create the repository (``exist_ok``), the branch (``revision``, created if missing), refuse an existing
   ``tag`` before uploading anything, and read the branch head: the commit this push is based on;
3. compare each shard's sha256 with the file already in the repository and drop the unchanged ones;
4. pre-upload the changed shards (git-LFS; objects the Hub already stores are not sent again);
5. ONE ``create_commit`` pinned to the head read in 2 (``parent_commit``), adding the shards, README.md
   (:func:`llava_hf.card.make_card`, merged with the card already there) and the preview PNG, and deleting
   this config's stale shards. A concurrent push makes the Hub answer 412: :class:`PushConflictError`,
   nothing mixed;
6. tag the new commit, only once it exists.

Repository layout (as LLaVA-OneVision-Data does for its subsets)::

    data/{split}-{i:05d}-of-{n:05d}.parquet      # config "default"
    {config}/{split}-{i:05d}-of-{n:05d}.parquet  # any other config
    README.md                                    # YAML `configs:` lists every config with its data_files
    preview.png, {config}/preview.png

Transient failures (429, 5xx, dropped connections) are retried with backoff around every call, including
``create_commit``, which ``huggingface_hub`` does not retry itself; offline mode (``HF_HUB_OFFLINE=1``)
fails at once, before anything is built or sent. An interrupted push leaves the branch
where it was; running it again uploads only what the Hub does not already hold.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..build.layout import config_folders
from ..build.parquet import parse_shard_size
from ..errors import TagExistsError, UsageError
from ..utils.logging import get_logger
from .commits import REPO_TYPE, call, commit_pinned, create_tag, download_text, remote_files
from .retries import REPO_NAME_RE, check_online, hub_errors
from .shards import (
    Shard,
    Source,
    config_dir,
    folder_shards,
    reshard_if_needed,
    resolve_source,
)

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd

__all__ = ["PushResult", "push_to_hub"]

logger = get_logger(__name__)


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    ``commit_sha`` is the commit the branch (or the pull request) points at afterwards: the new commit,
    or the unchanged head when nothing changed (``created_commit`` is then ``False``). ``uploaded`` lists the
    files the commit adds or changes, ``unchanged`` those already identical on the Hub (not sent again),
    ``deleted`` the pushed configs' stale shards and previews. ``configs``: every config the commit
    published (several when the source is a build of several configs); ``config_name`` is the first.
    """

    repo_id: str
    config_name: str
    revision: str
    commit_sha: str
    commit_url: str
    created_commit: bool
    uploaded: tuple[str, ...]
    unchanged: tuple[str, ...]
    deleted: tuple[str, ...]
    tag: str | None = None
    pr_url: str | None = None
    configs: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- public


def push_to_hub(
    source: Source,
    repo_id: str,
    *,
    config_name: str = "default",
    revision: str = "main",
    tag: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    max_shard_size: int | str = "500MB",
    create_pr: bool = False,
    commit_message: str | None = None,
    license: str | None = None,
) -> PushResult:
    """Publish ``source`` as config ``config_name`` of the dataset repository ``repo_id``, in one commit.

    Args:
        source: a built output folder (``llava-hf build ... --output-dir OUT``), or LLaVA JSON file(s)
            (``.json``/``.jsonl``, optionally gzipped), which are built first with media resolved next to
            each file (call :func:`llava_hf.build_folder` yourself for other media roots).
        repo_id: ``namespace/name``; the dataset repository is created if missing.
        config_name: the config to publish; ``"default"`` lives under ``data/``, any other under
            ``{config_name}/``. Other configs' files are never touched. A folder of several configs
            pushes them all in the one commit, or the one named here.
        revision: the branch to push to, created from ``main`` if missing (or ``refs/pr/N``).
        tag: tag the new commit with this name once it exists; an existing tag is never moved
            (:class:`~llava_hf.errors.TagExistsError`, raised before anything is uploaded).
        private: visibility of a repository created by this push (an existing one keeps its own).
        token: a Hub token; defaults to ``HF_TOKEN`` or the token saved by ``hf auth login``.
        max_shard_size: re-shard a split only if one of its shards is larger than this (``"500MB"``, bytes).
        create_pr: open a pull request against ``revision`` instead of committing to it.
        commit_message: the commit title; defaults to ``Upload {config_name} with llava-hf``.
        license: a Hub license id for the card (``apache-2.0``, ``cc-by-4.0``, ...).

    Returns:
        A :class:`PushResult` (commit sha and URL, paths uploaded, unchanged and deleted, tag, PR URL).

    Raises:
        UsageError: a bad argument (config name, tag with ``create_pr``, an unreadable source).
        TagExistsError: ``tag`` is already on the Hub.
        PushConflictError: the branch moved while pushing (someone else pushed); nothing was committed.
        HubError: the Hub refused the push (no token, bad token, no access, ...) or kept failing, or
            offline mode is on (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``): then at once, nothing sent.

    Example::

        >>> from llava_hf.hub.push import push_to_hub
        >>> push_to_hub("out/", "my-org/my-llava-data", tag="v1.0")  # doctest: +SKIP
        >>> # anyone can then read it with plain datasets:
        >>> # datasets.load_dataset("my-org/my-llava-data", revision="v1.0")
    """
    _check_names(repo_id, config_name, revision, tag, create_pr)
    check_online(f"pushing to {repo_id}", repo_id)  # before building or reading anything: no retries
    max_bytes = parse_shard_size(max_shard_size)
    with ExitStack() as stack:
        folder = resolve_source(source, stack, max_shard_size)
        configs = config_folders(folder)  # a build of several configs: each is pushed as itself
        if configs and config_name != "default" and config_name not in configs:
            raise UsageError(
                f"{folder} holds the configs {', '.join(configs)}, not {config_name!r}",
                hint="push them all (no config name) or name one of them",
            )
        names = [config_name] if config_name in configs else list(configs) or [config_name]
        parts = []
        for name in names:
            sub = configs.get(name, folder)
            sub, shards = reshard_if_needed(sub, folder_shards(sub, name), max_bytes, name, stack)
            parts.append(_Config(name, sub, shards))
        return _push_folder(
            parts,
            repo_id,
            revision=revision,
            tag=tag,
            private=private,
            token=token,
            create_pr=create_pr,
            commit_message=commit_message,
            license=license,
        )


# --------------------------------------------------------------------------------------------- checks


def _check_names(repo_id: str, config_name: str, revision: str, tag: str | None, create_pr: bool) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(REPO_NAME_RE.fullmatch(p) for p in parts):
        raise UsageError(
            f"repository id {repo_id!r} is not of the form 'namespace/name'",
            hint="for example my-org/my-llava-data (letters, digits, '-', '_', '.')",
        )
    if not REPO_NAME_RE.fullmatch(config_name):
        raise UsageError(
            f"config_name={config_name!r} is not valid: use letters, digits, '-', '_' or '.'",
            hint="for example config_name='coco_caption'",
        )
    if config_name == "data":
        raise UsageError(
            "config name 'data' is reserved: the default config's shards live under data/",
            hint="pick another name, e.g. config_name='main_data'",
        )
    if not revision or revision.startswith("/") or ".." in revision:
        raise UsageError(
            f"revision={revision!r} is not a valid branch name", hint="for example revision='dev'"
        )
    if tag is not None and not re.fullmatch(r"[\w\-.]+", tag):
        raise UsageError(
            f"tag={tag!r} is not valid: use letters, digits, '-', '_' or '.'", hint="e.g. tag='v1.0'"
        )
    if tag is not None and create_pr:
        raise UsageError(
            "a tag cannot be put on a pull request: the PR's commit is not on a branch yet",
            hint="merge the pull request, then push again with tag= (or tag it on the Hub)",
        )


# --------------------------------------------------------------------------------------------- push


@dataclass(frozen=True)
class _Config:
    """One config of a push: its name, its built folder, and its shards."""

    name: str
    folder: Path
    shards: list[Shard]


def _push_folder(
    parts: list[_Config],
    repo_id: str,
    *,
    revision: str,
    tag: str | None,
    private: bool | None,
    token: str | None,
    create_pr: bool,
    commit_message: str | None,
    license: str | None,
) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from ..card import make_card, make_preview

    api = HfApi(token=token, library_name="llava-hf", library_version=_version())
    names = ", ".join(repr(part.name) for part in parts)
    with hub_errors(repo_id, token):
        repo_url = call(
            "create the repository",
            lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True),
        )
        logger.info("Pushing config %s to %s (revision %s)", names, repo_url, revision)
        if tag is not None:
            refs = call("list tags", lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE))
            if any(t.name == tag for t in refs.tags):
                raise TagExistsError(
                    f"tag {tag!r} already exists in {repo_id}: a release never moves, nothing was pushed",
                    repo_id=repo_id,
                    hint="pick a new tag (e.g. tag='v1.1'), or push without tag=",
                    tag=tag,
                )
        if revision != "main" and not revision.startswith("refs/"):
            call(
                "create the branch",
                lambda: api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True),
            )
        info = call(
            "read the branch head", lambda: api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision)
        )
        parent = str(info.sha)
        if private is not None and bool(getattr(info, "private", private)) != private:
            logger.warning(
                "%s already exists and is %s; its visibility was left as it is (change it in the repo settings)",
                repo_id,
                "private" if info.private else "public",
            )
        remote = remote_files(api, repo_id, parent)
        existing = download_text(api, repo_id, "README.md", parent) if "README.md" in remote else None

        # Each config's card section and preview, computed from its (possibly re-sharded) folder.
        adds: list[CommitOperationAdd] = []
        unchanged: list[str] = []
        deletes: list[str] = []
        text = existing
        for part in parts:
            data_dir = config_dir(part.name)
            preview = make_preview(part.folder)
            preview_path = "preview.png" if part.name == "default" else f"{data_dir}/preview.png"
            splits = dict.fromkeys(s.split for s in part.shards)
            text = str(
                make_card(
                    part.folder,
                    config_name=part.name,
                    data_files={split: f"{data_dir}/{split}-*" for split in splits},
                    license=license,
                    pretty_name=None if text else repo_id.split("/")[1],
                    existing=text,
                    preview_path=preview_path if preview is not None else None,
                    repo_id=repo_id,
                )
            )
            more_adds, more_unchanged, more_deletes = _plan(
                part.shards, remote, data_dir, preview, preview_path
            )
            adds += more_adds
            unchanged += more_unchanged
            deletes += more_deletes
        assert text is not None
        readme = text.encode("utf-8") if text.endswith("\n") else f"{text}\n".encode()
        if existing is not None and existing.encode("utf-8") == readme:
            unchanged.append("README.md")
        else:
            adds.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
        if not adds and not deletes:
            logger.info("Nothing changed in %s@%s: no upload, no commit", repo_id, revision)
            commit_sha, pr_url, created = parent, None, False
            commit_url = f"{api.endpoint}/datasets/{repo_id}/commit/{parent}"
        else:
            lfs_adds = [op for op in adds if op.path_in_repo != "README.md"]
            logger.info(
                "Uploading %d changed file(s) (%d unchanged, %d stale to delete)",
                len(lfs_adds),
                len(unchanged),
                len(deletes),
            )
            if lfs_adds:  # huggingface_hub retries preupload, LFS batch, PUT and verify itself
                api.preupload_lfs_files(
                    repo_id, additions=lfs_adds, repo_type=REPO_TYPE, revision=revision, create_pr=create_pr
                )
            operations = [*adds, *(CommitOperationDelete(path_in_repo=p) for p in deletes)]
            title = commit_message or f"Upload {', '.join(part.name for part in parts)} with llava-hf"
            commit = commit_pinned(api, repo_id, operations, title, revision, parent, create_pr)
            commit_sha, commit_url, pr_url, created = commit
        if tag is not None:
            create_tag(api, repo_id, tag, commit_sha)
    if created:
        logger.info(
            "Committed %s to %s@%s", commit_sha[:10], repo_id, "PR " + str(pr_url) if pr_url else revision
        )
    return PushResult(
        repo_id=repo_id,
        config_name=parts[0].name,
        revision=revision,
        commit_sha=commit_sha,
        commit_url=commit_url,
        created_commit=created,
        uploaded=tuple(op.path_in_repo for op in adds),
        unchanged=tuple(unchanged),
        deleted=tuple(deletes),
        tag=tag,
        pr_url=pr_url,
        configs=tuple(part.name for part in parts),
    )


def _plan(
    shards: list[Shard],
    remote: dict[str, str | None],
    data_dir: str,
    preview: bytes | None,
    preview_path: str,
) -> tuple[list[CommitOperationAdd], list[str], list[str]]:
    """What to add (changed files), what is unchanged, what to delete (this config's stale shards and
    preview). Compared by sha256 with the LFS files at the parent commit."""
    from huggingface_hub import CommitOperationAdd

    adds: list[CommitOperationAdd] = []
    unchanged: list[str] = []
    for shard in shards:
        op = CommitOperationAdd(path_in_repo=shard.remote, path_or_fileobj=str(shard.local))
        if remote.get(shard.remote) == op.upload_info.sha256.hex():
            unchanged.append(shard.remote)
        else:
            adds.append(op)
    deletes: list[str] = []
    if preview is not None:
        op = CommitOperationAdd(path_in_repo=preview_path, path_or_fileobj=preview)
        if remote.get(preview_path) == op.upload_info.sha256.hex():
            unchanged.append(preview_path)
        else:
            adds.append(op)
    elif preview_path in remote:
        deletes.append(preview_path)
    new_paths = {s.remote for s in shards}
    deletes += sorted(p for p in remote if _is_shard(p, data_dir) and p not in new_paths)
    return adds, unchanged, deletes


def _is_shard(path: str, data_dir: str) -> bool:
    """A Parquet file directly under ``data_dir/``: this config's data, whoever wrote it.

    That includes names from other tools (older ``datasets`` added a fingerprint: ``train-00000-of-00001-
    1a2b3c.parquet``), which the config's ``data_files`` glob would otherwise keep reading.
    """
    if not path.startswith(f"{data_dir}/"):
        return False
    rest = path[len(data_dir) + 1 :]
    return "/" not in rest and rest.endswith(".parquet")


def _version() -> str:
    from .. import __version__

    return __version__
