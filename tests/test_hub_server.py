"""The test Hub itself, driven by the real clients: if these fail, the push tests cannot be trusted."""

from __future__ import annotations

import datasets
import pytest
from huggingface_hub import HfApi

from tests.fixtures.hub import USER
from tests.hub_server import HubServer

pytestmark = pytest.mark.hub
pytest_plugins = ["tests.fixtures.hub"]  # until tests/conftest.py registers it


def test_datasets_push_tag_and_load_at_both_revisions(hub_server: HubServer) -> None:
    repo = f"{USER}/plain"
    datasets.Dataset.from_dict({"x": [1, 2, 3]}).push_to_hub(repo)
    api = HfApi()
    api.create_tag(repo, tag="v1.0", repo_type="dataset")
    datasets.Dataset.from_dict({"x": [4, 5]}).push_to_hub(repo)
    assert datasets.load_dataset(repo, revision="v1.0", split="train")["x"] == [1, 2, 3]
    assert datasets.load_dataset(repo, split="train")["x"] == [4, 5]
    streamed = datasets.load_dataset(repo, revision="v1.0", split="train", streaming=True)
    assert [row["x"] for row in streamed] == [1, 2, 3]
