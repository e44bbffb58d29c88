"""Videos given as lists of frames (``"videos": [["f1.jpg", ...]]``, LLaMA-Factory / ms-swift / Qwen2-VL):
validated frame by frame, built as ``video_frames`` (each frame byte-identical), decoded to ``(T, H, W, 3)``,
exported back as the same lists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from PIL import Image

from llava_hf import build_folder, decode_media
from llava_hf.cli import main
from llava_hf.errors import MediaDecodeError, RecordError
from llava_hf.export import export_llava
from llava_hf.media.files import MediaRoots
from llava_hf.schema import features_for
from llava_hf.validate import Validator

REAL = Path(__file__).parent / "data" / "real"  # NOTICE in tests/data/real's README

FRAMES = [f"clip/{i:02d}.jpg" for i in range(6)]
PNG_FRAMES = ["still/a.png", "still/b.png", "still/c.png"]


def _write_frames(root: Path) -> None:
    """Frames with Pillow: a JPEG clip (6 frames, 40x30) and a PNG one (3 frames, 20x16)."""
    for i, name in enumerate(FRAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((30, 40, 3), dtype=np.uint8)
        pixels[..., 0], pixels[:, : 4 * (i + 1), 1], pixels[..., 2] = 40 * i, 200, 255 - 40 * i
        Image.fromarray(pixels).save(root / name, quality=90)
    for i, name in enumerate(PNG_FRAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 16), (80 * i, 10, 200)).save(root / name)


def _sharegpt() -> list[dict[str, Any]]:
    """LLaMA-Factory's sharegpt layout (conversations + videos), with a file video mixed in."""
    return [
        {
            "conversations": [
                {"from": "human", "value": "<video>What is moving?"},
                {"from": "gpt", "value": "A green bar grows."},
            ],
            "videos": [FRAMES],
        },
        {
            "conversations": [
                {"from": "human", "value": "Compare <video> with <video>."},
                {"from": "gpt", "value": "The first is filmed, the second is stills."},
            ],
            "videos": ["4.mp4", PNG_FRAMES],
        },
        # no media key: LLaVA's layout by its keys, written back with its id
        {
            "id": "text",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}],
        },
    ]


def _messages() -> list[dict[str, Any]]:
    """LLaMA-Factory's messages layout (messages + videos): frames first, then a file video."""
    return [
        {
            "messages": [
                {"role": "user", "content": "<video><video>Which came first?"},
                {"role": "assistant", "content": "The stills."},
            ],
            "videos": [PNG_FRAMES, "4.mp4"],
        },
        {
            "messages": [
                {"role": "user", "content": "<video>Describe it."},
                {"role": "assistant", "content": "Colours change."},
            ],
            "videos": [FRAMES[::2]],
        },
    ]


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write_frames(root)
    shutil.copy(REAL / "4.mp4", root / "4.mp4")
    return root


