"""The generated dataset card: YAML that plain `datasets` reads, stats that match the data, hand edits kept."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import datasets
import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard
from PIL import Image

import llava_hf
from llava_hf.build import stats as _cardstats
from llava_hf.card import make_card, make_preview
from llava_hf.card import template as card_template
from llava_hf.errors import UsageError
from llava_hf.schema import FORMAT_VERSION, features_for
from tests.fixtures.hub import hub_server, hub_token  # noqa: F401  (fixtures)
from tests.fixtures.media import make_jpeg, make_video

REAL = Path(__file__).parent / "data" / "real"
ROOT = Path(__file__).parent.parent


# ------------------------------------------------------------------------------------------- helpers


def _media(path: Path, rel: str) -> dict[str, Any]:
    return {"bytes": path.read_bytes(), "path": rel}


def _video_info(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return {
            "duration": duration,
            "fps": float(stream.average_rate or 0),
            "num_frames": int(stream.frames),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "codec": stream.codec_context.name,
        }


def _row(
    id: str,
    turns: list[tuple[str, str]],
    *,
    images: list[tuple[Path, str]] = (),  # type: ignore[assignment]
    videos: list[tuple[Path, str]] = (),  # type: ignore[assignment]
    source: str = "data.json",
    metadata: Any = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "images": [_media(p, rel) for p, rel in images],
        "videos": [_media(p, rel) for p, rel in videos],
        "video_frames": [[] for _ in videos],
        "video_info": [_video_info(p) for p, _ in videos],
        "audios": [],
        "audio_info": [],
        "conversations": [{"from": f, "value": v} for f, v in turns],
        "source": source,
        "metadata": metadata,
    }


def _write_folder(
    out: Path,
    splits: dict[str, list[dict[str, Any]]],
    *,
    shards: int = 1,
    manifest: bool = True,
    rejected: list[dict[str, Any]] | None = None,
    row_group_size: int | None = None,
) -> Path:
    """A built output folder (contracts.md layout) written with plain datasets + pyarrow."""
    import pyarrow.parquet as pq

    (out / "data").mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    for split, rows in splits.items():
        ds = datasets.Dataset.from_list(rows, features=features_for())
        files = []
        for i in range(shards):
            name = f"data/{split}-{i:05d}-of-{shards:05d}.parquet"
            part = ds.shard(shards, i, contiguous=True)
            if row_group_size:
                pq.write_table(part.data.table, out / name, row_group_size=row_group_size)
            else:
                part.to_parquet(out / name)
            files.append(name)
        info[split] = {"num_rows": len(ds), "num_bytes": ds.data.nbytes, "files": files}
    if rejected:
        with (out / "rejected.jsonl").open("w") as fh:
            for r in rejected:
                fh.write(json.dumps(r) + "\n")
    if manifest:
        doc = {
            "format_version": FORMAT_VERSION,
            "llava_hf_version": llava_hf.__version__,
            "format": "conversations",
            "splits": info,
            "rejected": dict(Counter(r["code"] for r in rejected or [])),
            "inputs": ["data.json"],
            "mixture": None,
        }
        (out / "llava_hf.json").write_text(json.dumps(doc))
    return out


def _yaml(card: DatasetCard) -> dict[str, Any]:
    text = str(card)
    return yaml.safe_load(text.split("---\n")[1])


def _section(text: str, name: str) -> str:
    m = re.search(
        rf"<!-- llava-hf:begin {re.escape(name)} -->(.*?)<!-- llava-hf:end {re.escape(name)} -->", text, re.S
    )
    assert m, f"no section {name}"
    return m.group(1)


def _outside_sections(text: str) -> str:
    return re.sub(r"<!-- llava-hf:begin (\S+) -->.*?<!-- llava-hf:end \1 -->", r"[\1]", text, flags=re.S)


def _table(section: str) -> dict[str, list[str]]:
    """Markdown table rows of a section: first cell → the other cells."""
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _num(cell: str) -> float:
    return float(cell.replace(",", "").replace(" s", "").split(" ")[0])


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Real photos plus generated JPEGs of known, different sizes."""
    out = {name: REAL / name for name in ("1.jpg", "2.jpg", "3.jpg")}
    for i, size in enumerate([(64, 48), (200, 120), (33, 77)]):
        out[f"gen{i}.jpg"] = make_jpeg(tmp_path / "gen" / f"gen{i}.jpg", size=size, seed=i)
    return out


