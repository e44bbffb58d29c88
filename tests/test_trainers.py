"""Streaming a dataset built by LlavaBuilder into real trainers: TRL's SFTTrainer, a torch DataLoader
with workers, and split_dataset_by_node. A tiny random LLaVA model (tests/fixtures/tiny_vlm.py)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

from datasets import load_dataset  # noqa: E402
from datasets.distributed import split_dataset_by_node  # noqa: E402

from llava_hf import LlavaBuilder, build_folder, decode_media  # noqa: E402
from llava_hf.chat import IGNORE_INDEX, ChatCollator, as_messages  # noqa: E402
from llava_hf.schema import OutputFormat  # noqa: E402
from tests.fixtures.tiny_vlm import TinyVLM, make_tiny_vlm  # noqa: E402

pytestmark = [
    pytest.mark.train,
    # TRL 1.16's SFTConfig sets the deprecated alias itself, whatever the caller passes
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
]


def _records() -> list[dict[str, Any]]:
    """Ten image and text records: multi-turn, multi-image, a system turn, tags before and after."""
    images = ["coco/train2017/1.jpg", "coco/train2017/2.jpg", "coco/train2017/3.jpg"]
    records: list[dict[str, Any]] = []
    for i in range(10):
        kind = i % 4
        if kind == 0:
            rec = {
                "image": images[i % 3],
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
                    {"from": "gpt", "value": f"The bus in the image is white and red {i}."},
                    {"from": "human", "value": "What feature can be seen on the back of the bus?"},
                    {"from": "gpt", "value": "The back of the bus features an advertisement."},
                ],
            }
        elif kind == 1:
            rec = {
                "image": [images[0], images[2]],
                "conversations": [
                    {"from": "system", "value": "You are a careful assistant."},
                    {"from": "human", "value": "Compare <image> and\n<image>"},
                    {"from": "gpt", "value": f"The first is brighter {i}."},
                ],
            }
        elif kind == 2:
            rec = {
                "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": f"Hi {i}."}]
            }
        else:
            rec = {
                "image": images[1],
                "conversations": [
                    {"from": "human", "value": "Who wrote this book?\n<image>"},
                    {"from": "gpt", "value": f"Unknown {i}."},
                ],
            }
        records.append({"id": f"rec-{i}", **rec})
    return records


@pytest.fixture
def stream(llava_dir: Path, write_json: Callable[..., Path]) -> Any:
    """The builder's streaming dataset (straight from JSON + images, three original shards)."""
    path = write_json(_records(), "train.json")
    builder = LlavaBuilder(data_files=str(path), image_folder=str(llava_dir / "images"), records_per_shard=4)
    ds = builder.as_streaming_dataset(split="train")
    assert ds.num_shards >= 2
    return ds


@pytest.fixture(scope="module")
def vlm() -> TinyVLM:
    return make_tiny_vlm()


def _sft_config(tmp_path: Path, **kwargs: Any) -> Any:
    return trl.SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        seed=0,
        **kwargs,
    )


def _capture_labels(model: Any) -> tuple[list[Any], Any]:
    seen: list[Any] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["labels"].detach().clone())

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def _losses(trainer: Any) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _trl_ready(source: str, stream: Any, llava_dir: Path, tmp_path: Path) -> Any:
    """messages + images, streamed: from the builder directly, or from a built folder (as the README shows)."""
    if source == "builder_stream":
        return as_messages(stream)
    out = tmp_path / source
    fmt: OutputFormat = "messages" if source == "built_messages" else "conversations"
    build_folder(
        str(llava_dir / "train.json"),
        out,
        image_folder=str(llava_dir / "images"),
        format=fmt,
        records_per_shard=4,
    )
    ds = load_dataset(str(out), split="train", streaming=True)
    assert ("messages" in ds.column_names) == (fmt == "messages")
    return as_messages(ds)  # the same call for both layouts


