"""Audio as media (LLaMA-Factory's ``audios`` + ``<audio>``): validation, the ``audios``/``audio_info``
columns, export byte for byte, decoding with PyAV (never torchcodec), chat parts. Real audio files are
written with PyAV here: sine tones of 0.5 s as WAV, MP3, FLAC and M4A (AAC), mono and stereo, 16 kHz
and 44.1 kHz, and an MP4 holding an audio stream only."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

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
                array = (chunk * 2**30).astype(np.int32)
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
