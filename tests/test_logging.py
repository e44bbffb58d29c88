"""The package logger and progress bars: datasets' switches apply, also before datasets is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from llava_hf._logging import tqdm
ours = tqdm(total=1, desc="ours")
before, ours_disabled = "datasets" in sys.modules, ours.disable  # close() sets disable
ours.close()
from datasets.utils.tqdm import tqdm as datasets_tqdm
theirs = datasets_tqdm(total=1, desc="theirs")
theirs_disabled = theirs.disable
theirs.close()
print("RESULT", before, bool(ours_disabled), bool(theirs_disabled))
"""


@pytest.mark.parametrize("value", [None, "1", "true", "ON", "0", "no", ""])
def test_the_environment_switch_applies_before_datasets_is_imported(value: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    if value is not None:
        env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = value
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    _, before, ours, theirs = done.stdout.split()
    assert before == "False"  # the bar did not import datasets
    assert ours == theirs  # and it made datasets' decision
    assert ours == str(value is not None and value.upper() in {"1", "TRUE", "ON"})


def test_datasets_own_switch_applies_once_it_is_imported() -> None:
    import datasets

    from llava_hf._logging import tqdm

    datasets.disable_progress_bars()
    try:
        bar = tqdm(total=1)
        assert bar.disable
        bar.close()
    finally:
        datasets.enable_progress_bars()