@pytest.mark.parametrize("source", ["builder_stream", "built_folder", "built_messages"])
def test_sft_trainer_trl_format_assistant_only_loss(
    source: str, stream: Any, llava_dir: Path, vlm: TinyVLM, tmp_path: Path
) -> None:
    """TRL's own path (its collator, its {% generation %} masks) on messages + images; the labels the
    model receives are exactly llava-hf's prefix-derived assistant labels."""
    ds = _trl_ready(source, stream, llava_dir, tmp_path)
    seen, handle = _capture_labels(vlm.model)
    trainer = trl.SFTTrainer(
        model=vlm.model,
        args=_sft_config(tmp_path, assistant_only_loss=True),
        train_dataset=ds,
        processing_class=vlm.processor,
    )
    try:
        trainer.train()
    finally:
        handle.remove()
    losses = _losses(trainer)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert len(seen) == 2

    rows = list(ds.take(4))
    assert [r["id"] for r in rows] == [r["id"] for r in _records()[:4]]
    expected = ChatCollator(vlm.processor)
    for step, labels in enumerate(seen):
        batch = expected(rows[2 * step : 2 * step + 2])
        assert torch.equal(labels, batch["labels"])
        assert (labels != IGNORE_INDEX).any(dim=1).all()  # no all-masked sample


def test_sft_trainer_llava_template_via_chat_collator(stream: Any, vlm: TinyVLM, tmp_path: Path) -> None:
    """LLaVA-1.5's vicuna_v1 format (built in, no download) through ChatCollator, on conversations rows."""
    ds = decode_media(stream)
    seen, handle = _capture_labels(vlm.model)
    trainer = trl.SFTTrainer(
        model=vlm.model,
        args=_sft_config(
            tmp_path, remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}
        ),
        train_dataset=ds,
        processing_class=vlm.processor,
        data_collator=ChatCollator(vlm.processor, template="vicuna_v1"),
    )
    try:
        trainer.train()
    finally:
        handle.remove()
    losses = _losses(trainer)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    rows = list(ds.take(4))
    tokenizer = vlm.processor.tokenizer
    for step, labels in enumerate(seen):
        for row, row_labels in zip(rows[2 * step : 2 * step + 2], labels):
            trained = [int(t) for t in row_labels if t != IGNORE_INDEX]
            answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
            assert tokenizer.decode(trained) == "".join(f" {a}</s>" for a in answers)


class _IdsAndBatch:
    """Collate function for the DataLoader tests: the ids, and the training batch built in the worker."""

    def __init__(self, processor: Any) -> None:
        self.collator = ChatCollator(processor)

    def __call__(self, rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
        return [row["id"] for row in rows], self.collator(rows)


def _ids_through_loader(ds: Any, processor: Any) -> list[str]:
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_IdsAndBatch(processor))
    ids: list[str] = []
    for batch_ids, batch in loader:
        assert batch["input_ids"].shape[0] == len(batch_ids)
        assert (batch["labels"] != IGNORE_INDEX).any()
        ids.extend(batch_ids)
    return ids


def test_dataloader_two_workers_sees_every_sample_once(stream: Any, vlm: TinyVLM) -> None:
    expected = [r["id"] for r in _records()]
    ids = _ids_through_loader(as_messages(stream), vlm.processor)
    assert Counter(ids) == Counter(expected)


def test_split_dataset_by_node_two_ranks_sees_every_sample_once(stream: Any, vlm: TinyVLM) -> None:
    expected = [r["id"] for r in _records()]
    per_rank = [
        _ids_through_loader(
            as_messages(split_dataset_by_node(stream, rank=rank, world_size=2)), vlm.processor
        )
        for rank in range(2)
    ]
    assert per_rank[0] and per_rank[1]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert Counter(per_rank[0] + per_rank[1]) == Counter(expected)


