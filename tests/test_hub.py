"""llava_hf.hub.push_to_hub and `llava-hf push`, with the real huggingface_hub and datasets clients over HTTP
against the in-memory test Hub (tests/hub_server.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import HfApi

from llava_hf.build.parquet import uses_cdc
from llava_hf.cli import main as cli_main
from llava_hf.errors import HubError, PushConflictError, TagExistsError, UsageError
from llava_hf.hub import commits as hub_module
from llava_hf.hub import push_to_hub
from llava_hf.schema import features_for
from tests.hub_server import OTHER_USER, TEST_ORG, TEST_USER, HubServer

pytestmark = pytest.mark.hub
pytest_plugins = ["tests.fixtures.hub"]  # until tests/conftest.py registers it

REAL = Path(__file__).parent / "data" / "real"
JPEGS = [REAL / "1.jpg", REAL / "2.jpg", REAL / "3.jpg"]


# --------------------------------------------------------------------------------------------- helpers


def _row(rid: str, answer: str) -> dict[str, Any]:
    image = JPEGS[sum(map(ord, rid)) % len(JPEGS)]
    return {
        "id": rid,
        "images": [{"bytes": image.read_bytes(), "path": f"coco/{image.name}"}],
        "videos": [],
        "video_frames": [],
        "video_info": [],
        "audios": [],
        "audio_info": [],
        "conversations": [
            {"from": "human", "value": f"<image>\nWhat is in picture {rid}?"},
            {"from": "gpt", "value": answer},
        ],
        "source": "data.json",
        "metadata": {"origin": rid},
    }


def make_folder(
    out: Path, splits: dict[str, list[list[str]]], answer: str | dict[str, str] = "a photo"
) -> Path:
    """A built folder as the builder writes it: data/{split}-i-of-n.parquet per shard (ids per shard) + manifest.

    ``answer`` is the assistant text prefix, for all splits or per split."""
    manifest_splits: dict[str, Any] = {}
    for split, shards in splits.items():
        files = []
        rows_total = 0
        nbytes = 0
        for i, ids in enumerate(shards):
            rel = f"data/{split}-{i:05d}-of-{len(shards):05d}.parquet"
            (out / "data").mkdir(parents=True, exist_ok=True)
            text = answer if isinstance(answer, str) else answer.get(split, "a photo")
            ds = datasets.Dataset.from_list([_row(r, f"{text} ({r})") for r in ids], features=features_for())
            ds.to_parquet(out / rel)
            files.append(rel)
            rows_total += len(ids)
            nbytes += ds.data.nbytes
        manifest_splits[split] = {"num_rows": rows_total, "num_bytes": nbytes, "files": files}
    manifest = {
        "format_version": "1.0",
        "llava_hf_version": "0.1.0",
        "format": "conversations",
        "splits": manifest_splits,
        "rejected": {},
        "inputs": ["data.json"],
        "mixture": None,
    }
    (out / "llava_hf.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def head(server: HubServer, repo_id: str, branch: str = "main") -> str:
    return server.repo(repo_id).branches[branch]


def card_yaml(server: HubServer, repo_id: str, rev: str = "main") -> dict[str, Any]:
    text = server.files_at(repo_id, rev)["README.md"].decode()
    return yaml.safe_load(text.split("---\n")[1])


def fresh_cache(tmp_path: Path, name: str) -> str:
    return str(tmp_path / f"cache-{name}")


@pytest.fixture(autouse=True)
def _short_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "RETRY_DELAYS", (0.01, 0.01, 0.01))


# --------------------------------------------------------------------------------------------- versioning


def test_push_tag_push_again_then_load_each_revision(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/llava-mini"
    v1 = make_folder(tmp_path / "v1", {"train": [["a", "b"], ["c"]], "test": [["t1"]]})
    first = push_to_hub(v1, repo, tag="v1.0", license="apache-2.0")
    assert first.created_commit and first.tag == "v1.0"
    r = hub_server.repo(repo)
    assert r.tags["v1.0"] == first.commit_sha == head(hub_server, repo)
    # one commit: shards, card and preview together on top of the repository's first commit
    v1_commit = r.commits[first.commit_sha]
    assert r.commits[v1_commit.parent].title == "initial commit"  # type: ignore[index]
    assert {
        "README.md",
        "preview.png",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "data/test-00000-of-00001.parquet",
    } <= set(v1_commit.files)

    meta = card_yaml(hub_server, repo, "v1.0")
    assert meta["license"] == "apache-2.0"
    assert meta["llava_hf"]["format_version"] == "1.0" and meta["llava_hf"]["llava_hf_version"]
    assert [c["config_name"] for c in meta["configs"]] == ["default"]

    v2 = make_folder(
        tmp_path / "v2", {"train": [["a", "b", "c", "d"]], "test": [["t1"]]}, answer={"train": "new answer"}
    )
    second = push_to_hub(v2, repo)
    assert second.created_commit and r.commits[second.commit_sha].parent == first.commit_sha
    files = set(hub_server.files_at(repo))
    assert "data/train-00000-of-00001.parquet" in files
    assert (
        not {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"} & files
    )  # stale gone
    assert set(second.deleted) == {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}
    assert "data/test-00000-of-00001.parquet" in second.unchanged  # same bytes: not uploaded again
    assert r.tags["v1.0"] == first.commit_sha  # the tag did not move

    cache = fresh_cache(tmp_path, "load")
    old = datasets.load_dataset(repo, revision="v1.0", cache_dir=cache)
    new = datasets.load_dataset(repo, cache_dir=cache)
    assert sorted(old["train"]["id"]) == ["a", "b", "c"]
    assert sorted(new["train"]["id"]) == ["a", "b", "c", "d"]
    assert new["train"][0]["conversations"][1]["value"].startswith("new answer")
    assert old["train"][0]["conversations"][1]["value"].startswith("a photo")
    assert new["test"]["id"] == ["t1"]
    assert new["train"][0]["images"][0].size[0] > 0  # a real decoded PIL image
    old_stream = datasets.load_dataset(repo, revision="v1.0", split="train", streaming=True)
    new_stream = datasets.load_dataset(repo, split="train", streaming=True)
    assert sorted(row["id"] for row in old_stream) == ["a", "b", "c"]
    assert sorted(row["id"] for row in new_stream) == ["a", "b", "c", "d"]


def test_load_needs_only_datasets(hub_server: HubServer, hub_token: str, tmp_path: Path) -> None:
    """Another process that never imports llava_hf reads the pushed data at a tag, streaming and not."""
    repo = f"{TEST_USER}/plain-reader"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["x1", "x2"]]}), repo, tag="v1.0")
    push_to_hub(make_folder(tmp_path / "v2", {"train": [["y1"]]}), repo)
    code = (
        "import sys, datasets\n"
        "datasets.config.USE_PARQUET_EXPORT = False\n"
        f"ds = datasets.load_dataset({repo!r}, revision='v1.0', split='train')\n"
        f"st = datasets.load_dataset({repo!r}, split='train', streaming=True)\n"
        "assert 'llava_hf' not in sys.modules, 'llava_hf was imported'\n"
        "print(sorted(ds['id']), [r['id'] for r in st], ds[0]['images'][0].size)\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_server.endpoint,
        "HF_HOME": str(tmp_path / "reader_home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": hub_token,
        "USE_TORCH": "0",  # a plain reader: no torch import (saves seconds)
    }
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("['x1', 'x2'] ['y1'] (")


def test_existing_tag_is_refused_before_anything_is_uploaded(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/tagged"
    first = push_to_hub(make_folder(tmp_path / "v1", {"train": [["a"]]}), repo, tag="v1.0")
    puts = hub_server.count("lfs_put")
    with pytest.raises(TagExistsError) as info:
        push_to_hub(make_folder(tmp_path / "v2", {"train": [["b"]]}), repo, tag="v1.0")
    assert "v1.0" in str(info.value) and info.value.hint
    assert hub_server.repo(repo).tags["v1.0"] == first.commit_sha == head(hub_server, repo)
    assert hub_server.count("lfs_put") == puts and hub_server.count("commit") == 1


def test_revision_pushes_to_a_new_branch(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/branched"
    main = push_to_hub(make_folder(tmp_path / "v1", {"train": [["m"]]}), repo)
    dev = push_to_hub(make_folder(tmp_path / "v2", {"train": [["d1", "d2"]]}), repo, revision="dev")
    assert head(hub_server, repo) == main.commit_sha
    assert head(hub_server, repo, "dev") == dev.commit_sha
    assert hub_server.repo(repo).commits[dev.commit_sha].parent == main.commit_sha
    again = push_to_hub(
        make_folder(tmp_path / "v3", {"train": [["d3"]]}), repo, revision="dev"
    )  # branch exists
    assert head(hub_server, repo, "dev") == again.commit_sha
    ds = datasets.load_dataset(repo, revision="dev", split="train", cache_dir=fresh_cache(tmp_path, "dev"))
    assert ds["id"] == ["d3"]


def test_create_pr_leaves_the_branch_alone(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/with-pr"
    main = push_to_hub(make_folder(tmp_path / "v1", {"train": [["a"]]}), repo)
    pr = push_to_hub(
        make_folder(tmp_path / "v2", {"train": [["b"]]}), repo, create_pr=True, commit_message="Fix b"
    )
    assert pr.pr_url is not None and pr.pr_url.endswith("/discussions/1")
    assert head(hub_server, repo) == main.commit_sha
    r = hub_server.repo(repo)
    assert r.commits[r.prs[1]].title == "Fix b"
    with pytest.raises(UsageError):
        push_to_hub(tmp_path / "v2", repo, create_pr=True, tag="v2.0")


# --------------------------------------------------------------------------------------------- configs, incremental


def test_two_configs_live_side_by_side(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_ORG}/onevision-style"
    push_to_hub(make_folder(tmp_path / "d", {"train": [["d1", "d2"]]}), repo)
    coco = push_to_hub(
        make_folder(tmp_path / "c", {"train": [["c1"]], "validation": [["cv"]]}), repo, config_name="coco"
    )
    files = hub_server.files_at(repo)
    assert {"coco/train-00000-of-00001.parquet", "coco/validation-00000-of-00001.parquet"} <= set(files)
    assert coco.deleted == ()
    default_files = {p: b for p, b in files.items() if p.startswith("data/")}

    # A hand-written section in the card survives the next push.
    card = files["README.md"].decode() + "\n## Our notes\n\nCollected by hand, keep me.\n"
    HfApi().upload_file(
        path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )

    push_to_hub(make_folder(tmp_path / "c2", {"train": [["c1", "c2"]]}), repo, config_name="coco")
    files = hub_server.files_at(repo)
    assert {p: b for p, b in files.items() if p.startswith("data/")} == default_files  # untouched
    assert "coco/validation-00000-of-00001.parquet" not in files  # this config's stale split is gone
    assert "Collected by hand, keep me." in files["README.md"].decode()
    configs = {c["config_name"]: c for c in card_yaml(hub_server, repo)["configs"]}
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert configs["coco"]["data_files"] == [{"split": "train", "path": "coco/train-*"}]

    cache = fresh_cache(tmp_path, "configs")
    assert sorted(datasets.load_dataset(repo, split="train", cache_dir=cache)["id"]) == ["d1", "d2"]
    assert sorted(datasets.load_dataset(repo, "coco", split="train", cache_dir=cache)["id"]) == ["c1", "c2"]
    streamed = datasets.load_dataset(repo, "coco", split="train", streaming=True)
    assert sorted(r["id"] for r in streamed) == ["c1", "c2"]


def test_unchanged_repush_uploads_nothing(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/stable"
    splits = {"train": [["a", "b"], ["c"]], "test": [["t"]]}
    one, two = make_folder(tmp_path / "one", splits), make_folder(tmp_path / "two", splits)
    for a in sorted((one / "data").iterdir()):  # the same rows written twice give the same bytes
        assert a.read_bytes() == (two / "data" / a.name).read_bytes(), f"{a.name} is not deterministic"
    first = push_to_hub(one, repo)
    puts, batches, commits = (hub_server.count(r) for r in ("lfs_put", "lfs_batch", "commit"))
    assert puts == 3 + 1  # 3 shards + the preview

    again = push_to_hub(two, repo)
    assert not again.created_commit and again.commit_sha == first.commit_sha == head(hub_server, repo)
    assert again.uploaded == () and len(again.unchanged) == 3 + 2  # shards, README, preview
    assert (hub_server.count("lfs_put"), hub_server.count("lfs_batch"), hub_server.count("commit")) == (
        puts,
        batches,
        commits,
    )

    changed = make_folder(tmp_path / "three", {"train": [["a", "b"], ["c"]], "test": [["t", "u"]]})
    third = push_to_hub(changed, repo)
    # only the changed shard is sent (the preview may change too: it shows the first rows of every split)
    assert set(third.uploaded) - {"preview.png"} == {"data/test-00000-of-00001.parquet", "README.md"}
    assert {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"} <= set(third.unchanged)
    assert hub_server.count("lfs_put") - puts == len(third.uploaded) - 1  # README.md goes inline, not LFS


def test_push_over_a_repo_made_by_datasets_replaces_its_shards(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/was-datasets"
    datasets.Dataset.from_dict({"x": [1, 2]}).push_to_hub(repo)
    old_name = "data/train-00000-of-00002-0a1b2c3d.parquet"  # how older datasets versions named shards
    HfApi().upload_file(path_or_fileobj=b"PAR1 old", path_in_repo=old_name, repo_id=repo, repo_type="dataset")
    HfApi().upload_file(
        path_or_fileobj=b"keep", path_in_repo="data/notes.txt", repo_id=repo, repo_type="dataset"
    )
    result = push_to_hub(make_folder(tmp_path / "v1", {"train": [["a", "b"]]}), repo)
    assert old_name in result.deleted
    files = hub_server.files_at(repo)
    assert sorted(p for p in files if p.endswith(".parquet")) == ["data/train-00000-of-00001.parquet"]
    assert files["data/notes.txt"] == b"keep"  # not a shard: left alone
    ds = datasets.load_dataset(repo, split="train", cache_dir=fresh_cache(tmp_path, "replaced"))
    assert ds.column_names[0] == "id" and sorted(ds["id"]) == ["a", "b"]


def test_max_shard_size_reshards_only_large_splits(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/resharded"
    folder = make_folder(tmp_path / "big", {"train": [[f"r{i}" for i in range(12)]], "test": [["t"]]})
    shard = folder / "data" / "train-00000-of-00001.parquet"
    limit = shard.stat().st_size // 3
    assert (folder / "data" / "test-00000-of-00001.parquet").stat().st_size < limit
    result = push_to_hub(folder, repo, max_shard_size=limit)
    train = sorted(p for p in hub_server.files_at(repo) if p.startswith("data/train-"))
    assert len(train) >= 3 and all(p.endswith(f"-of-{len(train):05d}.parquet") for p in train)
    assert "data/test-00000-of-00001.parquet" in result.uploaded
    ds = datasets.load_dataset(repo, split="train", cache_dir=fresh_cache(tmp_path, "reshard"))
    assert ds["id"] == [f"r{i}" for i in range(12)]  # every row, in order
    assert pq.read_metadata(shard).num_rows == 12  # the source folder was not modified
    # written as the builder writes: media bytes stored as they are, the text compressed
    part = pq.ParquetFile(pa.BufferReader(hub_server.files_at(repo)[train[0]])).metadata.row_group(0)
    compression = {part.column(c).path_in_schema: part.column(c).compression for c in range(part.num_columns)}
    assert compression["images.list.element.bytes"] == "UNCOMPRESSED"
    assert compression["conversations.list.element.value"] == "SNAPPY"
    # and with the choices the source files were written with (datasets' to_parquet: CDC, page index)
    source, written = (
        pq.read_metadata(shard),
        pq.read_metadata(pa.BufferReader(hub_server.files_at(repo)[train[0]])),
    )
    assert uses_cdc(source) and uses_cdc(written)
    assert written.row_group(0).column(0).has_offset_index
    again = push_to_hub(folder, repo, max_shard_size=limit)  # re-sharding is deterministic
    assert not again.created_commit and again.uploaded == ()


# --------------------------------------------------------------------------------------------- auth


def test_private_repo_without_token_is_a_clear_error(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = f"{TEST_USER}/secret"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["s"]]}), repo, private=True)
    assert hub_server.repo(repo).private
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError) as info:
        push_to_hub(tmp_path / "v1", repo)
    assert "token" in str(info.value) or "not logged in" in str(info.value)
    assert "hf auth login" in (info.value.hint or "")
    with pytest.raises(datasets.exceptions.DatasetNotFoundError):
        datasets.load_dataset(repo, split="train", cache_dir=fresh_cache(tmp_path, "anon"))
    # someone else's valid token: no access, still no leak of the repository's existence
    with pytest.raises(HubError) as info:
        push_to_hub(tmp_path / "v1", repo, token=hub_server.token_for(OTHER_USER))
    assert "no access" in str(info.value) or "cannot write" in str(info.value)


def test_token_saved_by_hf_auth_login_is_used(
    hub_server: HubServer, hub_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_TOKEN")
    Path(hf_constants.HF_TOKEN_PATH).write_text(hub_token)  # where `hf auth login` saves it
    result = push_to_hub(
        make_folder(tmp_path / "v1", {"train": [["a"]]}), f"{TEST_USER}/logged-in", private=True
    )
    assert result.created_commit and hub_server.repo(f"{TEST_USER}/logged-in").private


def test_bad_token_is_a_clear_error_and_never_shown(hub_server: HubServer, tmp_path: Path) -> None:
    bad = "hf_bad_0123456789abcdef0123456789"
    with pytest.raises(HubError) as info:
        push_to_hub(make_folder(tmp_path / "v1", {"train": [["a"]]}), f"{TEST_USER}/x", token=bad)
    assert "refused the token" in str(info.value)
    assert bad not in str(info.value) and bad not in (info.value.hint or "")
    assert TEST_USER + "/x" not in {repo for _, repo in hub_server.repos}


def test_token_never_printed_or_logged(
    hub_server: HubServer,
    hub_token: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from huggingface_hub.utils import logging as hf_logging

    caplog.set_level(logging.DEBUG)
    hf_logging.set_verbosity_debug()
    try:
        folder = make_folder(tmp_path / "v1", {"train": [["a"]]})
        assert cli_main(["push", str(folder), f"{TEST_USER}/logged", "--tag", "v1"]) == 0
        assert cli_main(["push", str(folder), f"{TEST_USER}/logged", "--tag", "v1"]) == 1  # error path too
        push_to_hub(folder, f"{TEST_USER}/logged", token=hub_token, revision="dev")
    finally:
        hf_logging.set_verbosity_warning()
    out = capsys.readouterr()
    assert caplog.records, "nothing was logged: the check would be empty"
    for text in (caplog.text, out.out, out.err):
        assert hub_token not in text


# --------------------------------------------------------------------------------------------- failures


def test_upload_failing_midway_then_rerun_uploads_only_the_rest(
    hub_server: HubServer, tmp_path: Path
) -> None:
    repo = f"{TEST_USER}/interrupted"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["old"]]}), repo)
    before, files_before = head(hub_server, repo), hub_server.files_at(repo)
    folder = make_folder(tmp_path / "v2", {"train": [["a"], ["b"], ["c"], ["d"]]})
    # the first upload lands, then the storage fails (507 is not retried by the client)
    hub_server.inject("lfs_put", status=507, after=1, times=100)
    with pytest.raises(HubError) as info:
        push_to_hub(folder, repo)
    assert "507" in str(info.value) and "again" in (info.value.hint or "")
    assert head(hub_server, repo) == before and hub_server.files_at(repo) == files_before  # no half commit
    stored = set(hub_server.repo(repo).lfs_objects)
    assert hub_server.count("lfs_put", status=200) >= 2  # v1's shard+preview, then at least one of v2

    hub_server.clear_faults()
    puts = hub_server.count("lfs_put")
    result = push_to_hub(folder, repo)
    assert result.created_commit and hub_server.repo(repo).commits[result.commit_sha].parent == before
    new_objects = set(hub_server.repo(repo).lfs_objects) - stored
    lfs_files = [p for p in result.uploaded if p != "README.md"]  # 4 shards + preview
    assert hub_server.count("lfs_put") - puts == len(new_objects) < len(lfs_files)  # only what was missing
    ds = datasets.load_dataset(repo, split="train", cache_dir=fresh_cache(tmp_path, "rerun"))
    assert sorted(ds["id"]) == ["a", "b", "c", "d"]


def test_commit_failing_keeps_branch_then_rerun_commits_without_reupload(
    hub_server: HubServer, tmp_path: Path
) -> None:
    repo = f"{TEST_USER}/commit-fails"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["old"]]}), repo)
    before = head(hub_server, repo)
    folder = make_folder(tmp_path / "v2", {"train": [["a", "b"]]})
    hub_server.inject("commit", status=500, times=100)
    with pytest.raises(HubError):
        push_to_hub(folder, repo)
    assert hub_server.count("commit", status=500) == len(hub_module.RETRY_DELAYS) + 1  # retried, then gave up
    assert head(hub_server, repo) == before
    hub_server.clear_faults()
    puts = hub_server.count("lfs_put")
    result = push_to_hub(folder, repo)
    assert hub_server.count("lfs_put") == puts  # the shards were already on the Hub
    assert hub_server.repo(repo).commits[result.commit_sha].parent == before


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 429},
        {"reset": True},
        {"reset": True, "apply_first": True},  # the commit landed but its answer was lost
    ],
    ids=["503", "429", "reset", "answer-lost"],
)
def test_transient_commit_errors_are_retried(
    hub_server: HubServer, tmp_path: Path, fault: dict[str, Any]
) -> None:
    repo = f"{TEST_USER}/flaky"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["old"]]}), repo)
    before = head(hub_server, repo)
    hub_server.inject("commit", **fault)
    result = push_to_hub(make_folder(tmp_path / "v2", {"train": [["new"]]}), repo, tag="v2")
    r = hub_server.repo(repo)
    assert head(hub_server, repo) == result.commit_sha == r.tags["v2"]
    assert r.commits[result.commit_sha].parent == before  # exactly one new commit
    assert hub_server.count("commit") == 3  # first push, failed attempt, retry


def test_rate_limit_retry_after_is_honoured(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llava_hf.hub import retries as _hub_errors

    waits: list[float] = []
    monkeypatch.setattr(_hub_errors, "_sleep", waits.append)  # record the waits instead of sleeping
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["old"]]}), f"{TEST_USER}/rate")
    hub_server.inject("commit", status=429, headers={"Retry-After": "7"})
    result = push_to_hub(make_folder(tmp_path / "v2", {"train": [["new"]]}), f"{TEST_USER}/rate")
    assert result.created_commit and waits == [7.0]


def test_concurrent_push_fails_cleanly(hub_server: HubServer, tmp_path: Path) -> None:
    repo = f"{TEST_USER}/raced"
    push_to_hub(make_folder(tmp_path / "v1", {"train": [["old"]]}), repo)
    other: list[str] = []
    hub_server.on_next(
        "preupload",
        lambda s: other.append(s.commit_direct(repo, {"data/train-00000-of-00001.parquet": b"x" * 9})),
    )
    with pytest.raises(PushConflictError) as info:
        push_to_hub(make_folder(tmp_path / "v2", {"train": [["mine"]]}), repo)
    assert "again" in (info.value.hint or "")
    assert head(hub_server, repo) == other[0]  # only the other push landed, nothing mixed
    result = push_to_hub(tmp_path / "v2", repo)  # re-running starts from the new head
    assert hub_server.repo(repo).commits[result.commit_sha].parent == other[0]


# --------------------------------------------------------------------------------------------- CLI


def test_cli_push_happy_path(
    hub_server: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "v1", {"train": [["a", "b"]]})
    repo = f"{TEST_USER}/cli"
    code = cli_main(
        ["push", str(folder), repo, "--tag", "v1.0", "--license", "cc-by-4.0", "--message", "First"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"datasets.load_dataset('{repo}', revision='v1.0')" in out
    r = hub_server.repo(repo)
    assert r.commits[r.tags["v1.0"]].title == "First"
    assert card_yaml(hub_server, repo)["license"] == "cc-by-4.0"
    assert cli_main(["push", str(folder), repo]) == 0
    assert "Nothing changed" in capsys.readouterr().out
    assert cli_main(["push", str(folder), repo, "--config-name", "extra", "--private"]) == 0
    assert "'extra'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["{folder}", "{user}/cli-err", "--tag", "v1.0"], 1, "already exists"),
        (["{folder}", "not-a-repo-id"], 2, "namespace/name"),
        (["{folder}", "{user}/cli-err", "--image-folder", "{folder}"], 2, "only apply to JSON"),
        (["{folder}", "{user}/cli-err", "--config-name", "data"], 2, "reserved"),
        (["{tmp}/notes.txt", "{user}/cli-err"], 2, "not a built folder"),
        (["{tmp}/demo_oot", "{user}/cli-err"], 2, "there is no local folder or file"),
        (["{folder}", "someone-else/cli-err"], 1, "cannot write"),
    ],
    ids=[
        "tag-exists",
        "bad-repo-id",
        "media-options-on-folder",
        "reserved-config",
        "bad-source",
        "typo-source",
        "no-rights",
    ],
)
def test_cli_push_errors(
    hub_server: HubServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    folder = make_folder(tmp_path / "v1", {"train": [["a"]]})
    (tmp_path / "notes.txt").write_text("not data")
    push_to_hub(folder, f"{TEST_USER}/cli-err", tag="v1.0")
    fmt = {"folder": str(folder), "user": TEST_USER, "tmp": str(tmp_path)}
    assert cli_main(["push", *(a.format(**fmt) for a in argv)]) == code
    err = capsys.readouterr().err
    assert message in err and "hint:" in err


def test_cli_bad_token_exits_1(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_valid_token_at_all")
    folder = make_folder(tmp_path / "v1", {"train": [["a"]]})
    assert cli_main(["push", str(folder), f"{TEST_USER}/cli-bad"]) == 1
    err = capsys.readouterr().err
    assert "refused the token" in err and "hf_not_a_valid_token_at_all" not in err


def _cli_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``llava-hf ARGS`` in a fresh process running this checkout's code."""
    repo_root = str(Path(__file__).resolve().parent.parent)
    full_env = {**os.environ, "PYTHONPATH": repo_root, "USE_TORCH": "0", **env}
    full_env.pop("LLAVA_HF_DEBUG", None)
    code = "import sys; from llava_hf.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=full_env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_cli_push_in_offline_mode_fails_at_once_without_a_request(
    hub_server: HubServer, tmp_path: Path, variable: str
) -> None:
    """Offline mode is a setting, not a network fault: one line naming the variable, no retry, no request."""
    folder = make_folder(tmp_path / "v1", {"train": [["a"]]})
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": "t", "conversations": [{"from": "human", "value": "q"}]}) + "\n")
    env = {variable: "1", "HF_ENDPOINT": hub_server.endpoint, "HF_HUB_DISABLE_XET": "1"}
    for args in (
        [str(folder), f"{TEST_USER}/offline"],
        [str(data), f"{TEST_USER}/offline", "--image-folder", str(tmp_path)],  # not built first
    ):
        done = _cli_process("push", *args, env=env)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[0] == (
            f"llava-hf push: error: pushing to {TEST_USER}/offline needs the Hub, and offline mode is on "
            f"({variable}=1): nothing was sent"
        )
        assert f"env -u {variable} llava-hf" in lines[1]
        assert "retrying" not in done.stderr and "Traceback" not in done.stderr
    assert hub_server.log == []  # not one request reached the Hub