def _write(root: Path, name: str, records: list[dict[str, Any]]) -> Path:
    path = root / name
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize(
    ("name", "records"), [("sharegpt.json", _sharegpt()), ("messages.json", _messages())]
)
def test_build_load_decode_export_round_trip(
    media: Path, tmp_path: Path, name: str, records: list[Any]
) -> None:
    data = _write(media, name, records)
    checked = list(Validator().iter_checked([str(data)]))
    assert [c.problems for c in checked] == [()] * len(records)

    out = tmp_path / "out"
    build_folder(str(data), out)
    ds = datasets.load_dataset(str(out), split="train")  # plain datasets reads it
    assert ds.features == features_for()
    raw = ds.cast_column("videos", datasets.List(datasets.Video(decode=False))).cast_column(
        "video_frames", datasets.List(datasets.List(datasets.Image(decode=False)))
    )
    for record, row in zip(records, raw):
        videos = record.get("videos", [])
        assert len(row["videos"]) == len(row["video_frames"]) == len(row["video_info"]) == len(videos)
        for video, stored, frames, info in zip(videos, row["videos"], row["video_frames"], row["video_info"]):
            if isinstance(video, str):
                assert stored["path"] == video and stored["bytes"] == (media / video).read_bytes()
                assert frames == [] and info["codec"] != "frames"
                continue
            assert stored is None
            assert [f["path"] for f in frames] == video
            assert [f["bytes"] for f in frames] == [(media / p).read_bytes() for p in video]  # byte-identical
            width, height = Image.open(media / video[0]).size
            assert info == {
                "duration": None,
                "fps": None,
                "num_frames": len(video),
                "width": width,
                "height": height,
                "codec": "frames",
            }

    decoded = decode_media(ds, num_frames=3)
    for record, row in zip(records, decoded):
        videos = record.get("videos", [])
        assert len(row["videos"]) == len(videos)
        for k, video in enumerate(videos):
            array = row["videos"][k]
            assert array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3
            if isinstance(video, str):
                assert row["video_timestamps"][k] is not None
                continue
            picks = [int(i) for i in np.linspace(0, len(video) - 1, 3, dtype=int)] if len(video) > 3 else None
            expected = np.stack([_pixels(media / video[i]) for i in (picks or range(len(video)))])
            np.testing.assert_array_equal(array, expected)  # the frames' own pixels
            assert row["video_timestamps"][k] is None  # frames carry no times

    exported = tmp_path / "exported"
    export_llava(str(out), exported)
    assert json.loads((exported / name).with_name("train.json").read_text()) == records
    for record in records:
        for video in record.get("videos", []):
            for path in [video] if isinstance(video, str) else video:
                assert (exported / path).read_bytes() == (media / path).read_bytes()


def test_fps_sampling_takes_every_frame_up_to_max_frames(media: Path, tmp_path: Path) -> None:
    """Frames have no rate: with fps= every frame is taken (as LLaMA-Factory and Qwen2-VL do), at most
    max_frames, thinned evenly; a streaming dataset decodes them the same way."""
    data = _write(media, "train.json", _sharegpt()[:1])
    build_folder(str(data), tmp_path / "out")
    stream = datasets.load_dataset(str(tmp_path / "out"), split="train", streaming=True)
    (row,) = list(decode_media(stream, fps=2.0))
    assert row["videos"][0].shape == (6, 30, 40, 3) and row["video_timestamps"] == [None]
    (row,) = list(decode_media(stream, fps=2.0, max_frames=2))
    np.testing.assert_array_equal(row["videos"][0], np.stack([_pixels(media / FRAMES[i]) for i in (0, 5)]))
    assert isinstance(row["video_frames"][0][0], dict)  # left as stored: decoded into videos


def test_frames_of_other_sizes_are_scaled_to_the_first(tmp_path: Path) -> None:
    """Real JPEGs of different sizes as one video: each is scaled to the first sampled frame's size."""
    root = tmp_path / "src"
    root.mkdir()
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        shutil.copy(REAL / name, root / name)
    record = {
        "conversations": [{"from": "human", "value": "<video>?"}, {"from": "gpt", "value": "Photos."}],
        "videos": [["1.jpg", "2.jpg", "3.jpg"]],
    }
    build_folder(str(_write(root, "train.json", [record])), tmp_path / "out")
    (row,) = list(decode_media(datasets.load_dataset(str(tmp_path / "out"), split="train")))
    width, height = Image.open(root / "1.jpg").size
    assert row["videos"][0].shape == (3, height, width, 3)
    np.testing.assert_array_equal(row["videos"][0][0], _pixels(root / "1.jpg"))