def _video_records() -> list[dict[str, Any]]:
    """The real MP4 and AVI files: alone, together, beside an image; and a text-only record."""
    ask = "What happens in the video?"
    return [
        {
            "id": "mp4",
            "video": "1.mp4",
            "conversations": [
                {"from": "human", "value": f"<video>\n{ask}"},
                {"from": "gpt", "value": "A baby reads."},
            ],
        },
        {
            "id": "avi",
            "video": "2.avi",
            "conversations": [
                {"from": "human", "value": f"{ask}\n<video>"},
                {"from": "gpt", "value": "It moves."},
            ],
        },
        {
            "id": "both",
            "video": ["2.avi", "1.mp4"],
            "conversations": [
                {"from": "human", "value": "<video><video>\nCompare the clips."},
                {"from": "gpt", "value": "Both move."},
                {"from": "human", "value": "Which is longer?"},
                {"from": "gpt", "value": "The first."},
            ],
        },
        {
            "id": "image-and-video",
            "image": "coco/train2017/1.jpg",
            "video": "4.mp4",
            "conversations": [
                {"from": "human", "value": "<image>\nIs the bus in <video>?"},
                {"from": "gpt", "value": "No."},
            ],
        },
        {
            "id": "text",
            "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}],
        },
        {
            "id": "mp4-again",
            "video": "1.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nDescribe."},
                {"from": "gpt", "value": "A book."},
            ],
        },
    ]


def test_sft_trainer_on_real_videos_from_a_built_folder(
    llava_dir: Path, write_json: Callable[..., Path], vlm: TinyVLM, tmp_path: Path
) -> None:
    """A folder built from the real MP4 and AVI files, decoded with PyAV (no torchcodec) and trained on
    with SFTTrainer: frames through the image processor, assistant-only labels."""
    records = _video_records()
    out = tmp_path / "built-videos"
    build_folder(
        str(write_json(records, "videos.json")),
        out,
        image_folder=str(llava_dir / "images"),
        video_folder=str(llava_dir / "videos"),
    )
    num_frames = 3
    ds = decode_media(load_dataset(str(out), split="train", streaming=True), num_frames=num_frames)
    seen, handle = _capture_labels(vlm.model)
    pixels: list[Any] = []
    pixel_handle = vlm.model.register_forward_pre_hook(
        lambda module, args, kwargs: pixels.append(kwargs.get("pixel_values")), with_kwargs=True
    )
    trainer = trl.SFTTrainer(
        model=vlm.model,
        args=_sft_config(
            tmp_path, remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}
        ),
        train_dataset=ds,
        processing_class=vlm.processor,
        data_collator=ChatCollator(vlm.processor, template="vicuna_v1"),
    )
    try:
        trainer.train()
    finally:
        handle.remove()
        pixel_handle.remove()
    losses = _losses(trainer)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert len(seen) == len(pixels) == 2

    rows = list(ds.take(6))
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    image_id = vlm.processor.image_token_id
    tokenizer = vlm.processor.tokenizer
    for step, labels in enumerate(seen):
        batch_rows = rows[2 * step : 2 * step + 2]
        frames = [sum(len(v) for v in r["videos"]) for r in batch_rows]
        assert pixels[step].shape[0] == sum(frames) + sum(len(r["images"]) for r in batch_rows)
        for row, row_labels, n_frames in zip(batch_rows, labels, frames):
            assert all(len(v) == num_frames for v in row["videos"])
            trained = [int(t) for t in row_labels if t != IGNORE_INDEX]
            answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
            assert tokenizer.decode(trained) == "".join(f" {a}</s>" for a in answers)
            assert n_frames == num_frames * len(row["videos"])
        expected = ChatCollator(vlm.processor, template="vicuna_v1")(batch_rows)
        assert torch.equal(labels, expected["labels"])
        assert [int((ids == image_id).sum()) for ids in expected["input_ids"]] == [
            4 * (n + len(r["images"])) for n, r in zip(frames, batch_rows)
        ]
