"""The dataset_scripts recipes, run on small files shaped like the published ones (tests/data/recipes/).

The JSON fixtures are stored; the images and videos they name are made here (Pillow JPEG/PNG/GIF and
copies of the real demo videos), under the folder layout each published set uses.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import datasets
import pytest
from PIL import Image

ROOT = Path(__file__).parent.parent
SCRIPTS = ROOT / "dataset_scripts"
FIXTURES = Path(__file__).parent / "data" / "recipes"
REAL = Path(__file__).parent / "data" / "real"
pytest_plugins = ["tests.fixtures.hub"]  # the in-memory Hub, for --push (until conftest registers it)

RECIPES = ("llava_instruct", "llava_pretrain", "qwen_vl", "public_sets", "messages_layout")


# ------------------------------------------------------------------------------------------ helpers


def read_json_records(path: Path) -> list[Any]:
    """The items of a .json array or a .jsonl file (packs stay lists)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode()
    if ".jsonl" in path.name:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    value = json.loads(text)
    assert isinstance(value, list)
    return value


def samples(items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def media_of(record: dict[str, Any], *keys: str) -> list[str]:
    out: list[str] = []
    for key in keys:
        value = record.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(value)
    return out


def image_bytes(path: str, seed: int) -> bytes:
    """A tiny image in the format its name says; OCR-VQA covers are GIFs named .jpg, as in the real set."""
    color = ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)
    img = Image.new("RGB", (24 + seed % 7, 16 + seed % 5), color)
    buf = io.BytesIO()
    suffix = Path(path).suffix.lower()
    fmt = "GIF" if "ocr_vqa/" in path else {".png": "PNG"}.get(suffix, "JPEG")
    img.save(buf, format=fmt)
    return buf.getvalue()


def materialize(json_file: Path, image_root: Path | None, video_root: Path | None = None) -> dict[str, bytes]:
    """Create every image and video the file names, under the given roots (absolute paths as they are)."""
    written: dict[str, bytes] = {}
    videos = [REAL / "1.mp4", REAL / "4.mp4", REAL / "2.avi"]
    for n, record in enumerate(samples(read_json_records(json_file))):
        for i, rel in enumerate(media_of(record, "image", "images")):
            assert image_root is not None or Path(rel).is_absolute()
            target = Path(rel) if Path(rel).is_absolute() else image_root / rel  # type: ignore[operator]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(image_bytes(rel, n * 10 + i))
            written[rel] = target.read_bytes()
        for i, rel in enumerate(media_of(record, "video", "videos")):
            assert video_root is not None or Path(rel).is_absolute()
            target = Path(rel) if Path(rel).is_absolute() else video_root / rel  # type: ignore[operator]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(videos[(n + i) % len(videos)], target)
            written[rel] = target.read_bytes()
    return written


@pytest.fixture
def recipe(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import a recipe module the way ``python dataset_scripts/X.py`` finds its ``_common``."""
    monkeypatch.syspath_prepend(str(SCRIPTS))

    def _load(name: str) -> ModuleType:
        for cached in (name, "_common"):
            sys.modules.pop(cached, None)
        return importlib.import_module(name)

    return _load


def load_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows of a built folder, read by plain ``datasets`` (media left undecoded)."""
    ds = datasets.load_dataset(str(folder), split="train")
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    ds = ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))
    return list(ds)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


