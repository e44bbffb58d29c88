"""The package logger and progress bars: datasets' switches apply, also before datasets is imported."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from llava_hf.utils.logging import tqdm
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

    from llava_hf.utils.logging import tqdm

    datasets.disable_progress_bars()
    try:
        bar = tqdm(total=1)
        assert bar.disable
        bar.close()
    finally:
        datasets.enable_progress_bars()


# ------------------------------------------------------------------------------ where a bar is written


class Clock:
    """A clock the test moves (tqdm reads ``tqdm.std.time``): no test waits, no timed assertion."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import tqdm.std

    fake = Clock()
    monkeypatch.setattr(tqdm.std, "time", fake)
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    return fake


def _run_bar(stream: io.StringIO, clock: Clock, steps: int = 1000, tick: float = 0.1) -> str:
    from llava_hf.utils.logging import tqdm

    bar = tqdm(total=steps, desc="work", file=stream)
    for _ in range(steps):
        clock.now += tick
        bar.update(1)
    bar.close()
    return stream.getvalue()


def test_a_bar_written_to_a_log_prints_a_plain_line_every_few_seconds(clock: Clock) -> None:
    from llava_hf.utils.logging import LINE_INTERVAL

    text = _run_bar(io.StringIO(), clock)  # 1000 updates over 100 s
    assert "\r" not in text
    lines = text.splitlines()
    assert all(line.startswith("work:") for line in lines)
    # one line at the start, then at most one per LINE_INTERVAL, and the last state
    assert 3 <= len(lines) <= 100 / LINE_INTERVAL + 2
    assert "1000/1000" in lines[-1] and "1000/1000" not in lines[-2]


def test_a_bar_on_a_terminal_updates_in_place_as_tqdm_does(clock: Clock) -> None:
    text = _run_bar(Terminal(), clock)
    updates = text.count("\r")
    assert updates > 100  # tqdm's own pace: every 0.1 s of the 100 s
    assert "\n" not in text.rstrip("\n")  # one line, redrawn


def test_progress_counts_records_over_a_bar_in_bytes(clock: Clock) -> None:
    from llava_hf.utils.logging import Progress

    stream = io.StringIO()
    with Progress("Validating", 4000, file=stream) as progress:
        for k in range(1, 101):
            clock.now += 1
            progress.update(40 * k - 30, records=3)  # the position runs ahead of the records
        progress.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[-1].startswith("Validating: 100%") and "4.00kB/4.00kB" in lines[-1]
    assert "300 records, 3 records/s" in lines[-1]
    assert len(lines) <= 100 / 5 + 2
