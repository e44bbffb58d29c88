"""Audio as media (LLaMA-Factory's ``audios`` + ``<audio>``): validation, the ``audios``/``audio_info``
columns, export byte for byte, decoding with PyAV (never torchcodec), chat parts. Real audio files are
written with PyAV here: sine tones of 0.5 s as WAV, MP3, FLAC and M4A (AAC), mono and stereo, 16 kHz
and 44.1 kHz, and an MP4 holding an audio stream only."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import datasets
import numpy as np
import pytest

from llava_hf import build_folder, decode_media, features_for
from llava_hf.chat import from_messages, to_messages
from llava_hf.cli import main as cli_main
from llava_hf.errors import ChatTemplateError, UsageError
from llava_hf.export import export_llava
from llava_hf.media.audio import AudioDecodeError, check_audio, decode_audio, probe_audio
from llava_hf.media.files import MediaRoots
from llava_hf.records import iter_records, normalize
from llava_hf.validate import Validator

REAL = Path(__file__).parent / "data" / "real"
#: name -> (codec, container format, sample rate, layout)
AUDIO_FILES = {
    "tone.wav": ("pcm_s16le", None, 16000, "mono"),
    "tone.mp3": ("libmp3lame", None, 44100, "stereo"),
    "tone.flac": ("flac", None, 16000, "stereo"),
    "tone.m4a": ("aac", "ipod", 44100, "mono"),
    "speech/tone.mp4": ("aac", "mp4", 16000, "stereo"),
}


def write_tone(path: Path, codec: str, fmt: str | None, rate: int, layout: str) -> None:
    """A 0.5 s sine tone (440 Hz; 660 Hz on the right channel), encoded with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 2 if layout == "stereo" else 1
    t = np.arange(rate // 2) / rate
    tone = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (440, 660)[:channels]]).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        sample_format = stream.codec_context.format.name
        size = stream.codec_context.frame_size or 1024
        for start in range(0, tone.shape[1], size):
            chunk = tone[:, start : start + size]
            if sample_format == "fltp":
                array = chunk
            elif sample_format == "s16":  # interleaved 16-bit
                array = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            elif sample_format == "s32p":
                array = (chunk * (2**31 - 1)).astype(np.int32)
            else:  # pragma: no cover - the codecs above use these three
                raise AssertionError(sample_format)
            frame = av.AudioFrame.from_ndarray(array, format=sample_format, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    for name, spec in AUDIO_FILES.items():
        write_tone(root / "audios" / name, *spec)
    return root


def pyav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """Every sample of the first audio stream as PyAV decodes it, as float32 (channels, samples)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
        rate = stream.codec_context.sample_rate
    chunks = []
    for frame in frames:
        array = frame.to_ndarray()
        name = frame.format.name
        if not frame.format.is_planar:
            array = array.reshape(-1, len(frame.layout.channels)).T
        if name.startswith("s16"):
            array = array.astype(np.float32) / 32768
        elif name.startswith("s32"):
            array = array.astype(np.float32) / 2**31
        chunks.append(array.astype(np.float32))
    return np.concatenate(chunks, axis=1), rate


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def turns(question: str, answer: str = "A tone.") -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def codes(path: Path, **roots: Any) -> list[tuple[str | None, str, str | None]]:
    checked = Validator(roots=MediaRoots(**roots)).iter_checked([str(path)])
    return [(p.id, p.code, p.field) for c in checked for p in c.problems]


# --- files: check, probe, decode ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AUDIO_FILES))
def test_decoded_samples_are_pyavs_own(audio_dir: Path, name: str) -> None:
    data = (audio_dir / "audios" / name).read_bytes()
    expected, rate = pyav_samples(data)
    decoded = decode_audio(data)
    array = decoded["array"]
    assert array.dtype == np.float32 and decoded["sampling_rate"] == rate == AUDIO_FILES[name][2]
    channels = 2 if AUDIO_FILES[name][3] == "stereo" else 1
    assert array.shape == ((expected.shape[1],) if channels == 1 else expected.shape)
    np.testing.assert_array_equal(array.reshape(channels, -1), expected)
    assert 0.2 < float(np.abs(array).max()) < 0.4  # the 0.3 tone, not silence
    assert decode_audio(str(audio_dir / "audios" / name))["array"].tobytes() == array.tobytes()


@pytest.mark.parametrize("name", list(AUDIO_FILES))
def test_probe_reads_the_headers(audio_dir: Path, name: str) -> None:
    codec, _, rate, layout = AUDIO_FILES[name]
    full = str(audio_dir / "audios" / name)
    info = probe_audio(full)
    assert check_audio(full) is None and check_audio(full, deep=True) is None
    assert info.sample_rate == rate and info.channels == (2 if layout == "stereo" else 1)
    assert info.codec == {"libmp3lame": "mp3float"}.get(codec, codec)  # the decoder's name
    samples = decode_audio(full)["array"].shape[-1]
    assert info.duration is not None and abs(info.duration - samples / rate) < 0.07  # encoder padding


def test_resampled_with_pyav(audio_dir: Path) -> None:
    data = (audio_dir / "audios" / "tone.mp3").read_bytes()
    own = decode_audio(data)
    resampled = decode_audio(data, 16000)
    assert resampled["sampling_rate"] == 16000 and resampled["array"].dtype == np.float32
    assert resampled["array"].shape[0] == 2
    expected = own["array"].shape[1] * 16000 / 44100
    assert abs(resampled["array"].shape[1] - expected) <= 32  # the resampler's filter delay at most


def test_not_audio(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    assert check_audio(str(text)) is not None
    assert check_audio(str(REAL / "1.mp4")) == "no audio stream"  # a silent video is not audio
    assert check_audio(str(REAL / "1.jpg")) == "no audio stream"
    with pytest.raises(AudioDecodeError):
        decode_audio(text.read_bytes())


# --- records and validation ---------------------------------------------------------------------------


def test_records_read_audio_as_media(audio_dir: Path) -> None:
    data = write_json(
        audio_dir / "read.json",
        [
            {"id": "one", "audio": "tone.wav", "conversations": turns("<audio>What is it?")},
            {"id": "two", "audios": ["tone.mp3", "tone.flac"], "conversations": turns("<audio><audio>Same?")},
            {"id": "bad", "audios": 3, "conversations": turns("<audio>?")},
        ],
    )
    records = [r for r, _ in iter_records(str(data))]
    assert records[0] is not None and records[0].audios == ("tone.wav",) and records[0].extra == {}
    assert records[1] is not None and records[1].audios == ("tone.mp3", "tone.flac")
    assert records[0].to_llava()["audio"] == "tone.wav" and records[1].to_llava()["audio"] == [
        "tone.mp3",
        "tone.flac",
    ]
    assert codes(data, audio_folder=str(audio_dir / "audios")) == [("bad", "invalid_media_field", "audios")]


def test_validation_codes(audio_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "audios").mkdir()
    (tmp_path / "audios" / "text.wav").write_text("not audio")
    (tmp_path / "audios" / "tone.wav").write_bytes((audio_dir / "audios" / "tone.wav").read_bytes())
    (tmp_path / "outside.wav").write_bytes((audio_dir / "audios" / "tone.wav").read_bytes())
    data = write_json(
        tmp_path / "data.json",
        [
            {"id": "ok", "audio": "tone.wav", "conversations": turns("<audio>What is it?")},
            {"id": "missing", "audio": "gone.wav", "conversations": turns("<audio>?")},
            {"id": "unreadable", "audio": "text.wav", "conversations": turns("<audio>?")},
            {"id": "outside", "audio": "../outside.wav", "conversations": turns("<audio>?")},
            {"id": "absolute", "audio": str(tmp_path / "outside.wav"), "conversations": turns("<audio>?")},
            {"id": "tags", "audio": "tone.wav", "conversations": turns("<audio><audio>?")},
            {"id": "answer", "audio": "tone.wav", "conversations": turns("<audio>?", "<audio> again")},
            {"id": "added", "audio": "tone.wav", "conversations": turns("What is it?")},
        ],
    )
    found = codes(data, audio_folder=str(tmp_path / "audios"))
    assert found == [
        ("missing", "missing_media", "audios[0]"),
        ("unreadable", "unreadable_media", "audios[0]"),
        ("outside", "media_outside_root", "audios[0]"),
        ("absolute", "media_outside_root", "audios[0]"),
        ("tags", "placeholder_mismatch", "conversations"),
        ("answer", "placeholder_in_answer", "conversations[1]"),
        ("added", "placeholder_added", "conversations"),
    ]
    # without audio_folder= the JSON file's folder is the root: tone.wav is not there
    assert ("ok", "missing_media", "audios[0]") in codes(data)


def test_cli_validate_names_the_audio_flag(
    audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_json(
        tmp_path / "data.json",
        [
            {"id": "a", "audio": "tone.wav", "conversations": turns("<audio>?")},
            {"id": "b", "audio": "gone.wav", "conversations": turns("<audio>?")},
        ],
    )
    assert cli_main(["validate", str(data), "--audio-folder", str(audio_dir / "audios")]) == 1
    out = capsys.readouterr().out
    assert "audios: 2" in out and "missing_media" in out and "--audio-folder" in out
    assert "audio_folder=" not in out


# --- build, load, export, decode ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(audio_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("built")
    media = root / "media"
    media.mkdir()
    for name in ("1.jpg", "1.mp4"):
        (media / name).write_bytes((REAL / name).read_bytes())
    records: list[dict[str, Any]] = [
        {
            "id": "wav",
            "messages": [
                {"role": "user", "content": "<audio>What is it?"},
                {"role": "assistant", "content": "A tone."},
            ],
            "audios": ["tone.wav"],
        },
        {
            "id": "all",
            "image": "1.jpg",
            "video": "1.mp4",
            "audios": ["tone.mp3", "speech/tone.mp4"],
            "conversations": turns("<image>\n<video>\n<audio> and <audio>: same?", "Yes."),
        },
        {"id": "image", "image": "1.jpg", "conversations": turns("<image>\nWhat is it?")},
        {"id": "flac", "audio": "tone.flac", "conversations": turns("<audio>?"), "extra": {"k": 1}},
        {"id": "m4a", "audio": "tone.m4a", "conversations": turns("<audio>?")},
    ]
    data = write_json(root / "data.json", records)
    out = root / "out"
    build_folder(
        str(data),
        out,
        image_folder=str(media),
        video_folder=str(media),
        audio_folder=str(audio_dir / "audios"),
    )
    return {"out": out, "records": records, "audio_root": audio_dir / "audios"}


def test_built_columns_and_audio_info(built: dict[str, Any]) -> None:
    ds = datasets.load_dataset(str(built["out"]), split="train")
    assert list(ds.features)[:7] == [
        "id",
        "images",
        "videos",
        "video_frames",
        "video_info",
        "audios",
        "audio_info",
    ]
    assert ds.features["audios"] == datasets.List(datasets.Audio())
    raw = ds.cast(features_for(decode=False))
    for row, record in zip(raw, built["records"]):
        paths = record.get("audios") or ([record["audio"]] if "audio" in record else [])
        assert [a["path"] for a in row["audios"]] == paths
        assert [a["bytes"] for a in row["audios"]] == [(built["audio_root"] / p).read_bytes() for p in paths]
        assert row["audio_info"] == [probe_audio(str(built["audio_root"] / p)).to_dict() for p in paths]
    assert raw[2]["audios"] == [] and raw[2]["audio_info"] == []
    # plain datasets: image rows decode; an audio row needs torchcodec, which llava-hf never needs
    assert ds[2]["audios"] == [] and len(ds[2]["images"]) == 1
    with pytest.raises(ImportError, match="torchcodec"):
        ds[0]


def test_decode_media_gives_pyav_arrays(built: dict[str, Any]) -> None:
    ds = datasets.load_dataset(str(built["out"]), split="train")
    for rows in (
        decode_media(ds),
        decode_media(datasets.load_dataset(str(built["out"]), split="train", streaming=True)),
    ):
        for row, record in zip(rows, built["records"]):
            paths = record.get("audios") or ([record["audio"]] if "audio" in record else [])
            assert len(row["audios"]) == len(paths)
            for audio, path in zip(row["audios"], paths):
                expected, rate = pyav_samples((built["audio_root"] / path).read_bytes())
                assert audio["sampling_rate"] == rate and audio["array"].dtype == np.float32
                np.testing.assert_array_equal(audio["array"].reshape(expected.shape), expected)
    resampled = decode_media(ds, sampling_rate=8000)[1]["audios"]
    assert [a["sampling_rate"] for a in resampled] == [8000, 8000]
    assert resampled[0]["array"].shape[0] == 2 and abs(resampled[0]["array"].shape[1] - 4000) <= 32
    with pytest.raises(UsageError, match="sampling_rate"):
        decode_media(ds, sampling_rate=0)


def test_export_restores_audio_byte_for_byte(built: dict[str, Any], tmp_path: Path) -> None:
    # each record comes back in its own layout (the first one's messages + audios: media beside the JSON)
    for media_root, folder in ((None, "."), ("media", "media")):
        target = tmp_path / f"export-{folder}"
        export_llava(str(built["out"]), target, media_root=media_root)
        exported = json.loads((target / "train.json").read_text())
        assert exported == built["records"]
        for original in built["records"]:
            paths = original.get("audios") or ([original["audio"]] if "audio" in original else [])
            for path in paths:
                assert (target / folder / path).read_bytes() == (built["audio_root"] / path).read_bytes()


def test_mixed_media_concatenates_with_image_only(built: dict[str, Any], tmp_path: Path) -> None:
    data = write_json(
        tmp_path / "images.json", [{"id": "i", "image": "1.jpg", "conversations": turns("<image>\n?")}]
    )
    (tmp_path / "1.jpg").write_bytes((REAL / "1.jpg").read_bytes())
    build_folder(str(data), tmp_path / "out")
    mixed = datasets.load_dataset(str(built["out"]), split="train")
    images = datasets.load_dataset(str(tmp_path / "out"), split="train")
    both = datasets.concatenate_datasets([mixed, images]).cast(features_for(decode=False))
    assert len(both) == len(mixed) + 1 and both[-1]["audios"] == [] and len(both[1]["audios"]) == 2


def test_card_counts_audio(built: dict[str, Any]) -> None:
    card = (built["out"] / "README.md").read_text()
    assert "| audio files | 5 |" in card and "| rows with audio | 4 (80.0%) |" in card
    assert "total audio duration" in card and "      audios: 5" in card


# --- chat -----------------------------------------------------------------------------------------------


def test_audio_parts_round_trip() -> None:
    row = {
        "id": "r",
        "conversations": turns("<image>\n<audio>\nWhat do you hear?\n<audio>", "Two tones."),
        "images": ["i.jpg"],
        "videos": [],
        "audios": ["a.wav", "b.wav"],
    }
    messages = to_messages(row)
    kinds = [p["type"] for p in messages["messages"][0]["content"]]
    assert kinds == ["image", "audio", "text", "audio"]
    assert from_messages(messages) == row
    decoded = {"array": np.zeros(4, dtype=np.float32), "sampling_rate": 16000}
    parts = to_messages({**row, "audios": [decoded, decoded]}, format="processor")["messages"][0]["content"]
    assert parts[1]["audio"] is decoded["array"] and parts[1]["sampling_rate"] == 16000
    with pytest.raises(ChatTemplateError, match="audio"):
        to_messages({**row, "audios": ["a.wav"]})


def test_messages_layout_audio_parts_read_as_tags() -> None:
    record, problems = normalize(
        {
            "messages": [
                {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "A tone."},
            ],
            "audios": "a.wav",
        },
        file="d.json",
        index=0,
    )
    assert problems == [] and record is not None
    assert record.conversations[0].value == "<audio>What is it?" and record.audios == ("a.wav",)
