"""Audio files with PyAV: check that a file holds an audio stream, probe it, decode it for trainers.

LLaMA-Factory's audio data (``audios`` + ``<audio>`` tags) is media like images and videos: validated,
stored with its bytes (``Audio()``), probed at build time (``audio_info``) and decoded by
:func:`llava_hf.decode_media`. datasets' own ``Audio()`` decoding needs torchcodec; this needs only
PyAV, a dependency, and never imports torchcodec.

A decoded audio file is ``{"array": numpy.ndarray (float32), "sampling_rate": int}``: the samples of
its first audio stream as PyAV decodes them, converted to float32 in ``[-1, 1]`` (planar), at the
file's own rate or resampled to ``sampling_rate`` with PyAV's ``AudioResampler``. A mono file gives
shape ``(samples,)`` (what audio feature extractors such as Whisper's take); ``C`` channels give
``(C, samples)``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "AudioDecodeError",
    "AudioInfo",
    "StoredAudios",
    "check_audio",
    "decode_audio",
    "probe_audio",
]


class AudioDecodeError(Exception):
    """An audio file PyAV cannot decode (``decode_media`` adds the record, column and path)."""


def _open(full: str, data: bytes | None) -> Any:
    import av

    return av.open(io.BytesIO(data) if data is not None else full, mode="r")


def check_audio(full: str, *, deep: bool = False, data: bytes | None = None) -> str | None:
    """None if av opens the file with at least one audio stream (``deep``: decodes its first frames)."""
    import av

    from .files import _naming_the_file

    try:
        with _open(full, data) as container:
            if not container.streams.audio:
                return "no audio stream"
            if deep:
                frames = sum(1 for _ in itertools.islice(container.decode(audio=0), 3))
                if frames == 0:
                    return "no audio frame could be decoded"
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as err:
        return f"{type(err).__name__}: {_naming_the_file(err, full)}"
    return None


@dataclass(frozen=True)
class AudioInfo:
    """Facts about an audio file probed at build time, stored beside it (``audio_info``)."""

    duration: float | None
    sample_rate: int
    channels: int
    codec: str

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "codec": self.codec,
        }


def probe_audio(full: str, *, data: bytes | None = None) -> AudioInfo:
    """Duration (s), sample rate, channel count and codec of the first audio stream, from headers."""
    with _open(full, data) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * Fraction(stream.time_base))
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return AudioInfo(
            duration=round(duration, 6) if duration is not None else None,
            sample_rate=int(ctx.sample_rate or stream.rate or 0),
            channels=int(ctx.layout.nb_channels),
            codec=str(ctx.name),
        )


def decode_audio(source: bytes | str, sampling_rate: int | None = None) -> dict[str, Any]:
    """The samples of an audio file (its bytes or a local path) as float32, by PyAV (see the module).

    Raises :class:`AudioDecodeError` with the reason when PyAV cannot open or decode it.
    """
    import av

    try:
        with av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream")
            stream = container.streams.audio[0]
            rate = int(sampling_rate or stream.codec_context.sample_rate or stream.rate)
            resampler: Any = None
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                if resampler is None:
                    # planar float32 at the asked rate; the channel layout stays the file's
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            if resampler is not None:
                chunks.extend(f.to_ndarray() for f in resampler.resample(None))
            channels = int(stream.codec_context.layout.nb_channels) or 1
    except AudioDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise AudioDecodeError(f"{type(err).__name__}: {err}") from err
    samples = (
        np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), dtype=np.float32)
    ).astype(np.float32, copy=False)
    return {"array": samples[0] if samples.shape[0] == 1 else samples, "sampling_rate": rate}


class StoredAudios:
    """Decodes one stored audio file (``{bytes, path}`` or a path) with PyAV; an error names the record."""

    def __init__(self, sampling_rate: int | None = None, token_per_repo_id: Any = None) -> None:
        from .video import StoredVideos, VideoSampling

        self.sampling_rate = sampling_rate
        # reads bytes, a local path or a Hub path (with the repo's token) as it does for videos
        self._reader = StoredVideos(VideoSampling(), token_per_repo_id)

    def decode(self, value: Any, *, rid: Any = None, column: str = "audios", position: int = 0) -> Any:
        from ..errors import MediaDecodeError
        from .video import VideoDecodeError

        if value is None:
            return None
        path = value.get("path") if isinstance(value, Mapping) else value if isinstance(value, str) else None
        try:
            return decode_audio(self._reader._source(value, path), self.sampling_rate)
        except (AudioDecodeError, VideoDecodeError, OSError) as err:
            record = "a row" if rid is None else f"record {str(rid)!r}"
            raise MediaDecodeError(
                f"{record}: audio {path!r} ({column}[{position}]) cannot be decoded with PyAV: {err}",
                id=None if rid is None else str(rid),
                path=path,
                hint="check the source file (llava-hf validate --deep decodes every audio file's first "
                "frames); drop the record, or replace the file and build again",
            ) from None
