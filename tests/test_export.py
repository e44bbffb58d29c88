"""export_llava and ``llava-hf export``: JSON → build → export gives back the same records and
byte-identical media at their relative paths; unsafe stored paths never leave the export folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llava_hf import build_folder, features_for
from llava_hf.cli import main
from llava_hf.errors import UsageError
from llava_hf.export import export_llava
from tests.fixtures.build_corpus import NESTED_METADATA, make_media, turns, write_records
from tests.hub_server import TEST_USER, HubServer


def canonical_records() -> list[Any]:
    """Records already in LLaVA's canonical form (tags present, human/gpt roles, singular keys)."""
    return [
        {
            "id": "000000033471",
            "image": "coco/train2017/1.jpg",
            "conversations": turns(("human", "<image>\nWhat is it?"), ("gpt", "A bus.")),
        },
        {
            "id": 42,
            "image": ["coco/train2017/2.jpg", "coco/train2017/3.jpg"],
            "conversations": turns(
                ("system", "Be brief."), ("human", "<image> vs <image>"), ("gpt", "Same.")
            ),
            "task": "compare",
        },
        {
            "id": "vid",
            "video": "clips/4.mp4",
            "conversations": turns(("human", "<video>\nWhat moves?"), ("gpt", "Nothing.")),
        },
        {
            "id": "vids",
            "video": ["1.mp4", "2.avi"],
            "conversations": turns(("human", "<video><video>\nCompare."), ("gpt", "Alike.")),
        },
        {"id": "text", "conversations": turns(("human", "Hi"), ("gpt", "Hello")), **NESTED_METADATA},
        [
            {
                "id": "p0",
                "image": "gen/0.jpg",
                "conversations": turns(("human", "<image>\nColor?"), ("gpt", "Mixed.")),
            },
            {"id": "p1", "conversations": turns(("human", "Hallo?"), ("gpt", "Hallo.")), "lang": "de"},
        ],
        {
            "id": "gif",
            "image": "ocr_vqa/cover.jpg",
            "conversations": turns(("human", "<image>"), ("gpt", "Red.")),
        },
        [{"id": "p2", "conversations": turns(("human", "Alone?"), ("gpt", "Yes."))}],
    ]


def with_string_ids(item: Any) -> Any:
    if isinstance(item, list):
        return [with_string_ids(x) for x in item]
    return {**item, "id": str(item["id"])}