# --------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("script", RECIPES)
def test_every_recipe_runs_help_from_anywhere(script: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{script}.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith(f"usage: {script}.py")
    assert "examples:" in out.stdout and f"dataset_scripts/{script}.py" in out.stdout
    assert "--output-dir" in out.stdout or script == "public_sets"


@pytest.mark.parametrize("name", ["llava-next", "allava", "cambrian", "visualwebinstruct"])
def test_public_sets_subcommands_have_help(name: str, recipe: Callable[[str], ModuleType]) -> None:
    parser = recipe("public_sets").build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([name, "--help"])
    assert info.value.code == 0


def test_a_missing_subset_file_is_a_usage_error(
    recipe: Callable[[str], ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = recipe("llava_instruct")
    code = mod.main(
        [
            "--data-dir",
            str(tmp_path),
            "--image-folder",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "out"),
            "--subset",
            "mix665k",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "subset 'mix665k' needs llava_v1_5_mix665k.json" in err and "hint:" in err
    assert (
        mod.main(
            [
                "--data-dir",
                str(tmp_path),
                "--image-folder",
                str(tmp_path),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "no subset found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- LLaVA-Instruct


def test_llava_instruct_builds_the_665k_mix_and_150k(
    recipe: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    data = copy_fixture("llava_instruct", tmp_path)
    images = tmp_path / "images"
    mix_media = materialize(data / "llava_v1_5_mix665k.json", images)
    coco = materialize(data / "llava_instruct_150k.json", images / "coco" / "train2017")
    out = tmp_path / "out"

    code = recipe("llava_instruct").main(
        ["--data-dir", str(data), "--image-folder", str(images), "--output-dir", str(out)]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["instruct150k", "mix665k"]

    rows = load_rows(out / "mix665k")
    source = read_json_records(data / "llava_v1_5_mix665k.json")
    assert [r["id"] for r in rows] == [str(r["id"]) for r in source]  # int ids become their decimal string
    assert "2354786" in [r["id"] for r in rows]
    by_id = {r["id"]: r for r in rows}
    gif = by_id["140031996X"]["images"][0]
    assert gif["path"] == "ocr_vqa/images/140031996X.jpg"
    assert gif["bytes"] == mix_media["ocr_vqa/images/140031996X.jpg"] and gif["bytes"][:3] == b"GIF"
    text_only = by_id["i6IyJda_0"]
    assert text_only["images"] == [] and text_only["videos"] == []
    assert text_only["metadata"] == {"model": ""}
    assert by_id["VG_100K_2/1"]["images"][0]["path"] == "vg/VG_100K_2/1.jpg"
    assert {r["source"] for r in rows} == {"llava_v1_5_mix665k.json"}

    rows150 = load_rows(out / "instruct150k")
    assert [r["images"][0]["path"] for r in rows150] == ["000000033471.jpg", "000000052846.jpg"]
    assert rows150[1]["images"][0]["bytes"] == coco["000000052846.jpg"]
    # the tag stays where the file put it (after the question here)
    assert rows150[1]["conversations"][0]["value"] == "Where is the cat positioned in the image?\n<image>"


def test_llava_instruct_coco_folder_override(recipe: Callable[[str], ModuleType], tmp_path: Path) -> None:
    data = copy_fixture("llava_instruct", tmp_path)
    coco = tmp_path / "elsewhere" / "train2017"
    materialize(data / "llava_instruct_150k.json", coco)
    code = recipe("llava_instruct").main(
        [
            "--data-dir",
            str(data),
            "--image-folder",
            str(tmp_path / "nothing-here"),
            "--coco-folder",
            str(coco),
            "--subset",
            "instruct150k",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert len(load_rows(tmp_path / "out" / "instruct150k")) == 2


# ----------------------------------------------------------------------------------- LLaVA-Pretrain


def test_llava_pretrain_builds_the_558k_layout(recipe: Callable[[str], ModuleType], tmp_path: Path) -> None:
    data = copy_fixture("llava_pretrain", tmp_path)
    media = materialize(data / "blip_laion_cc_sbu_558k.json", data / "images")
    out = tmp_path / "out"
    assert recipe("llava_pretrain").main(["--data-dir", str(data), "--output-dir", str(out)]) == 0
    rows = load_rows(out / "blip_laion_cc_sbu_558k")
    source = read_json_records(data / "blip_laion_cc_sbu_558k.json")
    assert [r["id"] for r in rows] == ["004539375", "002239345", "005947502"]
    assert rows[0]["images"][0] == {"bytes": media["00453/004539375.jpg"], "path": "00453/004539375.jpg"}
    assert [r["conversations"] for r in rows] == [s["conversations"] for s in source]
    manifest = json.loads((out / "blip_laion_cc_sbu_558k" / "llava_hf.json").read_text())
    assert manifest["splits"]["train"]["num_rows"] == 3


# ------------------------------------------------------------------------------------------ Qwen-VL


def test_qwen_vl_builds_images_videos_grounding_and_packs(
    recipe: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    data = copy_fixture("qwen_vl", tmp_path)
    root = tmp_path / "qwen_data"
    for name in ("single_images.json", "video.jsonl", "single_images_pack.json"):
        materialize(data / name, root, root)
    out = tmp_path / "out"
    files = [str(data / n) for n in ("single_images.json", "video.jsonl", "single_images_pack.json")]
    assert recipe("qwen_vl").main([*files, "--data-path", str(root), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["single_images", "single_images_pack", "video"]

    single = load_rows(out / "single_images")
    assert [len(r["images"]) for r in single] == [1, 2, 1, 1]
    assert single[2]["conversations"][1]["value"] == '{\n"bbox_2d": [135, 114, 1016, 672]\n}'
    assert "<|box_start|>(135,114),(1016,672)<|box_end|>" in single[3]["conversations"][1]["value"]
    assert [r["id"] for r in single] == [f"single_images-{i}" for i in range(4)]

    video = load_rows(out / "video")
    assert [len(r["videos"]) for r in video] == [1, 1] and [len(r["images"]) for r in video] == [0, 0]
    assert video[0]["videos"][0]["path"] == "videos/005.mp4"
    assert video[0]["video_info"][0]["fps"] > 0

    packed = load_rows(out / "single_images_pack")
    assert [r["metadata"]["_llava_hf_pack"] for r in packed] == [
        [0, 0],
        [0, 1],
        [1, 0],
        [2, 0],
        [2, 1],
        [2, 2],
    ]
    assert [len(r["images"]) for r in packed] == [1, 1, 2, 0, 1, 1]

    # export writes the packs back as packs
    from llava_hf.export import export_llava

    export_llava(out / "single_images_pack", tmp_path / "exported")
    exported = json.loads((tmp_path / "exported" / "train.json").read_text())
    original = read_json_records(data / "single_images_pack.json")
    assert [len(item) for item in exported] == [len(item) for item in original]
    assert [[s["conversations"] for s in item] for item in exported] == [
        [s["conversations"] for s in item] for item in original
    ]


def test_qwen_vl_absolute_paths_need_the_explicit_flag(
    recipe: Callable[[str], ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = tmp_path / "anywhere" / "images"
    records = [
        {
            "image": str(media / "a.jpg"),
            "conversations": [
                {"from": "human", "value": "<image>\nWhat?"},
                {"from": "gpt", "value": "A thing."},
            ],
        },
        {
            "images": [str(media / "b.jpg"), str(media / "c.png")],
            "conversations": [
                {"from": "human", "value": "<image><image>\nCompare."},
                {"from": "gpt", "value": "Same."},
            ],
        },
    ]
    annotations = tmp_path / "abs.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in records))
    materialize(annotations, None)
    mod = recipe("qwen_vl")
    refused = mod.main([str(annotations), "--output-dir", str(tmp_path / "out")])
    assert refused == 1
    assert "media_outside_root" in capsys.readouterr().err
    assert not (tmp_path / "out" / "abs").exists()
    assert mod.main([str(annotations), "--allow-outside-root", "--output-dir", str(tmp_path / "out")]) == 0
    assert [len(r["images"]) for r in load_rows(tmp_path / "out" / "abs")] == [1, 2]


# ------------------------------------------------------------------------------------- public sets


def test_allava_subsets_keep_their_extra_keys(recipe: Callable[[str], ModuleType], tmp_path: Path) -> None:
    data = tmp_path / "ALLaVA-4V"
    shutil.copytree(FIXTURES / "public_sets" / "allava", data)
    for name in ("allava_laion/ALLaVA-Caption-LAION-4V.json", "allava_vflan/ALLaVA-Instruct-VFLAN-4V.json"):
        materialize(data / name, data)
    out = tmp_path / "out"
    assert recipe("public_sets").main(["allava", "--data-dir", str(data), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["caption_laion", "evol_instruct_text", "instruct_vflan"]
    cap = load_rows(out / "caption_laion")
    assert cap[0]["id"] == "allava_laion_cap_100277305"
    assert cap[0]["images"][0]["path"] == "allava_laion/images/100277305.jpeg"
    assert cap[0]["metadata"] == {
        "original_caption": "190952cz Pandora Tropical Palm Leaf Ring",
        "url": "https://theartofpandora.com/wp-content/uploads/2016/10/190952CZ-1-600x600.jpg",
    }
    text = load_rows(out / "evol_instruct_text")
    assert [r["metadata"]["idx"] for r in text] == ["heR0vZB", "aB3kZ9q"]
    assert all(r["images"] == [] for r in text)
    assert len({r["id"] for r in text}) == 2  # generated from the file name and index


def test_cambrian_keeps_its_source_key_apart_from_the_source_column(
    recipe: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    data = tmp_path / "Cambrian-10M"
    shutil.copytree(FIXTURES / "public_sets" / "cambrian", data)
    materialize(data / "jsons" / "Cambrian7M_withsystemprompt.jsonl", data)
    out = tmp_path / "out"
    assert recipe("public_sets").main(["cambrian", "--data-dir", str(data), "--output-dir", str(out)]) == 0
    rows = load_rows(out / "cambrian7m")
    assert [r["id"] for r in rows] == ["lvis_0001", "120", "mathqa_77"]
    assert [r["metadata"]["source"] for r in rows] == [
        "lvis_instruct4v_220k.json",
        "ai2d_15k.json",
        "mathqa_29837.json",
    ]
    assert {r["source"] for r in rows} == {"Cambrian7M_withsystemprompt.jsonl"}
    assert rows[1]["images"][0]["bytes"][:4] == b"\x89PNG"
    assert rows[2]["images"] == []


def test_llava_next_raw_format(recipe: Callable[[str], ModuleType], tmp_path: Path) -> None:
    data = tmp_path / "LLaVA-NeXT-Data"
    shutil.copytree(FIXTURES / "public_sets" / "llava-next", data)
    raw = data / "llava_next_raw_format"
    materialize(raw / "llava_next_raw_format_processed.json", raw)
    out = tmp_path / "out"
    assert recipe("public_sets").main(["llava-next", "--data-dir", str(data), "--output-dir", str(out)]) == 0
    rows = load_rows(out / "llava_next_raw")
    assert [r["id"] for r in rows][:2] == ["000000033471", "VG_100K/2317533"]
    assert all(r["metadata"] == {"data_source": "llava_next_raw_format"} for r in rows)
    assert rows[2]["images"][0]["path"] == "dvqa/images/bar_train_00157767.png"


def test_visualwebinstruct_image_lists_and_nulls(recipe: Callable[[str], ModuleType], tmp_path: Path) -> None:
    data = tmp_path / "VisualWebInstruct"
    shutil.copytree(FIXTURES / "public_sets" / "visualwebinstruct", data)
    materialize(data / "mixed_conversation.jsonl", data / "imgs")
    out = tmp_path / "out"
    code = recipe("public_sets").main(
        ["visualwebinstruct", "--data-dir", str(data), "--output-dir", str(out)]
    )
    assert code == 0
    rows = load_rows(out / "mixed_conversation")
    assert [len(r["images"]) for r in rows] == [1, 0, 2]
    assert rows[2]["images"][1]["path"] == "visualwebinstruct/6c5b4a.png"


# --------------------------------------------------------------------------------- messages layout


def _llamafactory_data(tmp_path: Path) -> Path:
    data = tmp_path / "LLaMA-Factory" / "data"
    (data / "mllm_demo_data").mkdir(parents=True)
    for name in ("mllm_demo.json", "mllm_video_demo.json"):
        shutil.copy(REAL / name, data / name)
    shutil.copy(FIXTURES / "messages_layout" / "dataset_info.json", data / "dataset_info.json")
    for src, dst in (
        ("1.jpg", "1.jpg"),
        ("2.jpg", "2.jpg"),
        ("3.jpg", "3.jpg"),
        ("1.mp4", "1.mp4"),
        ("2.avi", "2.avi"),
        ("4.mp4", "3.mp4"),
    ):
        shutil.copy(REAL / src, data / "mllm_demo_data" / dst)
    return data


def test_messages_layout_from_llamafactory_dataset_info(
    recipe: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    data = _llamafactory_data(tmp_path)
    out = tmp_path / "out"
    code = recipe("messages_layout").main(
        [
            "--dataset-info",
            str(data / "dataset_info.json"),
            "--dataset",
            "mllm_demo",
            "--dataset",
            "mllm_video_demo",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    demo = load_rows(out / "mllm_demo")
    source = read_json_records(data / "mllm_demo.json")
    assert len(demo) == len(source) == 6
    assert demo[0]["conversations"][0] == {"from": "human", "value": "<image>Who are they?"}
    assert demo[0]["images"][0]["bytes"] == (REAL / "1.jpg").read_bytes()
    videos = load_rows(out / "mllm_video_demo")
    assert [v["videos"][0]["path"] for v in videos] == [
        "mllm_demo_data/1.mp4",
        "mllm_demo_data/2.avi",
        "mllm_demo_data/3.mp4",
    ]


def test_messages_layout_file_with_messages_output(
    recipe: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    data = _llamafactory_data(tmp_path)
    out = tmp_path / "out"
    code = recipe("messages_layout").main(
        [str(data / "mllm_demo.json"), "--format", "messages", "--output-dir", str(out)]
    )
    assert code == 0
    ds = datasets.load_dataset(str(out / "mllm_demo"), split="train")
    assert "messages" in ds.column_names and "conversations" not in ds.column_names
    assert ds[0]["messages"][0]["role"] == "user"


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("alpaca_en_demo", "sharegpt"),
        ("odd_columns", "maps the messages column to key 'dialog'"),
        ("nope", "no local dataset 'nope'"),
    ],
)
def test_messages_layout_refuses_dataset_info_it_cannot_read(
    recipe: Callable[[str], ModuleType],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dataset: str,
    message: str,
) -> None:
    data = _llamafactory_data(tmp_path)
    code = recipe("messages_layout").main(
        [
            "--dataset-info",
            str(data / "dataset_info.json"),
            "--dataset",
            dataset,
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- push


@pytest.mark.hub
def test_push_publishes_one_config_per_subset(
    recipe: Callable[[str], ModuleType], tmp_path: Path, hub_server: Any
) -> None:
    import yaml

    from tests.hub_server import TEST_USER

    data = tmp_path / "ALLaVA-4V"
    shutil.copytree(FIXTURES / "public_sets" / "allava", data)
    materialize(data / "allava_laion/ALLaVA-Caption-LAION-4V.json", data)
    repo = f"{TEST_USER}/allava"
    argv = [
        "allava",
        "--data-dir",
        str(data),
        "--output-dir",
        str(tmp_path / "out"),
        "--subset",
        "caption_laion",
        "--subset",
        "evol_instruct_text",
        "--push",
        repo,
    ]
    assert recipe("public_sets").main(argv) == 0
    files = hub_server.files_at(repo)
    assert any(f.startswith("caption_laion/") and f.endswith(".parquet") for f in files)
    assert any(f.startswith("evol_instruct_text/") and f.endswith(".parquet") for f in files)
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in front["configs"]} == {"caption_laion", "evol_instruct_text"}
    rows = datasets.load_dataset(repo, "evol_instruct_text", split="train")
    assert sorted(r["idx"] for r in rows["metadata"]) == ["aB3kZ9q", "heR0vZB"]


def test_config_name_needs_a_single_subset(
    recipe: Callable[[str], ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "ALLaVA-4V"
    shutil.copytree(FIXTURES / "public_sets" / "allava", data)
    for name in ("allava_laion/ALLaVA-Caption-LAION-4V.json", "allava_vflan/ALLaVA-Instruct-VFLAN-4V.json"):
        materialize(data / name, data)
    argv = [
        "allava",
        "--data-dir",
        str(data),
        "--output-dir",
        str(tmp_path / "out"),
        "--push",
        "me/x",
        "--config-name",
        "default",
    ]
    assert recipe("public_sets").main(argv) == 2
    assert "--config-name names one config, but 3 subsets would be built" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before building anything


def test_qwen_vl_empty_data_path_means_the_current_directory(
    recipe: Callable[[str], ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_fixture("qwen_vl", tmp_path)
    workdir = tmp_path / "workdir"
    materialize(data / "single_images.json", workdir)
    monkeypatch.chdir(workdir)
    out = tmp_path / "out"
    assert recipe("qwen_vl").main([str(data / "single_images.json"), "--output-dir", str(out)]) == 0
    assert [len(r["images"]) for r in load_rows(out / "single_images")] == [1, 2, 1, 1]