@pytest.fixture
def mixed_rows(images: dict[str, Path]) -> list[dict[str, Any]]:
    """Text-only, single-image, multi-image and video rows from real media."""
    return [
        _row(
            "000000033471",
            [("human", "<image>\nWhat are the colors of the bus?"), ("gpt", "White and red.")],
            images=[(images["1.jpg"], "coco/train2017/1.jpg")],
            metadata={"task": "vqa"},
        ),
        _row(
            "42",
            [("system", "Be careful."), ("human", "Compare <image> and <image>"), ("gpt", "The first.")],
            images=[(images["2.jpg"], "coco/2.jpg"), (images["gen1.jpg"], "gen/gen1.jpg")],
            source="other.json",
        ),
        _row("text-1", [("human", "Say hi."), ("gpt", "Hi.")]),
        _row(
            "vid-1",
            [
                ("human", "<video>\nWhat happens?"),
                ("gpt", "A baby reads."),
                ("human", "Then?"),
                ("gpt", "Nothing."),
            ],
            videos=[(REAL / "1.mp4", "1.mp4")],
        ),
        _row(
            "img-3",
            [("human", "<image>\nDescribe."), ("gpt", "A " + "very " * 40 + "long answer.")],
            images=[(images["gen2.jpg"], "gen/gen2.jpg")],
        ),
    ]


# ---------------------------------------------------------------------------------------------- YAML


def test_yaml_declares_license_tasks_size_configs_features_and_versions(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    rows = [r for r in mixed_rows if not r["videos"]]
    folder = _write_folder(tmp_path / "out", {"train": rows[:3], "test": rows[3:]})
    card = make_card(folder, license="apache-2.0", pretty_name="My LLaVA data")
    meta = _yaml(card)

    assert meta["license"] == "apache-2.0"
    assert meta["pretty_name"] == "My LLaVA data"
    assert meta["task_categories"] == ["image-text-to-text", "visual-question-answering"]
    assert meta["size_categories"] == "n<1K"
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*"},
                {"split": "test", "path": "data/test-*"},
            ],
        }
    ]
    info = meta["dataset_info"]
    assert datasets.Features._from_yaml_list(info["features"]) == features_for()
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {"train": 3, "test": len(rows) - 3}
    assert info["download_size"] == sum(p.stat().st_size for p in (folder / "data").glob("*.parquet"))
    assert meta["llava_hf"]["format_version"] == FORMAT_VERSION
    assert meta["llava_hf"]["llava_hf_version"] == llava_hf.__version__
    assert meta["llava_hf"]["configs"]["default"]["format"] == "conversations"
    # datasets' own reader of card YAML agrees
    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(card.data)
    assert infos["default"].features == features_for()
    assert infos["default"].splits["train"].num_examples == 3


