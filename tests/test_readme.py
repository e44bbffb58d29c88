"""Every fenced code block of README.md runs as written (issue 21, point 8).

Each block gets a kind, and no block is silently skipped: an unknown kind fails the test.

- ``install`` (```bash with ``pip install``): the README's two commands. Their installs and test
  command are checked against ``.ci/run``, which runs them on every CI run; the rest of the line (the
  demo build of command 1) runs here.
- ``bash``: runs with ``bash -euo pipefail`` in a working folder that holds a copy of the demo data
  (``dataset_scripts/demo``), with ``llava-hf`` and ``python`` running this checkout's code.
- ``python``: runs in a fresh interpreter in the same folder (``PYTHONPATH`` = this checkout).
- ``python-model``: names ``model``/``processor``, which the README says are yours; the tiny LLaVA of
  tests/fixtures/tiny_vlm.py stands in for them (slow: it trains).
- ``yaml``: its first line names the file (``# mix.yaml``); it is written there, and the blocks
  after it use it.
- ``text``: a diagram; nothing to run.

``push`` and the Hub reads run against the in-memory test Hub (tests/hub_server.py), where the user
of HF_TOKEN is a member of ``my-org``, so ``my-org/my-llava-data`` is written as the README says.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hub_server import HubServer

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CI = REPO / ".ci" / "run"
DEMO = REPO / "dataset_scripts" / "demo"
KINDS = ("install", "bash", "python", "python-model", "yaml", "text")
README_USER = "readme-user"
README_ORG = "my-org"  # the namespace the README's push names
TINY_MODEL = (
    "from tests.fixtures.tiny_vlm import make_tiny_vlm\n"
    "_tiny = make_tiny_vlm()\n"
    "model, processor = _tiny.model, _tiny.processor  # the README's 'your model'\n"
)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def kind(self) -> str:
        if self.lang == "bash":
            return "install" if re.search(r"(^|&&)\s*pip install\b", self.text, re.MULTILINE) else "bash"
        if self.lang == "python":
            # a name the block uses but never defines: the README's "your model"
            uses = re.search(r"(?<![\w.])(model|processor)\b(?!\s*=[^=])", self.text)
            return "python-model" if uses else "python"
        if self.lang == "yaml" and re.match(r"# [\w.-]+\.ya?ml\n", self.text):
            return "yaml"
        if self.lang == "text":
            return "text"
        return f"unknown ({self.lang or 'no language'})"

    def __str__(self) -> str:
        return f"README.md:{self.line} ```{self.lang} ({self.kind})"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in re.finditer(r"^```(\S*)\n(.*?)^```\s*$", text, re.MULTILINE | re.DOTALL):
        blocks.append(Block(text.count("\n", 0, m.start()) + 1, m[1], m[2]))
    return blocks


def commands(script: str) -> list[list[str]]:
    """The commands of a shell script: continuation lines joined, comments dropped, ``&&`` split."""
    joined = re.sub(r"\\\n", " ", script)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1 :]
    return [c for c in out if c]


def _without_quiet(command: list[str]) -> list[str]:
    """pip's quiet flag changes what is printed, not what is installed."""
    if command[:2] != ["pip", "install"]:
        return command
    return [w for w in command if w not in {"-q", "--quiet"}]


def test_every_block_has_a_known_kind() -> None:
    blocks = readme_blocks()
    listing = "\n".join(map(str, blocks))
    assert all(b.kind in KINDS for b in blocks), f"a README block of an unknown kind:\n{listing}"
    kinds = {b.kind for b in blocks}
    assert {"install", "bash", "python", "python-model", "yaml"} <= kinds, listing
    assert len([b for b in blocks if b.kind == "install"]) == 1, listing


def test_the_install_block_is_what_ci_runs() -> None:
    """Command 2's installs and test command are exactly the ones .ci/run runs (quiet flags aside)."""
    install = next(b for b in readme_blocks() if b.kind == "install")
    readme = commands(install.text)
    assert readme[0] == ["pip", "install", "-e", "."] and readme[1][0] == "llava-hf"  # command 1
    second = readme[2:]
    ci = [
        _without_quiet(c)
        for c in commands(CI.read_text(encoding="utf-8"))
        if c[:2] == ["pip", "install"] or c[:3] == ["python", "-m", "pytest"]
    ]
    assert ci == second, f".ci/run runs {ci}, the README's command 2 is {second}"
    # command 1's editable install is part of command 2's (the same project, with extras)
    assert any(c[:3] == ["pip", "install", "-e"] and c[3].startswith(".[") for c in ci)


