"""``llava-hf build``: split syntax, input kinds, --on-error, --max-shard-size, --format messages,
errors as one line plus a hint, and the README's first command on the shipped demo."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest

from llava_hf import features_for
from llava_hf.cli import main
from tests.fixtures.build_corpus import bad_corpus, make_media, shape_records, summaries, turns, write_records

REPO = Path(__file__).resolve().parent.parent
README_COMMAND = (
    "pip install -e . && llava-hf build dataset_scripts/demo/demo.json --image-folder dataset_scripts/demo/images "
    "--video-folder dataset_scripts/demo/videos --output-dir demo_out"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``llava-hf`` command in a fresh process."""
    exe = shutil.which("llava-hf")
    command = (
        [exe]
        if exe
        else [sys.executable, "-c", "import sys; from llava_hf.cli import main; sys.exit(main())"]
    )
    env = {**os.environ, "USE_TORCH": "0"}
    env.pop("LLAVA_HF_DEBUG", None)
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return make_media(tmp_path)


def media_flags(media: tuple[Path, Path]) -> list[str]:
    return ["--image-folder", str(media[0]), "--video-folder", str(media[1])]


def test_split_syntax_with_jsonl_and_json_gz_inputs(
    tmp_path: Path, media: tuple[Path, Path], write_json: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    records = shape_records()
    flat = [r for r in records if isinstance(r, dict)]
    train = write_json(flat[:6], "train.jsonl")
    val = write_json(flat[6:], "val.json.gz")
    extra = write_json([flat[0] | {"id": "extra"}], "more.jsonl.gz")
    out = tmp_path / "out"
    argv = [
        "build",
        str(train),
        f"validation={val}",
        str(extra),
        "--output-dir",
        str(out),
        *media_flags(media),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Built" in printed and "train: 7" in printed and f"validation: {len(flat) - 6}" in printed
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
        "validation-00000-of-00001.parquet",
    ]
    dd = datasets.load_dataset(str(out))
    assert sorted(dd) == ["train", "validation"]
    train_ids = [str(r["id"]) if "id" in r else f"train-{i}" for i, r in enumerate(flat[:6])]
    assert train_ids[5] == "train-5"  # no id: "<file stem>-<index>"
    assert [r["id"] for r in dd["train"].select_columns(["id"])] == [*train_ids, "extra"]
    assert [r["source"] for r in dd["train"].select_columns(["source"])][-1] == "more.jsonl.gz"
    assert [r["id"] for r in dd["validation"].select_columns(["id"])] == [str(r["id"]) for r in flat[6:]]
    # --split names the split of plain FILEs
    out2 = tmp_path / "out2"
    assert main(["build", str(train), "--split", "test", "-o", str(out2), *media_flags(media)]) == 0
    assert sorted(p.name for p in (out2 / "data").iterdir()) == ["test-00000-of-00001.parquet"]


def test_on_error_skip_prints_the_counts(
    tmp_path: Path, media: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files, expected, rejected, kept = bad_corpus(tmp_path)
    out = tmp_path / "out"
    argv = [
        "build",
        *files["train"],
        "--on-error",
        "skip",
        "--num-proc",
        "2",
        "-o",
        str(out),
        *media_flags(media),
    ]
    assert main([*argv, "--records-per-shard", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"rejected {sum(expected.values())} record(s)" in printed
    for code, n in expected.items():
        assert any(line.split() == [code, str(n)] for line in printed.splitlines()), (code, printed)
    assert "placeholder_added=1" in printed  # the warning count
    assert f"{len(kept)} rows" in printed
    assert len((out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()) == len(rejected)


@pytest.mark.parametrize("extra", [[], ["--num-proc", "2", "--records-per-shard", "3"]])
def test_progress_to_a_pipe_is_plain_lines_counting_kept_and_rejected(
    tmp_path: Path, media: tuple[Path, Path], extra: list[str]
) -> None:
    """stderr not a terminal: a few plain lines, no carriage return; the bar's total (the inputs'
    bytes) is there from the first line and never grows; it ends counting the summary's records."""
    import time

    from tqdm import tqdm

    from llava_hf.utils.logging import LINE_INTERVAL

    files, _, rejected, kept = bad_corpus(tmp_path)
    total = sum(Path(f).stat().st_size for f in files["train"])
    started = time.monotonic()
    proc = cli(
        "build",
        *files["train"],
        "--on-error",
        "skip",
        "-o",
        str(tmp_path / "out"),
        *media_flags(media),
        *extra,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr
    bars = [line for line in proc.stderr.splitlines() if line.startswith("Building train:")]
    assert 2 <= len(bars) <= 2 + elapsed / LINE_INTERVAL
    assert all(f"/{tqdm.format_sizeof(total)}B " in line for line in bars)
    assert bars[0].startswith("Building train:   0%") and bars[-1].startswith("Building train: 100%")
    assert f"{len(kept)} rows" in proc.stdout and f"rejected {len(rejected)} record(s)" in proc.stdout
    assert f" {len(kept) + len(rejected)} records, " in bars[-1]


def test_a_bad_record_exits_1_with_one_line_and_a_hint(tmp_path: Path, media: tuple[Path, Path]) -> None:
    files, *_ = bad_corpus(tmp_path)
    out = tmp_path / "out"
    proc = cli("build", *files["train"], "--output-dir", str(out), *media_flags(media), cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("llava-hf build: error:")]
    assert len(errors) == 1 and "nope.jpg" in errors[0] and "record 1" in errors[0]
    assert any(line.strip().startswith("hint:") and "--on-error skip" in line for line in lines)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".llava-hf-" in p.name]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--image-folder", "/no/such/folder"], "does not exist"),
        (["--max-shard-size", "lots"], "--max-shard-size lots is not a size"),
        # the library says records_per_shard=0; the CLI names its flag
        (["--records-per-shard", "0"], "error: --records-per-shard 0 is not a positive integer"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, write_json: Any, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    data = write_json([{"id": "t", "conversations": turns(("human", "q"), ("gpt", "a"))}])
    out = tmp_path / "out"
    assert main(["build", str(data), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and "hint:" in err and "Traceback" not in err
    assert not out.exists()


def test_an_output_folder_the_file_system_refuses_is_one_line_and_a_hint(
    tmp_path: Path, write_json: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_json([{"id": "t", "conversations": turns(("human", "q"), ("gpt", "a"))}])
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "out"  # refused even to root, unlike a folder without write permission
    monkeypatch.delenv("LLAVA_HF_DEBUG", raising=False)
    assert main(["build", str(data), "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("llava-hf build: error: Not a directory: ") and str(out) in lines[0]
    assert lines[1].strip().startswith("hint:") and "not a folder" in lines[1]
    assert len(lines) == 3 and "Traceback" not in "\n".join(lines)
    monkeypatch.setenv("LLAVA_HF_DEBUG", "1")
    with pytest.raises(NotADirectoryError):
        main(["build", str(data), "-o", str(out)])


def test_a_bad_on_error_value_is_refused_by_the_parser(
    tmp_path: Path, write_json: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_json([{"id": "t", "conversations": turns(("human", "q"), ("gpt", "a"))}])
    with pytest.raises(SystemExit) as info:
        main(["build", str(data), "-o", str(tmp_path / "out"), "--on-error", "ignore"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_missing_input_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path / "nope.json"), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_max_shard_size_flag(tmp_path: Path, media: tuple[Path, Path]) -> None:
    records = [
        {
            "id": f"r{i}",
            "image": f"coco/train2017/{i % 3 + 1}.jpg",
            "conversations": turns(("human", "<image>"), ("gpt", "a")),
        }
        for i in range(130)
    ]
    data = write_records(tmp_path / "many.json", records)
    out = tmp_path / "out"
    assert main(["build", str(data), "--max-shard-size", "1MB", "-o", str(out), *media_flags(media)]) == 0
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.num_rows == 130


def test_format_messages(tmp_path: Path, media: tuple[Path, Path]) -> None:
    pytest.importorskip("llava_hf.chat", reason="llava_hf.chat.to_messages is not written yet")
    records = [r for r in shape_records() if isinstance(r, dict)][:5]
    data = write_records(tmp_path / "data.json", records)
    out = tmp_path / "out"
    assert main(["build", str(data), "--format", "messages", "-o", str(out), *media_flags(media)]) == 0
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features == features_for("messages")
    rows = list(ds.select_columns(["id", "messages"]))
    assert [r["id"] for r in rows] == ["000000033471", "42", "qwen-images", "vid-1", "vid-2"]
    first = rows[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant"]
    assert [p["type"] for p in first[0]["content"]].count("image") == 1
    kinds = [[p["type"] for m in r["messages"] for p in m["content"] if p["type"] != "text"] for r in rows]
    assert kinds == [["image"], ["image", "image"], ["image"], ["video"], ["video", "video"]]
    manifest = json.loads((out / "llava_hf.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "messages"


def test_the_readme_first_command_builds_the_demo(tmp_path: Path) -> None:
    demo = REPO / "dataset_scripts" / "demo"
    if not (demo / "demo.json").exists():
        pytest.skip("the demo data is not in this checkout")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert README_COMMAND in readme  # the command this test runs is the README's
    shutil.copytree(demo, tmp_path / "dataset_scripts" / "demo")
    command = shlex.split(README_COMMAND.split("&&", 1)[1])
    assert command[0] == "llava-hf"
    proc = cli(*command[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "demo_out"
    ds = datasets.load_dataset(str(out), split="train")
    records = json.loads((demo / "demo.json").read_text(encoding="utf-8"))
    assert ds.num_rows == len(records)
    assert [r["id"] for r in ds.select_columns(["id"])] == [str(r["id"]) for r in records]
    rows = summaries(ds)
    for record, row in zip(records, rows):
        for key, column, folder in (("image", "images", "images"), ("video", "videos", "videos")):
            paths = record.get(key, [])
            paths = [paths] if isinstance(paths, str) else paths
            assert [p for p, _ in row[column]] == paths
            assert [sha for _, sha in row[column]] == [
                hashlib.sha256((demo / folder / p).read_bytes()).hexdigest() for p in paths
            ]


def test_split_names_datasets_cannot_load_are_refused(
    tmp_path: Path, write_json: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_json([{"id": "t", "conversations": turns(("human", "q"), ("gpt", "a"))}])
    out = tmp_path / "out"
    assert main(["build", f"train-extra={data}", "-o", str(out)]) == 2
    assert "split name 'train-extra' is not valid" in capsys.readouterr().err
    assert not out.exists()
    assert main(["build", str(data), f"test.v2={data}", "-o", str(out)]) == 0
    dd = datasets.load_dataset(str(out))
    assert {name: d.num_rows for name, d in dd.items()} == {"train": 1, "test.v2": 1}