def test_video_task_category_only_with_videos(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    with_video = make_card(_write_folder(tmp_path / "v", {"train": mixed_rows}))
    assert _yaml(with_video)["task_categories"] == [
        "image-text-to-text",
        "visual-question-answering",
        "video-text-to-text",
    ]
    usage = _section(str(with_video), "usage")
    assert "llava_hf.decode_media(ds, num_frames=8)" in usage and "torchcodec" in usage
    assert usage.index("decode_media") < usage.index("torchcodec")  # the llava-hf way first
    without = make_card(_write_folder(tmp_path / "n", {"train": [r for r in mixed_rows if not r["videos"]]}))
    assert "video-text-to-text" not in _yaml(without)["task_categories"]


def test_size_category_follows_row_count(tmp_path: Path) -> None:
    for n, expected in [(999, "n<1K"), (1000, "1K<n<10K")]:
        rows = [_row(f"t{i}", [("human", "q"), ("gpt", "a")]) for i in range(n)]
        folder = _write_folder(tmp_path / str(n), {"train": rows})
        assert _yaml(make_card(folder))["size_categories"] == expected


def test_card_is_deterministic_and_idempotent(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    first = str(make_card(folder))
    assert first.endswith("-->\n")  # saved and re-read byte-for-byte: an unchanged re-push uploads no README
    assert str(make_card(folder)) == first
    assert str(make_card(folder, existing=first)) == first


# ----------------------------------------------------------------------------------- load_dataset


@pytest.mark.parametrize("streaming", [False, True])
def test_load_dataset_reads_folder_with_generated_card(
    tmp_path: Path, mixed_rows: list[dict[str, Any]], streaming: bool
) -> None:
    rows = [r for r in mixed_rows if not r["videos"]]  # reading video rows decodes them (torchcodec)
    folder = _write_folder(tmp_path / "out", {"train": rows}, shards=2)
    make_card(folder).save(folder / "README.md")

    ds = datasets.load_dataset(str(folder), split="train", streaming=streaming)
    assert ds.features == features_for()
    got = list(ds)
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    for want, have in zip(rows, got, strict=True):
        assert len(have["images"]) == len(want["images"])
        for img, media in zip(have["images"], want["images"], strict=True):
            assert isinstance(img, Image.Image)
            assert img.size == Image.open(io.BytesIO(media["bytes"])).size
        assert have["metadata"] == want["metadata"]


def test_video_folder_schema_loads(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    make_card(folder).save(folder / "README.md")
    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.features == features_for()
    raw = ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))
    assert raw[3]["videos"][0]["bytes"] == (REAL / "1.mp4").read_bytes()


@pytest.mark.slow
def test_load_dataset_in_a_process_that_never_imports_llava_hf(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    rows = [r for r in mixed_rows if not r["videos"]]
    folder = _write_folder(tmp_path / "out", {"train": rows})
    make_card(folder).save(folder / "README.md")
    script = textwrap.dedent(
        f"""
        import json, sys
        import datasets
        out = {{}}
        for streaming in (False, True):
            ds = datasets.load_dataset({str(folder)!r}, split="train", streaming=streaming)
            rows = list(ds)
            out[str(streaming)] = {{
                "features": ds.features.to_dict(),
                "sizes": [[list(im.size) for im in r["images"]] for r in rows],
                "metadata": [r["metadata"] for r in rows],
            }}
        assert "llava_hf" not in sys.modules
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    sizes = [[list(Image.open(io.BytesIO(m["bytes"])).size) for m in r["images"]] for r in rows]
    for result in out.values():
        assert datasets.Features.from_dict(result["features"]) == features_for()
        assert result["sizes"] == sizes
        assert result["metadata"] == [r["metadata"] for r in rows]


# -------------------------------------------------------------------------------- hand-written parts


def test_hand_written_text_and_yaml_survive_regeneration(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows[:2]})
    first = str(make_card(folder, license="cc-by-4.0"))
    # A user edits the card: title, a description, a new section at the end, YAML keys of their own.
    edited = first.replace("# out\n", "# Bus questions\n\nCollected by hand in 2025.\n", 1)
    edited = edited.replace("## Usage", "## Notes\n\nDo not use for ads.\n\n## Usage", 1)
    edited = edited.rstrip("\n") + "\n\n## Citation\n\n```bibtex\n@misc{bus}\n```\n"
    edited = edited.replace("---\n", "---\nlanguage:\n- en\ntags:\n- handmade\n", 1)
    # Text typed *inside* a generated part is not the user's: it is replaced on regeneration.
    edited = edited.replace("<!-- llava-hf:begin usage -->\n", "<!-- llava-hf:begin usage -->\nSCRATCH\n", 1)

    # The data changes (more rows), the card is regenerated from the edited one.
    shutil.rmtree(folder)
    _write_folder(folder, {"train": mixed_rows})
    second = str(make_card(folder, existing=edited))

    assert _outside_sections(second.split("\n---\n", 1)[1]) == _outside_sections(
        edited.split("\n---\n", 1)[1]
    )
    meta = yaml.safe_load(second.split("---\n")[1])
    assert meta["language"] == ["en"] and meta["tags"] == ["handmade"]
    assert meta["license"] == "cc-by-4.0"  # kept from the existing card when not passed again
    stats = _table(_section(second, "stats:default"))
    assert _num(stats["samples"][0]) == len(mixed_rows)
    assert [s["num_examples"] for s in meta["dataset_info"]["splits"]] == [len(mixed_rows)]
    assert "SCRATCH" not in second

    # A generated part the user deleted comes back after the generated part before it.
    without_configs = re.sub(
        r"<!-- llava-hf:begin configs -->.*?<!-- llava-hf:end configs -->", "", second, flags=re.S
    )
    third = str(make_card(folder, existing=without_configs))
    assert (
        third.index("llava-hf:end about")
        < third.index("llava-hf:begin configs")
        < third.index("## Statistics")
    )


def test_existing_card_without_markers_gets_generated_sections_appended(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    existing = "---\nlicense: mit\n---\n# Mine\n\nMy own words.\n"
    text = str(make_card(folder, existing=existing))
    body = text.split("\n---\n", 1)[1]
    assert body.startswith("# Mine\n\nMy own words.\n")
    for name in ("about", "configs", "stats:default", "usage"):
        _section(body, name)
    assert yaml.safe_load(text.split("---\n")[1])["license"] == "mit"


def test_second_config_keeps_the_first(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    a = _write_folder(tmp_path / "a", {"train": mixed_rows})  # has a video
    b = _write_folder(tmp_path / "b", {"train": mixed_rows[:2], "validation": mixed_rows[2:3]})
    card_a = make_card(a, config_name="alpha", data_files={"train": "alpha/train-*"})
    meta_a = _yaml(card_a)
    card_b = make_card(
        b,
        config_name="beta",
        data_files={"train": "beta/train-*", "validation": "beta/validation-*"},
        existing=str(card_a),
    )
    meta_b = _yaml(card_b)
    assert meta_b["configs"][0] == meta_a["configs"][0]
    assert meta_b["configs"][1] == {
        "config_name": "beta",
        "data_files": [
            {"split": "train", "path": "beta/train-*"},
            {"split": "validation", "path": "beta/validation-*"},
        ],
    }
    infos = {e["config_name"]: e for e in meta_b["dataset_info"]}
    assert infos["alpha"] == {"config_name": "alpha", **meta_a["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in infos["beta"]["splits"]} == {"train": 2, "validation": 1}
    assert set(meta_b["llava_hf"]["configs"]) == {"alpha", "beta"}
    assert "video-text-to-text" in meta_b["task_categories"]  # alpha still has videos
    text_a, text_b = str(card_a), str(card_b)
    assert _section(text_b, "stats:alpha") == _section(text_a, "stats:alpha")
    assert "beta" in _table(_section(text_b, "configs")).get("`beta`", [""])[0] or "`beta`" in text_b
    assert 'load_dataset("' in _section(text_b, "usage") and '"beta"' in _section(text_b, "usage")

    # Laid out as a repository, plain datasets loads each config by name.
    repo = tmp_path / "repo"
    for name, folder in (("alpha", a), ("beta", b)):
        (repo / name).mkdir(parents=True)
        for shard in (folder / "data").glob("*.parquet"):
            shutil.copy(shard, repo / name / shard.name)
    card_b.save(repo / "README.md")
    assert datasets.get_dataset_config_names(str(repo)) == ["alpha", "beta"]
    beta = datasets.load_dataset(str(repo), "beta")
    assert {k: len(v) for k, v in beta.items()} == {"train": 2, "validation": 1}
    assert beta["train"][1]["id"] == "42"
    assert len(beta["train"][1]["images"]) == 2


# --------------------------------------------------------------------------------------------- stats


def test_stats_match_the_data(tmp_path: Path, images: dict[str, Path]) -> None:
    rng = np.random.default_rng(7)
    names = sorted(images)
    rows = []
    for i in range(40):
        k = int(rng.integers(0, 4))
        picked = [names[int(j)] for j in rng.integers(0, len(names), size=k)]
        n_turns = int(rng.integers(1, 4)) * 2
        turns = [
            (
                "human" if t % 2 == 0 else "gpt",
                "word " * int(rng.integers(1, 60)) + ("<image>" * k if t == 0 else ""),
            )
            for t in range(n_turns)
        ]
        videos = [(REAL / "1.mp4", "1.mp4")] if i % 13 == 0 else []
        if i % 17 == 5:
            videos.append((make_video(tmp_path / f"v{i}.avi", frames=6 + i, fps=10), f"v{i}.avi"))
        rows.append(
            _row(
                f"r{i}",
                turns,
                images=[(images[p], p) for p in picked],
                videos=videos,
                source=f"src{i % 3}.json",
            )
        )
    rejected = [
        {"file": "data.json", "index": 100 + j, "id": f"bad{j}", "code": code, "message": "..."}
        for j, code in enumerate(["missing_media", "missing_media", "placeholder_mismatch"])
    ]
    folder = _write_folder(
        tmp_path / "out",
        {"train": rows[:30], "validation": rows[30:]},
        rejected=rejected,
        manifest=False,
        shards=2,
    )
    text = str(make_card(folder))
    stats = _table(_section(text, "stats:default"))

    n = len(rows)
    n_images = [len(r["images"]) for r in rows]
    n_videos = [len(r["videos"]) for r in rows]
    text_only = sum(1 for a, b in zip(n_images, n_videos, strict=True) if a == 0 and b == 0)
    assert _num(stats["samples"][0]) == n
    assert _num(stats["images"][0]) == sum(n_images)
    assert _num(stats["videos"][0]) == sum(n_videos)
    assert _num(stats["rows with several images"][0]) == sum(1 for k in n_images if k > 1)
    assert stats["text-only rows"][0] == f"{text_only} ({100 * text_only / n:.1f}%)"

    def check(label: str, values: list[float]) -> None:
        arr = np.asarray(values, dtype=float)
        want = [arr.min(), *np.percentile(arr, [25, 50, 75, 95]), arr.max(), arr.mean()]
        got = [_num(c) for c in stats[label]]
        assert got == pytest.approx(want, abs=0.051), label

    check("turns per sample", [len(r["conversations"]) for r in rows])
    check("text characters per sample", [sum(len(t["value"]) for t in r["conversations"]) for r in rows])
    sizes = [Image.open(io.BytesIO(m["bytes"])).size for r in rows for m in r["images"]]
    check("image width (px)", [w for w, _ in sizes])
    check("image height (px)", [h for _, h in sizes])
    check("video duration", [v["duration"] for r in rows for v in r["video_info"]])
    assert "sample of" not in text  # every image header was read

    assert {
        k.strip("`"): int(v[0])
        for k, v in _table(_section(text, "stats:default")).items()
        if k.startswith("`")
    } == dict(Counter(r["code"] for r in rejected))
    for source, count in Counter(r["source"] for r in rows).items():
        assert stats[source] == [str(count)]


def test_image_sizes_come_from_a_bounded_sample(
    tmp_path: Path, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        _row(f"r{i}", [("human", "<image>"), ("gpt", "x")], images=[(images["gen0.jpg"], "a.jpg")])
        for i in range(60)
    ]
    folder = _write_folder(tmp_path / "out", {"train": rows}, row_group_size=5)
    monkeypatch.setattr(_cardstats, "IMAGE_SAMPLE", 8)
    monkeypatch.setattr(_cardstats, "SAMPLE_GROUPS", 4)
    section = _section(str(make_card(folder)), "stats:default")
    m = re.search(r"sample of (\d+) of (\d+) images", section)
    assert m and int(m.group(1)) <= 8 and int(m.group(2)) == 60
    assert _table(section)["image width (px)"][0] == "64"


def test_manifest_rejected_counts_and_mixture_summary(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    from llava_hf.mixture import Mixture, MixtureSource

    rejected = [{"file": "d.json", "index": 3, "id": "x", "code": "bad_role", "message": "m"}]
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows}, rejected=rejected)
    sources = tuple(
        MixtureSource(
            name=name,
            json_path=f"/data/{name}.json",
            image_folder=None,
            video_folder=None,
            strategy="all",
            repeat=Fraction(1),
            count=c,
            selected=c,
        )
        for name, c in (("data", 4), ("other", 1))
    )
    selection = tuple([("data", i) for i in range(4)] + [("other", 0)])
    Mixture(seed=3, sources=sources, selection=selection).save(folder / "mixture.json")
    section = _section(str(make_card(folder)), "stats:default")
    assert _table(section)["`bad_role`"] == ["1"]
    assert Mixture.from_file(folder / "mixture.json").to_markdown() in section


# ------------------------------------------------------------------------------------------- preview


def _solid_png(path: Path, color: tuple[int, int, int], size: tuple[int, int]) -> Path:
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


def test_preview_is_a_deterministic_png_of_the_first_images(tmp_path: Path) -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    files = [_solid_png(tmp_path / f"c{i}.png", c, (40 + 10 * i, 30)) for i, c in enumerate(colors)]
    rows = [
        _row(f"r{i}", [("human", "<image>"), ("gpt", "x")], images=[(f, f.name), (files[0], "extra.png")])
        for i, f in enumerate(files)
    ]
    rows.insert(1, _row("text", [("human", "hi"), ("gpt", "x")]))
    a = _write_folder(tmp_path / "a", {"train": rows})
    b = _write_folder(tmp_path / "b", {"train": rows})

    png = make_preview(a, max_images=3, thumb=32)
    assert png is not None and png == make_preview(a, max_images=3, thumb=32) == make_preview(
        b, max_images=3, thumb=32
    )
    sheet = Image.open(io.BytesIO(png))
    assert sheet.format == "PNG"
    pad = 4
    assert sheet.size == (3 * (32 + pad) + pad, 32 + 2 * pad)
    for i, color in enumerate(colors[:3]):  # the first image of the first rows, in row order
        assert sheet.convert("RGB").getpixel((pad + i * (32 + pad) + 16, pad + 16)) == color

    full = Image.open(io.BytesIO(make_preview(a) or b""))
    assert full.size == (4 * (128 + pad) + pad, 2 * (128 + pad) + pad)  # 5 thumbnails: 4 columns, 2 rows


def test_preview_is_none_without_images(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    no_images = [r for r in mixed_rows if not r["images"]]
    folder = _write_folder(tmp_path / "out", {"train": no_images})
    assert make_preview(folder) is None
    assert "![preview]" not in str(make_card(folder))
    with pytest.raises(UsageError):
        make_preview(folder, max_images=0)


def test_card_shows_preview_path(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    assert "![preview](preview.png)" in str(make_card(folder))
    assert "![preview](alpha/preview.png)" in str(make_card(folder, preview_path="alpha/preview.png"))
    assert "![preview]" not in str(make_card(folder, preview_path=None))


# -------------------------------------------------------------------------------------------- errors


def test_errors_name_the_folder_and_the_fix(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        make_card(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no Parquet shards") as err:
        make_card(tmp_path / "empty")
    assert err.value.hint and "llava-hf build" in err.value.hint
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows[:1]})
    with pytest.raises(UsageError, match="test"):
        make_card(folder, data_files={"test": "data/test-*"})
    with pytest.raises(UsageError, match="config_name="):
        make_card(folder, config_name="a b")
    with pytest.raises(UsageError, match="YAML header"):
        make_card(folder, existing="---\nlicense: [mit\n---\n# x\n")
    with pytest.raises(UsageError, match="configs"):
        make_card(folder, existing="---\nconfigs: default\n---\n# x\n")


# ----------------------------------------------------------------------------------------- packaging


def test_template_is_found_and_has_the_markers() -> None:
    text = card_template._template_text()
    for name in ("about", "configs", "usage"):
        assert f"<!-- llava-hf:begin {name} -->" in text and f"<!-- llava-hf:end {name} -->" in text
    assert text == (ROOT / "llava_hf" / "card" / "dataset_card.md").read_text(encoding="utf-8")


def test_card_promises_no_package_index_install(
    tmp_path: Path, mixed_rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No package index here has llava-hf: the card says what plain datasets needs, and that the helpers
    come with the llava-hf package, never `pip install llava-hf` or a PyPI link (issue 21, point 12).

    The card is rendered from this checkout's template."""
    template = (ROOT / "llava_hf" / "card" / "dataset_card.md").read_text(encoding="utf-8")
    monkeypatch.setattr(card_template, "_template_text", lambda: template)
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    text = str(make_card(folder))
    assert "Plain `datasets` is all the lines above need" in text
    assert "come\n# with the llava-hf package" in text and "from llava_hf.chat import as_messages" in text
    for checked in (template, text):
        assert not re.search(r"pip install (?:-\S+ )*['\"]?llava-hf|pypi\.org", checked, re.IGNORECASE)


def test_library_messages_promise_no_package_index_install() -> None:
    """The same for every message and docstring of the package: llava-hf is installed from its repository."""
    for path in sorted((ROOT / "llava_hf").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"pip install (?:-\S+ )*['\"]?llava-hf|llava-hf\[\w+\]|pypi\.org", text)
        assert not found, f"{path.relative_to(ROOT)}: {found}"


@pytest.mark.slow
def test_installed_wheel_finds_the_template(tmp_path: Path, mixed_rows: list[dict[str, Any]]) -> None:
    """A wheel built from this checkout carries the template as package data, and make_card works from it."""
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT / "llava_hf", src / "llava_hf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
    readme = ROOT / "README.md"
    (src / "README.md").write_text(readme.read_text(encoding="utf-8") if readme.exists() else "# llava-hf\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert "llava_hf/card/dataset_card.md" in zf.namelist()
        zf.extractall(site)
    folder = _write_folder(tmp_path / "out", {"train": mixed_rows})
    script = textwrap.dedent(
        f"""
        import llava_hf.card
        assert llava_hf.card.__file__.startswith({str(site)!r}), llava_hf.card.__file__
        print(llava_hf.card.make_card({str(folder)!r}).data["configs"][0]["config_name"])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "default"


def test_messages_format_folder(tmp_path: Path, images: dict[str, Path]) -> None:
    """A ``--format messages`` build: texts are counted inside content parts; image parts have no text."""
    rows = [
        {
            "id": "m1",
            "images": [_media(images["1.jpg"], "1.jpg")],
            "videos": [],
            "video_frames": [],
            "video_info": [],
            "audios": [],
            "audio_info": [],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "text": None}, {"type": "text", "text": "What?"}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "A bus."}]},
            ],
            "source": "m.json",
            "metadata": None,
        },
        {
            "id": "m2",
            "images": [],
            "videos": [],
            "video_frames": [],
            "video_info": [],
            "audios": [],
            "audio_info": [],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
            "source": "m.json",
            "metadata": {"x": 1},
        },
    ]
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows, features=features_for("messages")).to_parquet(
        out / "data" / "train-00000-of-00001.parquet"
    )
    card = make_card(out)
    meta = _yaml(card)
    assert datasets.Features._from_yaml_list(meta["dataset_info"]["features"]) == features_for("messages")
    assert meta["llava_hf"]["configs"]["default"]["format"] == "messages"
    stats = _table(_section(str(card), "stats:default"))
    assert [_num(stats["text characters per sample"][0]), _num(stats["text characters per sample"][5])] == [
        len("Hello there"),
        len("What?") + len("A bus."),
    ]
    assert [_num(c) for c in stats["turns per sample"][:1]] == [1]
    assert "`messages`" in _section(str(card), "about")


@pytest.mark.hub
@pytest.mark.usefixtures("hub_server")
def test_two_config_card_loads_over_http_from_the_test_hub(
    tmp_path: Path, mixed_rows: list[dict[str, Any]]
) -> None:
    """Pushed with the plain client (upload_folder), the card's configs and schema drive load_dataset."""
    from huggingface_hub import HfApi

    from tests.fixtures.hub import USER

    rows = [r for r in mixed_rows if not r["videos"]]
    a = _write_folder(tmp_path / "a", {"train": rows})
    b = _write_folder(tmp_path / "b", {"train": rows[:2], "test": rows[2:]})
    repo_id = f"{USER}/cards"
    repo = tmp_path / "repo"
    text: str | None = None
    for name, folder in (("alpha", a), ("beta", b)):
        (repo / name).mkdir(parents=True)
        for shard in (folder / "data").glob("*.parquet"):
            shutil.copy(shard, repo / name / shard.name)
        (repo / name / "preview.png").write_bytes(make_preview(folder) or b"")
        splits = [p.name.split("-")[0] for p in (folder / "data").glob("*.parquet")]
        card = make_card(
            folder,
            config_name=name,
            data_files={s: f"{name}/{s}-*" for s in splits},
            existing=text,
            preview_path=f"{name}/preview.png",
            repo_id=repo_id,
            license="apache-2.0",
        )
        text = str(card)
    card.save(repo / "README.md")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(repo))

    loaded = DatasetCard.load(repo_id)
    assert [c["config_name"] for c in loaded.data.configs] == ["alpha", "beta"]
    assert f'load_dataset("{repo_id}", "beta"' in loaded.text
    assert datasets.get_dataset_config_names(repo_id) == ["alpha", "beta"]
    beta = datasets.load_dataset(repo_id, "beta", split="test", streaming=True)
    assert beta.features == features_for()
    assert [r["id"] for r in beta] == [r["id"] for r in rows[2:]]
    alpha = datasets.load_dataset(repo_id, "alpha", split="train")
    assert [len(r["images"]) for r in alpha] == [len(r["images"]) for r in rows]


# ------------------------------------------------------------------------------------- through a build


def test_card_written_by_build_folder(
    tmp_path: Path, llava_dir: Path, sample_records: list[dict[str, Any]], write_json: Any
) -> None:
    """The builder's README.md and preview.png come from make_card/make_preview and describe what it built."""
    from llava_hf import build_folder

    records = [
        *sample_records,
        {"id": "bad", "image": "coco/missing.jpg", "conversations": [{"from": "human", "value": "<image>"}]},
    ]
    data = write_json(records)
    out = tmp_path / "out"
    result = build_folder(
        str(data),
        out,
        image_folder=str(llava_dir / "images"),
        video_folder=str(llava_dir / "videos"),
        on_error="skip",
    )
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert str(make_card(out, pretty_name="out")) == readme  # the card depends on the data, not on the rename
    assert (out / "preview.png").read_bytes() == make_preview(out)

    card = DatasetCard(readme)
    card_data = card.data.to_dict()
    assert datasets.Features._from_yaml_list(card_data["dataset_info"]["features"]) == features_for()
    assert "video-text-to-text" in card_data["task_categories"]
    stats = _table(_section(readme, "stats:default"))
    assert _num(stats["samples"][0]) == sum(result.num_rows.values())
    rejected = {k.strip("`"): int(v[0]) for k, v in stats.items() if k.startswith("`")}
    assert rejected == dict(result.rejected) and rejected
    assert f'load_dataset("{out.as_posix()}", split="train")' in readme
    assert ".incomplete" not in readme

    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features == features_for()
    raw = ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))
    assert [r["id"] for r in raw] == [str(r["id"]) for r in sample_records]
    assert isinstance(raw[0]["images"][0], Image.Image)