# --------------------------------------------------------------------------------------------- running


@pytest.fixture
def readme_hub() -> Iterator[tuple[HubServer, str]]:
    token = "hf_readme_" + secrets.token_hex(16)
    server = HubServer(tokens={token: README_USER}, orgs={README_USER: [README_ORG]}).start()
    try:
        yield server, token
    finally:
        server.stop()


def _workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding the demo data as the README names it, and the environment to run blocks in."""
    work = tmp_path / "work"
    shutil.copytree(DEMO, work / "dataset_scripts" / "demo")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "llava-hf"  # this checkout's CLI with this interpreter, whatever is installed
    shim.write_text(
        f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
        "'import sys; from llava_hf.cli import main; sys.exit(main())' \"$@\"\n"
    )
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_XET": "1",
    }
    for name in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HF_TOKEN", "LLAVA_HF_DEBUG", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    return work, env


def _run(block: Block, work: Path, env: dict[str, str], *, prelude: str = "") -> None:
    if block.kind == "yaml":
        name = block.text.splitlines()[0][2:].strip()
        (work / name).write_text(block.text, encoding="utf-8")
        return
    if block.kind in {"python", "python-model"}:
        argv = [sys.executable, "-c", prelude + block.text]
    elif block.kind == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", block.text]
    else:
        raise AssertionError(f"{block}: not a block to run")
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{block} failed:\n{block.text}\n--- stderr:\n{done.stderr[-4000:]}"


def _run_command_1(install: Block, work: Path, env: dict[str, str]) -> None:
    """Command 1 of the install block without its `pip install` (checked against .ci/run instead)."""
    build = [c for c in commands(install.text) if c[0] == "llava-hf"]
    assert len(build) == 1, build
    script = shlex.join(build[0])
    _run(Block(install.line, "bash", script), work, env)


@pytest.mark.hub
def test_readme_blocks_run_as_written(readme_hub: tuple[HubServer, str], tmp_path: Path) -> None:
    server, token = readme_hub
    work, env = _workdir(tmp_path)
    env.update({"HF_ENDPOINT": server.endpoint, "HF_TOKEN": token, "USE_TORCH": "0"})
    ran = []
    for block in readme_blocks():
        if block.kind == "install":
            _run_command_1(block, work, env)
        elif block.kind in {"bash", "python", "yaml"}:
            _run(block, work, env)
        else:  # python-model: test_readme_training_block_runs; text: nothing to run
            assert block.kind in {"python-model", "text"}, block
            continue
        ran.append(block)
    assert len(ran) >= 8, "\n".join(map(str, ran))

    # what the blocks promised is there
    records = json.loads((DEMO / "demo.json").read_text(encoding="utf-8"))
    exported = json.loads((work / "demo_json" / "train.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in exported] == [str(r["id"]) for r in records]
    assert (work / "problems.jsonl").is_file()
    repo = server.repo(f"{README_ORG}/my-llava-data")
    assert "v1.0" in repo.tags
    mixture = json.loads((work / "mix_out" / "mixture.json").read_text(encoding="utf-8"))
    assert mixture["seed"] == 0


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_readme_training_block_runs(tmp_path: Path) -> None:
    """The README's TRL snippet on CPU, the tiny LLaVA standing in for 'your model'."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("trl")
    blocks = readme_blocks()
    training = [b for b in blocks if b.kind == "python-model"]
    assert training, "the README has no training block"
    work, env = _workdir(tmp_path)
    _run_command_1(next(b for b in blocks if b.kind == "install"), work, env)  # demo_out
    for block in training:
        _run(block, work, env, prelude=TINY_MODEL)
    states = sorted((work / "ckpt").glob("checkpoint-*/trainer_state.json"))
    assert states, "the trainer saved no checkpoint"
    state = json.loads(states[-1].read_text(encoding="utf-8"))
    assert state["global_step"] == 2  # max_steps, as the README's config says
