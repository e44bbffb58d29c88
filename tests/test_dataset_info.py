"""LLaMA-Factory's dataset_info.json: entries read by name with their columns and tags (validate, build,
load with plain datasets, export)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest

from llava_hf import build_folder
from llava_hf.build.layout import split_files
from llava_hf.cli import main
from llava_hf.errors import UsageError
from llava_hf.export import export_llava
from llava_hf.records.dataset_info import read_dataset_info
from tests.hub_server import TEST_USER

PEERS = Path(__file__).parent / "data" / "peers"


@pytest.fixture
def info(tmp_path: Path) -> Path:
    shutil.copytree(PEERS, tmp_path / "data")
    return tmp_path / "data" / "dataset_info.json"


def conversations(folder: Path) -> list[list[tuple[str, str]]]:
    ds = datasets.load_dataset(str(folder), split="train").select_columns(["conversations"])
    return [[(t["from"], t["value"]) for t in row["conversations"]] for row in ds]


def test_several_names_validate_each_file_with_its_mapping(
    info: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "validate",
        str(info),
        "--dataset",
        "demo_messages",
        "--dataset",
        "renamed",
        "--dataset",
        "alpaca_images",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "messages.json, renamed.json, alpaca.json" in out and "records: 8" in out
    assert main(["validate", str(info.parent / "renamed.json")]) == 1  # unmapped, its turns are unknown


def test_a_bad_turn_of_a_mapped_file_is_reported(info: Path, tmp_path: Path) -> None:
    renamed = info.parent / "renamed.json"
    records = json.loads(renamed.read_text())
    records[1]["dialog"][1]["speaker"] = "bot"
    renamed.write_text(json.dumps(records))
    report = tmp_path / "problems.jsonl"
    assert main(["validate", str(info), "--dataset", "renamed", "--report", str(report)]) == 1
    [problem] = [json.loads(line) for line in report.read_text().splitlines()]
    assert problem["code"] == "unknown_role" and problem["index"] == 1


def test_alpaca_with_images_builds_as_turns(info: Path, tmp_path: Path) -> None:
    out = tmp_path / "built"
    build_folder(str(info), out, dataset="alpaca_images")
    assert conversations(out) == [
        [("human", "<image>Describe the picture."), ("gpt", "A photo.")],
        [("human", "Hi"), ("gpt", "Hello."), ("human", "Are they the same?\n<image><image>"), ("gpt", "No.")],
    ]
    images = datasets.load_dataset(str(out), split="train").cast_column(
        "images", datasets.List(datasets.Image(decode=False))
    )
    assert [[i["path"] for i in row] for row in images["images"]] == [
        ["mllm_demo_data/1.jpg"],
        ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"],
    ]
    assert images[0]["images"][0]["bytes"] == (PEERS / "mllm_demo_data" / "1.jpg").read_bytes()


def test_renamed_columns_and_tags_build_by_cli(info: Path, tmp_path: Path) -> None:
    out = tmp_path / "built"
    assert main(["build", str(info), "--dataset", "renamed", "--output-dir", str(out)]) == 0
    assert conversations(out) == [
        [("human", "<image>What is it?"), ("gpt", "A photo.")],
        [("human", "Hi"), ("gpt", "Hello.")],
    ]
    export_llava(out, tmp_path / "export", layout="sharegpt")  # asked for: LLaMA-Factory's default names
    exported = json.loads((tmp_path / "export" / "train.json").read_text())
    assert exported[0] == {
        "images": ["mllm_demo_data/1.jpg"],
        "conversations": [
            {"from": "human", "value": "<image>What is it?"},
            {"from": "gpt", "value": "A photo."},
        ],
        "system": "Be brief.",
    }
    entry = json.loads((tmp_path / "export" / "dataset_info.json").read_text())["train"]
    assert entry["formatting"] == "sharegpt" and entry["columns"]["images"] == "images"


@pytest.mark.parametrize(
    "name, file",
    [("renamed", "renamed.json"), ("alpaca_images", "alpaca.json"), ("demo_messages", "messages.json")],
)
def test_export_gives_back_the_entry_and_its_file(info: Path, tmp_path: Path, name: str, file: str) -> None:
    out, back = tmp_path / "built", tmp_path / "export"
    assert main(["validate", str(info), "--dataset", name]) == 0
    build_folder(str(info), out, dataset=name)
    assert datasets.load_dataset(str(out), split="train").num_rows == len(
        json.loads((info.parent / file).read_text())
    )
    assert main(["export", str(out), "--output-dir", str(back)]) == 0
    assert json.loads((back / "train.json").read_text()) == json.loads((info.parent / file).read_text())
    given = json.loads(info.read_text())[name]
    assert json.loads((back / "dataset_info.json").read_text()) == {
        name: {**given, "file_name": "train.json"}
    }
    media = [p.relative_to(info.parent) for p in (info.parent / "mllm_demo_data").iterdir()]
    exported = [m for m in media if (back / m).exists()]
    assert exported and all((back / m).read_bytes() == (info.parent / m).read_bytes() for m in exported)


def test_entries_that_cannot_be_read_say_why(info: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no entry 'nope'"):
        read_dataset_info(info, ["nope"])
    with pytest.raises(UsageError, match="no file_name"):
        read_dataset_info(info, ["from_hub"])
    assert (
        main(
            [
                "build",
                str(info),
                "--dataset",
                "renamed",
                "--dataset",
                "renamed",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )


def test_two_validate_processes_map_the_entry_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llava_hf import validate_parallel
    from llava_hf.records.dataset_info import by_file
    from llava_hf.validate import Validator

    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "asker", "assistant_tag": "answerer"}
    entry = {
        "file_name": "chat.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": tags,
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps({"chat": entry}))
    good = {"messages": [{"role": "asker", "content": "Hi"}, {"role": "answerer", "content": "Hello."}]}
    bad = {"messages": [{"role": "asker", "content": "Hi"}, {"role": "bot", "content": "Hello."}]}
    (tmp_path / "chat.json").write_text(json.dumps([*[good] * 80, bad, *[good] * 80]))
    validator = Validator(entries=by_file(read_dataset_info(tmp_path / "dataset_info.json", ["chat"])))
    monkeypatch.setattr(validate_parallel, "SPLIT_MIN", 0)
    assert validate_parallel.split_offset(str(tmp_path / "chat.json")) is not None  # two processes
    steps = list(validate_parallel.validate_files(validator, [str(tmp_path / "chat.json")], processes=2))
    assert [(p.code, p.index) for s in steps for p in s.problems] == [("unknown_role", 80)]
    assert sum(s.records for s in steps) == 161


NAMES = {"renamed": "renamed.json", "alpaca_images": "alpaca.json", "demo_messages": "messages.json"}


def test_several_names_build_one_config_each_and_export_every_file(info: Path, tmp_path: Path) -> None:
    out, back = tmp_path / "built", tmp_path / "export"
    renamed = info.parent / "renamed.json"
    records = json.loads(renamed.read_text())
    renamed.write_text(json.dumps([*records, {"dialog": "not turns"}]))
    args = ["build", str(info), *(a for name in NAMES for a in ("--dataset", name)), "--output-dir", str(out)]
    assert main([*args, "--on-error", "skip"]) == 0
    for name, file in NAMES.items():
        assert sorted(p.name for p in (out / name).glob("*.parquet")) == ["train-00000-of-00001.parquet"]
        rows = datasets.load_dataset(str(out), name, split="train")
        assert rows.num_rows == len(json.loads((PEERS / file).read_text()))
    assert datasets.get_dataset_config_names(str(out)) == list(NAMES)
    manifest = json.loads((out / "llava_hf.json").read_text())
    assert manifest["configs"]["renamed"]["entry"] == json.loads(info.read_text())["renamed"]
    assert manifest["configs"]["renamed"]["rejected"] == {"invalid_conversations": 1}
    [line] = (out / "rejected.jsonl").read_text().splitlines()
    assert json.loads(line)["config"] == "renamed" and json.loads(line)["index"] == 2
    renamed.write_text(json.dumps(records))  # the file given back is the one that built

    assert main(["export", str(out), "--output-dir", str(back)]) == 0
    given = json.loads(info.read_text())
    exported = json.loads((back / "dataset_info.json").read_text())
    assert exported == {name: {**given[name], "file_name": file} for name, file in NAMES.items()}
    for file in NAMES.values():
        assert json.loads((back / file).read_text()) == json.loads((PEERS / file).read_text())
    for media in (PEERS / "mllm_demo_data").iterdir():
        assert (back / "mllm_demo_data" / media.name).read_bytes() == media.read_bytes()


def _head_title(repo: str) -> str:
    from huggingface_hub import HfApi

    return str(HfApi().list_repo_commits(repo, repo_type="dataset")[0].title)


def test_a_folder_of_several_configs_pushes_each(info: Path, tmp_path: Path, hub_server: Any) -> None:
    from llava_hf.hub import push_to_hub

    out = tmp_path / "built"
    build_folder(str(info), out, dataset=list(NAMES))
    repo = f"{TEST_USER}/peers"
    commits = hub_server.count("commit")
    pushed = push_to_hub(out, repo)
    assert hub_server.count("commit") == commits + 1  # every config in one commit
    assert pushed.configs == tuple(NAMES) and pushed.created_commit
    assert f"Upload {', '.join(NAMES)} with llava-hf" == _head_title(repo)
    cache = str(tmp_path / "cache")
    for name, file in NAMES.items():
        rows = datasets.load_dataset(repo, name, split="train", cache_dir=cache)
        assert rows.num_rows == len(json.loads((PEERS / file).read_text()))
    export_llava(repo, tmp_path / "back", config="renamed")
    assert json.loads((tmp_path / "back" / "train.json").read_text()) == json.loads(
        (PEERS / "renamed.json").read_text()
    )
    with pytest.raises(UsageError, match="holds several configs"):
        split_files(out)  # e.g. make_card of the whole folder: each config has its own


def test_several_names_into_a_url_give_the_local_folder(info: Path, tmp_path: Path) -> None:
    """Each config's shards are written under the output's temporary prefix; the published folder is the
    local build's, the card loading from the URL."""
    local, out = tmp_path / "local" / "out", tmp_path / "url" / "out"
    names: dict[str, Any] = {"dataset": list(NAMES), "records_per_shard": 2}
    build_folder(str(info), local, **names)
    build_folder(str(info), out.as_uri(), **names)
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert files == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert any(f.endswith("-00001-of-00002.parquet") for f in files)
    for rel in files - {"README.md"}:
        assert (local / rel).read_bytes() == (out / rel).read_bytes(), rel
    card = (out / "README.md").read_text()
    assert card.replace(f'"{out.as_uri()}"', f'"{local}"') == (local / "README.md").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no temporary prefix left
    assert datasets.load_dataset(str(out), next(iter(NAMES)), split="train").num_rows > 0