def media_of(records: list[Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"images": set(), "videos": set()}
    for item in records:
        for rec in item if isinstance(item, list) else [item]:
            for key, kind in (("image", "images"), ("video", "videos")):
                if key in rec:
                    out[kind].update([rec[key]] if isinstance(rec[key], str) else rec[key])
    return out


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def round_trip_input(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export_in")
    images, videos = make_media(root)
    records = canonical_records()
    train = write_records(root / "train.json", records)
    val = write_records(root / "val.json", [records[0], records[2]])
    built = root / "built"
    build_folder(
        {"train": str(train), "validation": str(val)},
        built,
        image_folder=str(images),
        video_folder=str(videos),
        num_proc=2,
        records_per_shard=2,
    )
    return {"root": root, "images": images, "videos": videos, "records": records, "built": built}


def check_export(out: Path, inp: dict[str, Any]) -> None:
    records = inp["records"]
    train = json.loads((out / "train.json").read_text(encoding="utf-8"))
    assert train == [with_string_ids(r) for r in records]
    assert all(
        isinstance(r["id"], str) for item in train for r in (item if isinstance(item, list) else [item])
    )
    validation = json.loads((out / "validation.json").read_text(encoding="utf-8"))
    assert validation == [with_string_ids(records[0]), with_string_ids(records[2])]
    wanted = media_of(records)
    assert files_under(out / "images") == wanted["images"]
    assert files_under(out / "videos") == wanted["videos"]
    for kind, folder in (("images", inp["images"]), ("videos", inp["videos"])):
        for rel in wanted[kind]:
            assert (out / kind / rel).read_bytes() == (folder / rel).read_bytes(), rel


def test_json_build_export_round_trip(round_trip_input: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "exported"
    result = export_llava(round_trip_input["built"], out)
    assert result.records == {"train": 8, "validation": 2}  # top-level items: packs are packed again
    assert result.renamed == {}
    check_export(out, round_trip_input)
    # the export builds again into the same rows (paths and bytes)
    rebuilt = tmp_path / "rebuilt"
    build_folder(
        {"train": str(out / "train.json"), "validation": str(out / "validation.json")},
        rebuilt,
        image_folder=str(out / "images"),
        video_folder=str(out / "videos"),
        records_per_shard=2,
    )
    first = pq.read_table(sorted((round_trip_input["built"] / "data").glob("train-*.parquet")))
    second = pq.read_table(sorted((rebuilt / "data").glob("train-*.parquet")))
    assert first.drop_columns(["source"]).equals(second.drop_columns(["source"]))


def test_cli_export_writes_the_same(
    round_trip_input: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert main(["export", str(round_trip_input["built"]), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train.json: 8 record(s)" in printed and "validation.json: 2 record(s)" in printed
    check_export(out, round_trip_input)
    only = tmp_path / "only"
    assert main(["export", str(round_trip_input["built"]), "--split", "validation", "-o", str(only)]) == 0
    assert sorted(p.name for p in only.glob("*.json")) == ["validation.json"]


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """A built-like folder written with plain pyarrow (stored paths chosen by the test)."""
    features = features_for()
    table = pa.Table.from_pylist([features.encode_example(r) for r in rows], schema=features.arrow_schema)
    (folder / "data").mkdir(parents=True)
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet")
    return folder


def row(rid: str, *images: tuple[str, bytes]) -> dict[str, Any]:
    return {
        "id": rid,
        "images": [{"bytes": b, "path": p} for p, b in images],
        "videos": [],
        "video_frames": [],
        "video_info": [],
        "audios": [],
        "audio_info": [],
        "conversations": turns(("human", "<image>" * len(images)), ("gpt", "a")),
        "source": "x.json",
        "metadata": {},
    }


def test_unsafe_stored_paths_stay_inside_the_export_folder(tmp_path: Path) -> None:
    jpeg = (Path(__file__).parent / "data" / "real" / "1.jpg").read_bytes()
    other = (Path(__file__).parent / "data" / "real" / "2.jpg").read_bytes()
    unsafe = [
        "../x.jpg",
        "/tmp/abs.jpg",
        "a/../../y.jpg",
        "..\\win.jpg",
        "~/home.jpg",
        "../../../../etc/z.jpg",
    ]
    rows = [row(f"u{i}", (path, jpeg + bytes([i]))) for i, path in enumerate(unsafe)]
    rows.append(row("ok", ("sub/ok.jpg", jpeg)))
    rows.append(row("clash", ("sub/ok.jpg", other)))  # a different file stored under the same path
    src = write_rows(tmp_path / "work" / "src", rows)
    out = tmp_path / "work" / "exported"
    before = files_under(tmp_path)
    result = export_llava(src, out)
    new_files = files_under(tmp_path) - before
    assert all(f.startswith("work/exported/") for f in new_files), new_files
    records = json.loads((out / "train.json").read_text(encoding="utf-8"))
    by_id = {r["id"]: r for r in records}
    for i, path in enumerate(unsafe):
        written = by_id[f"u{i}"]["image"]
        assert written.startswith("_outside/") and written.endswith(".jpg"), written
        target = (out / "images" / written).resolve()
        assert target.is_relative_to((out / "images").resolve())
        assert target.read_bytes() == jpeg + bytes([i])
        assert result.renamed[path] == written
    assert by_id["ok"]["image"] == "sub/ok.jpg" and (out / "images" / "sub/ok.jpg").read_bytes() == jpeg
    clash = by_id["clash"]["image"]
    assert clash.startswith("_conflicts/") and clash.endswith("/sub/ok.jpg")
    assert (out / "images" / clash).read_bytes() == other
    assert hashlib.sha256(other).hexdigest().startswith(clash.split("/")[1])


def test_export_of_a_dataset_without_the_schema_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"]}), folder / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(UsageError, match="llava-hf schema"):
        export_llava(folder, tmp_path / "out")
    with pytest.raises(UsageError):
        export_llava(tmp_path / "does-not-exist", tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_export_of_a_messages_build_restores_conversations(tmp_path: Path) -> None:
    pytest.importorskip(
        "llava_hf.chat", reason="llava_hf.chat (to_messages/from_messages) is not written yet"
    )
    images, videos = make_media(tmp_path / "in")
    records = [r for r in canonical_records() if isinstance(r, dict)]
    data = write_records(tmp_path / "in" / "train.json", records)
    built = tmp_path / "built"
    build_folder(str(data), built, image_folder=str(images), video_folder=str(videos), format="messages")
    out = tmp_path / "out"
    export_llava(built, out)
    assert json.loads((out / "train.json").read_text(encoding="utf-8")) == [
        with_string_ids(r) for r in records
    ]


def test_export_keeps_every_float_of_the_metadata_exactly(tmp_path: Path) -> None:
    # datasets' Json decoder reads 0.123456789012345 as 0.12345678901234501 and 5e-324 as 0.0
    floats = [0.123456789012345, 0.1 + 0.2, 1 / 3, 1.7976931348623157e308, 5e-324]
    records = [
        {
            "id": "a",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
            "f": floats,
        }
    ]
    data = write_records(tmp_path / "train.json", records)
    build_folder(str(data), tmp_path / "built")
    export_llava(tmp_path / "built", tmp_path / "out")
    (exported,) = json.loads((tmp_path / "out" / "train.json").read_text(encoding="utf-8"))
    assert exported == records[0]
    assert [repr(f) for f in exported["f"]] == [repr(f) for f in floats]


def test_export_never_replaces_a_folder_with_content(
    round_trip_input: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "train.json").write_text("[]")  # e.g. the user's original JSON and media
    with pytest.raises(UsageError, match="not empty"):
        export_llava(round_trip_input["built"], target)
    assert (target / "train.json").read_text() == "[]"
    empty = tmp_path / "empty"
    empty.mkdir()
    export_llava(round_trip_input["built"], empty, split="validation")
    assert (empty / "validation.json").is_file()


def test_export_keeps_the_users_folders_beside_its_output(
    round_trip_input: dict[str, Any], tmp_path: Path
) -> None:
    for name in ("out.incomplete", "out.old"):  # names llava-hf once used for its own working folders
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.json").write_text("[]")
    export_llava(round_trip_input["built"], tmp_path / "out", split="validation")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.incomplete", "out.old"]
    assert all((tmp_path / name / "mine.json").read_text() == "[]" for name in ("out.incomplete", "out.old"))


def test_cli_export_errors_are_one_line_and_a_hint(
    round_trip_input: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["export", str(round_trip_input["built"]), "-o", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llava-hf export: error: ") and "hint:" in err and "Traceback" not in err
    assert (busy / "keep.txt").read_text() == "mine"
    assert main(["export", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "out")]) == 2
    assert "there is no local folder" in capsys.readouterr().err


def test_several_configs_need_a_config_and_an_unknown_split_is_a_usage_error(
    round_trip_input: dict[str, Any], tmp_path: Path
) -> None:
    src = tmp_path / "multi"
    for config in ("a", "b"):
        (src / config).mkdir(parents=True)
        shard = next((round_trip_input["built"] / "data").glob("validation-*.parquet"))
        (src / config / "train-00000-of-00001.parquet").write_bytes(shard.read_bytes())
    (src / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*\n"
            for c in ("a", "b")
        )
        + "---\n"
    )
    with pytest.raises(UsageError, match="Config name is missing"):
        export_llava(src, tmp_path / "out")
    with pytest.raises(UsageError, match="cannot export"):
        export_llava(round_trip_input["built"], tmp_path / "out", split="nope")
    assert not (tmp_path / "out").exists()
    result = export_llava(src, tmp_path / "out_b", config="b")
    assert result.records == {"train": pq.read_metadata(shard).num_rows}
    assert json.loads((tmp_path / "out_b" / "train.json").read_text())[0]["id"]


# --------------------------------------------------------------------------------------------- SOURCE


@pytest.mark.parametrize("source", ["demo_oot", "./demo_oot", "~/demo_oot", "a/b/c", "demo.json", "out/"])
def test_cli_export_of_a_missing_local_path_says_so_at_once(
    hub_server: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
) -> None:
    """A SOURCE that is a path, not namespace/name, is never looked up on the Hub."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["export", source, "-o", "exported"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llava-hf export: error: there is no local folder {source!r}\n"), err
    assert "hint: check the path" in err and "Traceback" not in err
    assert hub_server.log == []
    assert not (tmp_path / "exported").exists()


def test_cli_export_of_a_hub_id_asks_the_hub_once(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = f"{TEST_USER}/nothing-here"
    assert main(["export", repo, "-o", "exported"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"llava-hf export: error: there is no local folder {repo!r}, and no dataset {repo!r} on the Hub "
        f"({hub_server.endpoint})"
    ), err
    assert [r.route for r in hub_server.log] == ["repo_info"]

    hub_server.inject("repo_info", status=503, times=10)  # a Hub in trouble: reported at once, not retried
    assert main(["export", repo, "-o", "exported"]) == 2
    err = capsys.readouterr().err
    assert f"there is no local folder {repo!r}, and the Hub ({hub_server.endpoint}) did not answer" in err
    assert "HTTP 503" in err and hub_server.count("repo_info", status=503) == 1

    endpoint = hub_server.endpoint
    hub_server.stop()  # nobody listening: the connection is refused
    assert main(["export", repo, "-o", "exported"]) == 2
    err = capsys.readouterr().err
    assert f"there is no local folder {repo!r}, and the Hub ({endpoint}) did not answer" in err
    assert "HF_ENDPOINT" in err


def test_export_of_a_hub_dataset_in_offline_mode_names_the_setting(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import datasets.config
    import huggingface_hub.constants as hf_constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what the variable sets in both libraries at import:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    repo = f"{TEST_USER}/not-cached"
    assert main(["export", repo, "-o", "exported"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"llava-hf export: error: there is no local folder {repo!r}, and offline mode is on (HF_HUB_OFFLINE=1)"
    ), err
    assert "env -u HF_HUB_OFFLINE" in err
    assert hub_server.log == []


def test_export_of_a_hub_dataset_by_its_id(
    hub_server: HubServer, round_trip_input: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """namespace/name that is not a local folder is read from the Hub, as before."""
    from llava_hf.hub import push_to_hub

    repo = f"{TEST_USER}/round-trip"
    push_to_hub(round_trip_input["built"], repo, tag="v1")
    monkeypatch.chdir(tmp_path)
    assert main(["export", repo, "--revision", "v1", "-o", "from_hub"]) == 0
    check_export(tmp_path / "from_hub", round_trip_input)


def _paths(item: Any, key: str) -> list[str]:
    value = item.get(key)
    return [] if value is None else [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("media_root", ["media", "."])
def test_media_root_holds_every_kind_under_one_root(
    round_trip_input: dict[str, Any], tmp_path: Path, media_root: str
) -> None:
    """A file mixing images and videos: every path resolves against the one root (Qwen-VL's data_path,
    LLaMA-Factory's media_dir), bytes identical; the same file builds again from that root."""
    out = tmp_path / "one-root"
    result = export_llava(round_trip_input["built"], out, media_root=media_root)
    root = out / media_root
    assert result.media_root == root and result.renamed == {}
    assert not (out / "images").exists() and not (out / "videos").exists()
    wanted = media_of(round_trip_input["records"])
    sources = {"image": round_trip_input["images"], "video": round_trip_input["videos"]}
    resolved: set[str] = set()
    for split in ("train", "validation"):
        for item in json.loads((out / f"{split}.json").read_text(encoding="utf-8")):
            for record in item if isinstance(item, list) else [item]:
                for kind in ("image", "video"):
                    for path in _paths(record, kind):
                        assert (root / path).read_bytes() == (sources[kind] / path).read_bytes(), path
                        resolved.add(path)
    assert resolved == wanted["images"] | wanted["videos"]
    json_files = {"train.json", "validation.json"} if media_root == "." else set()
    assert files_under(root) == resolved | json_files
    assert result.media_files == len(resolved)

    rebuilt = tmp_path / "rebuilt-one-root"
    build_folder(
        {"train": str(out / "train.json"), "validation": str(out / "validation.json")},
        rebuilt,
        image_folder=str(root),
        video_folder=str(root),
        records_per_shard=2,
    )
    first = pq.read_table(sorted((round_trip_input["built"] / "data").glob("train-*.parquet")))
    second = pq.read_table(sorted((rebuilt / "data").glob("train-*.parquet")))
    assert first.drop_columns(["source"]).equals(second.drop_columns(["source"]))


def test_media_root_one_path_names_one_file_whatever_its_kind(tmp_path: Path) -> None:
    """An image and a video stored under one path, and a media path that is a split file's name."""
    jpeg = (Path(__file__).parent / "data" / "real" / "1.jpg").read_bytes()
    mp4 = (Path(__file__).parent / "data" / "real" / "4.mp4").read_bytes()
    clip = row("clip")
    clip["conversations"] = turns(("human", "<video>"), ("gpt", "a"))
    clip["videos"] = [{"bytes": mp4, "path": "shared/x"}]
    clip["video_info"] = [
        {"duration": 5.0, "fps": 30.0, "num_frames": 150, "width": 224, "height": 224, "codec": "h264"}
    ]
    rows = [row("pic", ("shared/x", jpeg)), clip, row("named", ("train.json", jpeg))]
    src = write_rows(tmp_path / "src", rows)
    out = tmp_path / "out"
    result = export_llava(src, out, media_root=".")
    by_id = {r["id"]: r for r in json.loads((out / "train.json").read_text(encoding="utf-8"))}
    assert by_id["pic"]["image"] == "shared/x" and (out / "shared/x").read_bytes() == jpeg
    assert (
        by_id["clip"]["video"].startswith("_conflicts/")
        and (out / by_id["clip"]["video"]).read_bytes() == mp4
    )
    assert by_id["named"]["image"].startswith("_conflicts/")
    assert (out / by_id["named"]["image"]).read_bytes() == jpeg
    assert json.loads((out / "train.json").read_text(encoding="utf-8"))  # the split file is intact
    assert set(result.renamed) == {"shared/x", "train.json"}


@pytest.mark.parametrize("media_root", ["../media", "/tmp/media", "a/../../b"])
def test_media_root_must_stay_inside_the_output_folder(tmp_path: Path, media_root: str) -> None:
    with pytest.raises(UsageError, match="not a folder inside the output folder") as err:
        export_llava(tmp_path / "nothing", tmp_path / "out", media_root=media_root)
    assert "--media-root media" in (err.value.hint or "")
    assert not (tmp_path / "out").exists()


def test_cli_media_root(
    round_trip_input: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-root"
    assert main(["export", str(round_trip_input["built"]), "-o", str(out), "--media-root", "data"]) == 0
    assert "one root for every kind" in capsys.readouterr().out
    wanted = media_of(round_trip_input["records"])
    assert files_under(out / "data") == wanted["images"] | wanted["videos"]


def qwen_paths(record: dict[str, Any]) -> list[str]:
    """The media paths Qwen-VL's finetune loader joins to its one ``data_path`` (``image``/``video``)."""
    paths: list[str] = []
    for key in ("image", "video"):
        value = record.get(key)
        paths += [value] if isinstance(value, str) else list(value or [])
    return paths


def test_a_mixed_file_with_one_root_exports_one_media_tree(tmp_path: Path) -> None:
    from tests.fixtures.media import REAL

    src = tmp_path / "src"
    (src / "clips").mkdir(parents=True)
    (src / "1.jpg").write_bytes((REAL / "1.jpg").read_bytes())
    (src / "clips" / "005.mp4").write_bytes((REAL / "1.mp4").read_bytes())
    records = [
        {"id": "a", "image": "1.jpg", "conversations": turns(("human", "<image>\nWhat?"), ("gpt", "A bus."))},
        {
            "id": "b",
            "video": "clips/005.mp4",
            "conversations": turns(("human", "<video>\nWhat?"), ("gpt", "A baby.")),
        },
    ]
    data = src / "mixed.json"
    data.write_text(json.dumps(records))
    build_folder(str(data), tmp_path / "built")  # every kind resolves against the JSON's folder
    out = tmp_path / "export"
    export_llava(tmp_path / "built", out)
    exported = json.loads((out / "train.json").read_text())
    assert exported == records
    for record in exported:  # what Qwen-VL's loader opens with data_path=out
        for path in qwen_paths(record):
            assert (out / path).read_bytes() == (src / path).read_bytes()
    # two roots: each kind keeps its folder, as before
    records[1]["video"] = "005.mp4"
    data.write_text(json.dumps(records))
    build_folder(str(data), tmp_path / "built2", image_folder=str(src), video_folder=str(src / "clips"))
    export_llava(tmp_path / "built2", tmp_path / "export2")
    assert (tmp_path / "export2" / "images" / "1.jpg").is_file()
    assert (tmp_path / "export2" / "videos" / "005.mp4").is_file()


@pytest.mark.parametrize("format", ["conversations", "messages"])
def test_records_without_an_id_come_back_without_one(tmp_path: Path, format: str) -> None:
    """A text-only record with no id reads as LLaVA's or LLaMA-Factory's sharegpt layout alike: the id the
    build gave it is not exported (point 7 of the peer-layouts issue), an id that was there stays."""
    records: list[dict[str, Any]] = [
        {"conversations": turns(("human", "hi"), ("gpt", "yo"))},
        {"id": "x", "conversations": turns(("human", "hi"), ("gpt", "yo"))},
        {"id": 7, "conversations": turns(("human", "a"), ("gpt", "b"))},
    ]
    data = write_records(tmp_path / "a.json", records)
    build_folder(str(data), tmp_path / "out", format=format)  # type: ignore[arg-type]
    export_llava(tmp_path / "out", tmp_path / "exported")
    exported = json.loads((tmp_path / "exported" / "train.json").read_text())
    assert exported[0] == records[0]
    assert exported[1] == records[1]
    assert exported[2]["id"] == "7"  # integer ids come back as strings (the schema's id is a string)
