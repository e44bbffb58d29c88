"""Shared fixtures: an isolated HF home for every test, and small LLaVA data built in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.media", "tests.fixtures.hub", "tests.fixtures.http_server"]

DATA = Path(__file__).parent / "data"
REAL = DATA / "real"

# Read at import time by huggingface_hub and datasets: set before any test imports them.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HF_HOME and every cache at a temporary folder, so no test reads or writes ~/.cache."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("LLAVA_HF_DEBUG", raising=False)
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", home / "datasets" / "downloads")
    monkeypatch.setattr(
        datasets.config, "EXTRACTED_DATASETS_PATH", home / "datasets" / "downloads" / "extracted"
    )
    return home


def _hypothesis_profile() -> None:
    """Deterministic property tests with no per-example deadline: the 2-core CI machine is noisy."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "llava_hf", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "llava_hf"))


_hypothesis_profile()