def test_validate_names_each_bad_frame(media: Path, tmp_path: Path) -> None:
    (media / "clip" / "broken.jpg").write_bytes(b"not a jpeg at all")
    outside = tmp_path / "outside.jpg"
    shutil.copy(media / FRAMES[0], outside)
    good: dict[str, Any] = {
        "conversations": [{"from": "human", "value": "<video>?"}, {"from": "gpt", "value": "Yes."}]
    }
    records: list[dict[str, Any]] = [
        {**good, "id": "missing", "videos": [[FRAMES[0], "clip/gone.jpg"]]},
        {**good, "id": "broken", "videos": ["4.mp4", [FRAMES[1], "clip/broken.jpg"]]},
        {**good, "id": "outside", "videos": [["../outside.jpg"]]},
        {**good, "id": "tags", "videos": [FRAMES, PNG_FRAMES]},  # one <video> for two videos
        {**good, "id": "empty", "videos": [[]]},
        {**good, "id": "nested", "videos": [[["a.jpg"]]]},
        {**good, "id": "images", "images": [["a.jpg"]]},  # frame lists are videos only
    ]
    records[1]["conversations"] = [
        {"from": "human", "value": "<video> and <video>?"},
        {"from": "gpt", "value": "Yes."},
    ]
    data = _write(media, "bad.json", records)
    found = {
        c.record.id if c.record else c.problems[0].id: [(p.code, p.field) for p in c.problems]
        for c in Validator(roots=MediaRoots()).iter_checked([str(data)])
    }
    assert found == {
        "missing": [("missing_media", "videos[0][1]")],
        "broken": [("unreadable_media", "videos[1][1]")],
        "outside": [("media_outside_root", "videos[0][0]")],
        "tags": [("placeholder_mismatch", "conversations")],
        "empty": [("invalid_media_field", "videos")],
        "nested": [("invalid_media_field", "videos")],
        "images": [("invalid_media_field", "images")],
    }
    report = tmp_path / "problems.jsonl"
    assert main(["validate", str(data), "--report", str(report)]) == 1
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    broken = next(p for p in lines if p["id"] == "broken")
    assert "bad.json, record 1 (id 'broken'), field 'videos[1][1]'" in broken["message"]
    assert "clip/broken.jpg" in broken["message"]

    # build judges every frame the same way: raise names the frame, skip counts the record
    with pytest.raises(RecordError) as err:
        build_folder(str(_write(media, "one.json", records[1:2])), tmp_path / "raise")
    assert err.value.problem.field == "videos[1][1]" and err.value.problem.code == "unreadable_media"
    kept = {**good, "id": "kept", "videos": [FRAMES]}
    result = build_folder(
        str(_write(media, "some.json", [*records, kept])), tmp_path / "skip", on_error="skip"
    )
    assert result.rejected == {
        "invalid_media_field": 3,
        "media_outside_root": 1,
        "missing_media": 1,
        "placeholder_mismatch": 1,
        "unreadable_media": 1,
    }
    assert datasets.load_dataset(str(tmp_path / "skip"), split="train")["id"] == ["kept"]


def test_chat_collator_takes_a_frame_video_as_a_video(media: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    import torch

    from llava_hf.chat import ChatCollator, as_messages
    from tests.fixtures.tiny_vlm import make_processor

    data = _write(media, "train.json", _sharegpt()[:2])
    build_folder(str(data), tmp_path / "out")
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train")
    processor = make_processor()
    rows = list(decode_media(ds, num_frames=4))
    batch = ChatCollator(processor, template="vicuna_v1")(rows)
    frames = [frame for row in rows for video in row["videos"] for frame in video]
    assert len(frames) == 4 + 4 + 3  # the frame clip, the mp4, the 3 stills
    expected = processor.image_processor(frames, return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], expected)
    messages = list(as_messages(ds, format="processor", num_frames=4))
    parts = [p for m in messages[1]["messages"] for p in m["content"] if p["type"] == "video"]
    assert [p["video"].shape[0] for p in parts] == [4, 3]
    assert "timestamps" in parts[0] and "timestamps" not in parts[1]  # the stills have no times
    with pytest.raises(Exception, match="not decoded"):
        ChatCollator(processor)([ds.cast_column("videos", datasets.List(datasets.Video(decode=False)))[0]])


def test_undecodable_frame_names_the_record(media: Path, tmp_path: Path) -> None:
    data = _write(media, "train.json", _sharegpt()[:1])
    build_folder(str(data), tmp_path / "out")
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train")
    broken = ds.cast_column("video_frames", datasets.List(datasets.List(datasets.Image(decode=False))))
    broken = broken.map(
        lambda row: {
            "video_frames": [[{"bytes": b"junk", "path": f["path"]} for f in row["video_frames"][0]]]
        }
    )
    with pytest.raises(MediaDecodeError, match=r"record 'train-0'") as err:
        list(decode_media(broken.cast(features_for()), num_frames=2))
    assert "video_frames[0]" in str(err.value)