def test_push_to_hub_in_offline_mode_sends_nothing(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    folder = make_folder(tmp_path / "v1", {"train": [["a"]]})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # what the variable sets at import
    with pytest.raises(HubError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)") as info:
        push_to_hub(folder, f"{TEST_USER}/offline")
    assert "env -u HF_HUB_OFFLINE" in (info.value.hint or "")
    assert hub_server.log == []


def test_cli_push_of_a_missing_local_source_fails_before_any_request(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "demo_out", {"train": [["a"]]})
    capsys.readouterr()
    for args in (["demo_oot"], ["demo_oot.json"], ["demo_out", "data.json"]):
        assert cli_main(["push", *args, f"{TEST_USER}/typo", "--image-folder", "."]) == 2
        err = capsys.readouterr().err
        missing = args[0] if args[0] != "demo_out" else "data.json"
        assert err.startswith(f"llava-hf push: error: there is no local folder or file {missing!r}"), err
        assert "hint: check the path" in err
    assert hub_server.log == []


def _unknown_host() -> BaseException:
    import httpx2

    err = httpx2.ConnectError("[Errno -2] Name or service not known")
    err.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return err


@pytest.mark.parametrize(
    ("make_error", "attempts"),
    [
        (lambda: __import__("huggingface_hub").errors.OfflineModeIsEnabled("offline mode is enabled"), 1),
        (_unknown_host, 1),
        (lambda: __import__("httpx2").UnsupportedProtocol("Request URL is missing a protocol"), 1),
        (lambda: ValueError("not a Hub error"), 1),
        (lambda: __import__("httpx2").ConnectError("[Errno 111] Connection refused"), 3),
        (lambda: __import__("httpx2").ReadTimeout("timed out"), 3),
    ],
    ids=["offline", "unknown-host", "no-protocol", "other", "refused", "timeout"],
)
def test_retry_only_retries_what_another_attempt_can_fix(
    monkeypatch: pytest.MonkeyPatch, make_error: Any, attempts: int
) -> None:
    from llava_hf.hub import retries as _hub_errors

    waits: list[float] = []
    monkeypatch.setattr(_hub_errors, "_sleep", waits.append)
    calls = 0

    def fail() -> None:
        nonlocal calls
        calls += 1
        raise make_error()

    with pytest.raises(Exception) as info:
        _hub_errors.retry("do it", fail, (1.0, 2.0))
    assert type(info.value) is type(make_error())
    assert calls == attempts and waits == [1.0, 2.0][: attempts - 1]


# --------------------------------------------------------------------------------------------- JSON sources


def test_json_source_is_built_then_pushed(
    hub_server: HubServer,
    llava_dir: Path,
    write_json: Any,
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llava_hf import build_folder

    records = [r for r in sample_records if "video" not in r]
    data = write_json(records, "data.json")
    images = str(llava_dir / "images")
    repo = f"{TEST_USER}/from-json"
    assert cli_main(["push", str(data), repo, "--image-folder", images, "--tag", "v1"]) == 0
    capsys.readouterr()
    ds = datasets.load_dataset(repo, split="train", cache_dir=fresh_cache(tmp_path, "json"))
    assert sorted(ds["id"]) == sorted(str(r["id"]) for r in records)

    # The builder's shards are deterministic: a separate build of the same JSON pushes nothing new.
    built = build_folder(str(data), tmp_path / "built", image_folder=images)
    puts = hub_server.count("lfs_put")
    again = push_to_hub(built.output_dir, repo)
    assert not again.created_commit, f"re-built data differs from the pushed data: {again.uploaded}"
    assert hub_server.count("lfs_put") == puts


def test_json_source_without_media_options_builds_next_to_the_json(
    hub_server: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "1.jpg").write_bytes(JPEGS[0].read_bytes())
    record = {
        "id": "j1",
        "image": "pics/1.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"},
            {"from": "gpt", "value": "A photo."},
        ],
    }
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(record) + "\n", encoding="utf-8")
    result = push_to_hub(data, f"{TEST_USER}/jsonl")
    assert "data/train-00000-of-00001.parquet" in result.uploaded
    with pytest.raises(UsageError, match="not a built folder"):
        push_to_hub(tmp_path / "pics" / "1.jpg", f"{TEST_USER}/jsonl")


def test_cli_push_mixture_builds_and_pushes_the_seeded_selection(
    hub_server: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llava_hf.mixture import load_mixture
    from tests.test_mixture import write_media_sources

    yaml_file = write_media_sources(tmp_path / "src")
    repo = f"{TEST_USER}/mix"
    assert cli_main(["push", "--mixture", str(yaml_file), "--seed", "3", repo, "--tag", "v1"]) == 0
    assert "Pushed config 'default'" in capsys.readouterr().out
    expected = load_mixture(yaml_file, seed=3)
    rows = datasets.load_dataset(repo, split="train", revision="v1").select_columns(["id", "source"])
    assert [r["source"] for r in rows] == [name for name, _ in expected.selection]
    assert len(rows) == expected.num_rows
    card = HfApi().hf_hub_download  # the card summarises the mixture: its seed and sources
    readme = Path(card(repo, "README.md", repo_type="dataset", revision="v1")).read_text()
    assert "seed" in readme.lower() and "text" in readme
    assert cli_main(["push", "--mixture", str(yaml_file), "some.json", repo]) == 2
