"""The test Hub itself, driven by the real clients: if these fail, the push tests cannot be trusted."""

from __future__ import annotations

import datasets
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub_server import OTHER_USER, TEST_USER, HubServer

pytestmark = pytest.mark.hub
pytest_plugins = ["tests.fixtures.hub"]  # until tests/conftest.py registers it


def test_datasets_push_tag_and_load_at_both_revisions(hub_server: HubServer) -> None:
    repo = f"{TEST_USER}/plain"
    datasets.Dataset.from_dict({"x": [1, 2, 3]}).push_to_hub(repo)
    api = HfApi()
    api.create_tag(repo, tag="v1.0", repo_type="dataset")
    datasets.Dataset.from_dict({"x": [4, 5]}).push_to_hub(repo)
    assert datasets.load_dataset(repo, revision="v1.0", split="train")["x"] == [1, 2, 3]
    assert datasets.load_dataset(repo, split="train")["x"] == [4, 5]
    streamed = datasets.load_dataset(repo, revision="v1.0", split="train", streaming=True)
    assert [row["x"] for row in streamed] == [1, 2, 3]


def test_pagination_ranges_and_revisions(hub_server: HubServer) -> None:
    api = HfApi()
    repo = f"{TEST_USER}/files"
    api.create_repo(repo, repo_type="dataset")
    ops = [CommitOperationAdd(f"dir/f{i}.txt", f"file {i}\n".encode()) for i in range(5)]
    first = api.create_commit(repo, operations=ops, commit_message="five files", repo_type="dataset")
    hub_server.page_size = 2
    files = api.list_repo_files(repo, repo_type="dataset")
    assert sorted(files) == sorted([".gitattributes", *(f"dir/f{i}.txt" for i in range(5))])
    assert hub_server.count("tree") >= 3  # followed the Link pages
    assert len(list(api.list_repo_commits(repo, repo_type="dataset"))) == 2
    infos = api.get_paths_info(repo, ["dir/f1.txt", "dir", "missing.txt"], repo_type="dataset")
    assert sorted(i.path for i in infos) == ["dir", "dir/f1.txt"]
    api.create_tag(repo, tag="v1", repo_type="dataset")
    api.create_commit(
        repo,
        operations=[CommitOperationAdd("dir/f0.txt", b"changed\n")],
        commit_message="edit",
        repo_type="dataset",
    )
    fs = HfFileSystem()
    with fs.open(f"datasets/{repo}@v1/dir/f0.txt", "rb", block_size=3) as f:
        f.seek(5)
        assert f.read(2) == b"0\n"  # a Range read
    assert fs.cat(f"datasets/{repo}@{first.oid[:10]}/dir/f0.txt") == b"file 0\n"  # short sha
    assert fs.cat(f"datasets/{repo}/dir/f0.txt") == b"changed\n"
    with pytest.raises(HfHubHTTPError) as info:
        api.create_tag(repo, tag="v1", repo_type="dataset")
    assert info.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(
            repo,
            operations=[CommitOperationAdd("x.txt", b"x")],
            commit_message="stale",
            repo_type="dataset",
            parent_commit=first.oid,
        )
    assert info.value.response.status_code == 412
    api.delete_repo(repo, repo_type="dataset")
    assert not api.repo_exists(repo, repo_type="dataset")


def test_auth_errors_map_to_the_client_exceptions(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = HfApi()
    repo = f"{TEST_USER}/private"
    api.create_repo(repo, repo_type="dataset", private=True)
    assert api.repo_info(repo, repo_type="dataset").private
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        HfApi(token=False).repo_info(repo, repo_type="dataset")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as stranger:
        HfApi(token=hub_server.token_for(OTHER_USER)).repo_info(repo, repo_type="dataset")
    assert stranger.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as bad:
        HfApi(token="hf_unknown").repo_info(repo, repo_type="dataset")
    assert bad.value.response.status_code == 401 and not isinstance(bad.value, RepositoryNotFoundError)


def test_faults_are_injected_once(hub_server: HubServer) -> None:
    api = HfApi()
    repo = f"{TEST_USER}/faulty"
    api.create_repo(repo, repo_type="dataset")
    hub_server.inject("commit", status=503)
    op = [CommitOperationAdd("a.txt", b"a")]
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(repo, operations=op, commit_message="a", repo_type="dataset")
    assert info.value.response.status_code == 503
    hub_server.inject("commit", reset=True)
    with pytest.raises(Exception) as dropped:
        api.create_commit(repo, operations=op, commit_message="a", repo_type="dataset")
    assert not isinstance(dropped.value, HfHubHTTPError)  # a transport error: no answer at all
    api.create_commit(repo, operations=op, commit_message="a", repo_type="dataset")
    assert hub_server.files_at(repo)["a.txt"] == b"a"
    assert hub_server.count("commit", status=200) == 1
