"""Videos decoded with PyAV for trainers: exact frames, sampled by count or by time.

:func:`llava_hf.decode_media` decodes videos here (datasets' own ``Video()`` decoding needs torchcodec;
this needs only PyAV, a dependency, and never imports torchcodec). A video becomes a
``numpy.ndarray`` of ``uint8``, shape ``(T, H, W, 3)`` (RGB), with the presentation times of its ``T``
frames in seconds from its first frame.

Which frames (:class:`VideoSampling`):

* ``num_frames=N`` (the default, 8): the frames at ``numpy.linspace(0, n - 1, N, dtype=int)`` of the
  video's ``n`` frames (LLaVA-NeXT's uniform rule), or all ``n`` when ``n < N``;
* ``fps=F``: one frame every ``1/F`` seconds of presentation time: the frame on screen at ``0, 1/F,
  2/F, ...`` seconds up to the last frame (each frame once), at most ``max_frames`` (default 768,
  Qwen-VL's cap), thinned by the same linspace rule when there are more.

Exact frames: frame ``i`` is the ``i``-th frame PyAV's own decoding of the whole file yields
(``list(container.decode(video=0))[i]``). How, without decoding more than needed:

1. An index pass demuxes the packets without decoding them: ``n`` is the number of frame packets
   (non-empty, not marked discard), not the container's ``stream.frames`` (0 or an estimate in AVI,
   MKV, WebM), and their presentation timestamps, sorted, give each frame's time.
2. The decode pass decodes from the start, converts to RGB only the sampled frames and stops after the
   last one. Only those are kept (plus the decoder's few reference frames). When the next sampled frame
   lies after a key frame more than ``SEEK_MIN_SKIP`` frames ahead of the decoder, it seeks to that key
   frame instead of decoding up to it.
3. Each decoded frame is identified by its timestamp in the index: after a seek, decoding must resume
   at the key frame asked for, and frames must then follow one another as the index says. Any
   disagreement (a demuxer that seeks imprecisely, frames the decoder drops, packets without
   timestamps or with repeated ones) abandons the shortcut: the file is decoded once from the start to
   list its frames as PyAV outputs them, and the sampled frames are taken by their position in that
   output.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import datasets
import numpy as np

from ..errors import MediaDecodeError, UsageError
from ..utils.logging import get_logger
from .frames import decode_frames

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_NUM_FRAMES",
    "FRAMES_COLUMN",
    "SEEK_MIN_SKIP",
    "TIMESTAMPS_COLUMN",
    "DecodedVideo",
    "StoredVideos",
    "VideoDecodeError",
    "VideoSampling",
    "decode_video",
    "output_features",
    "video_columns",
]

logger = get_logger(__name__)

#: Frames per video when neither ``num_frames`` nor ``fps`` is given.
DEFAULT_NUM_FRAMES = 8
#: The cap of ``fps`` sampling unless ``max_frames`` is given (Qwen-VL's ``VIDEO_MAX_FRAMES``).
DEFAULT_MAX_FRAMES = 768
#: Seek to a key frame only when it lies more than this many frames ahead of the decoder: decoding a
#: few frames is cheaper than a seek and the decoder restart after it.
SEEK_MIN_SKIP = 4
#: The column of the videos given as their frames (one list of ``Image()`` per video, aligned with
#: ``videos``): decode_media decodes them into ``videos`` and leaves this column undecoded.
FRAMES_COLUMN = "video_frames"
#: The column of the sampled frames' times (seconds from each video's first frame), one list per video.
TIMESTAMPS_COLUMN = "video_timestamps"

TokenPerRepoId = dict[str, str | bool | None] | None


class VideoDecodeError(Exception):
    """A video PyAV cannot decode (``decode_media`` adds the record, column and path)."""


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of each video :func:`decode_video` returns: ``num_frames`` or ``fps`` (+ ``max_frames``).

    Build it with :meth:`from_options`, which checks the values and fills the defaults.
    """

    num_frames: int | None = DEFAULT_NUM_FRAMES
    fps: float | None = None
    max_frames: int | None = None

    @classmethod
    def from_options(
        cls, num_frames: int | None = None, fps: float | None = None, max_frames: int | None = None
    ) -> VideoSampling:
        """The sampling for ``decode_media(num_frames=, fps=, max_frames=)``; a :class:`UsageError` names a bad value."""
        rules = (
            "num_frames=N for N evenly spaced frames (LLaVA-NeXT), fps=F for one frame every 1/F s (Qwen-VL)"
        )
        if num_frames is not None and fps is not None:
            raise UsageError("decode_media takes num_frames= or fps=, not both", hint=f"pass one: {rules}")
        for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
            ):
                raise UsageError(f"{name} must be a positive integer, got {value!r}", hint=rules)
        if fps is None:
            if max_frames is not None:
                raise UsageError(
                    "max_frames= caps fps= sampling, but no fps= was given",
                    hint="with num_frames=N the count is already N; for a capped rate pass fps=F, max_frames=M",
                )
            return cls(num_frames=int(num_frames or DEFAULT_NUM_FRAMES))
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise UsageError(f"fps must be a positive number of frames per second, got {fps!r}", hint=rules)
        return cls(num_frames=None, fps=float(fps), max_frames=int(max_frames or DEFAULT_MAX_FRAMES))

    def select(self, ticks: Sequence[int], tick: Fraction) -> list[int]:
        """The sampled frame indices (increasing) of frames at ``ticks`` (presentation order, first 0)."""
        n = len(ticks)
        if self.fps is None:
            return _uniform(n, self.num_frames or DEFAULT_NUM_FRAMES)
        step = 1 / (Fraction(self.fps).limit_denominator(1_000_000) * tick)  # ticks between two samples
        picks: list[int] = []
        k = 0
        while n:
            if k * step > ticks[-1]:
                break
            # the frame on screen at that time: the last one at or before it (ticks are integers)
            i = bisect.bisect_right(ticks, k * step.numerator // step.denominator) - 1
            if not picks or picks[-1] != i:
                picks.append(i)
            k += 1
        cap = self.max_frames or DEFAULT_MAX_FRAMES
        if len(picks) > cap:
            picks = [picks[j] for j in _uniform(len(picks), cap)]
        return picks


def _uniform(n: int, count: int) -> list[int]:
    """``numpy.linspace(0, n - 1, count, dtype=int)``, or every index when ``n < count``."""
    if n <= count:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, count, dtype=int)]


@dataclass
class DecodedVideo:
    """The sampled frames of one video, and where they come from."""

    frames: np.ndarray  # (T, H, W, 3) uint8, RGB
    timestamps: list[float]  # seconds from the first frame, one per sampled frame
    indices: list[int]  # the sampled frames' positions among all frames
    total_frames: int  # n: every frame PyAV's full decoding yields
    decoded_frames: int = 0  # frames the decoder output to get them (skipped by seeks: not counted)
    seeks: int = 0  # seeks to a key frame


@dataclass
class _Frames:
    """The frames of a video in presentation order: their times, and how to find them."""

    ticks: list[int]  # presentation time of each frame in ``tick`` units, the first at 0
    tick: Fraction  # seconds per tick
    pts: list[int] | None = None  # each frame's pts, when frames can be identified by it
    keyframes: tuple[list[int], list[int]] = ([], [])  # key frames: frame indices, pts


class _Mismatch(Exception):
    """The decoder's frames do not follow the index: take the slow, certain path."""


Opener = Callable[[], Any]


def decode_video(source: bytes | str | io.RawIOBase, sampling: VideoSampling) -> DecodedVideo:
    """The frames ``sampling`` picks from a video (its bytes or a local path), decoded with PyAV.

    Raises :class:`VideoDecodeError` with the reason when PyAV cannot open or decode it.
    """
    import av

    def opener() -> Any:
        return av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)

    try:
        index = _index(opener)
        if index is not None:
            targets = sampling.select(index.ticks, index.tick)
            try:
                return _result(_decode_indexed(opener, index, targets), index, targets)
            except _Mismatch as why:
                logger.debug("decode_video: %s; decoding the whole video to count its frames", why)
        index = _decoded_index(opener)
        targets = sampling.select(index.ticks, index.tick)
        return _result(_decode_by_position(opener, targets), index, targets)
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise VideoDecodeError(f"{type(err).__name__}: {err}") from err


def video_columns(features: datasets.Features | None) -> dict[str, str]:
    """Columns holding decodable videos (a ``Video()`` or a list of them) -> the column of their times."""
    columns: dict[str, str] = {}
    for name, feature in (features or {}).items():
        inner = feature.feature if isinstance(feature, (datasets.List, datasets.LargeList)) else feature
        inner = inner[0] if isinstance(inner, list) else inner
        if isinstance(inner, datasets.Video) and inner.decode:
            columns[name] = TIMESTAMPS_COLUMN if name == "videos" else f"{name}_timestamps"
    return columns


def output_features(features: datasets.Features) -> datasets.Features:
    """The features of decoded rows: the input's, with each video column's timestamps column after it."""
    times = video_columns(features)
    out: dict[str, Any] = {}
    for name, feature in features.items():
        out[name] = feature
        if name == FRAMES_COLUMN and isinstance(feature, (datasets.List, datasets.LargeList)):
            out[name] = datasets.List(datasets.List(datasets.Image(decode=False)))  # decoded into videos
        if name in times:
            stamps = datasets.List(datasets.Value("float64"))
            out[times[name]] = stamps if isinstance(feature, datasets.Video) else datasets.List(stamps)
    return datasets.Features(out)


class StoredVideos:
    """Decodes one stored video (``{bytes, path}`` or a path) with PyAV; an error names the record."""

    def __init__(self, sampling: VideoSampling, token_per_repo_id: TokenPerRepoId = None) -> None:
        self.sampling = sampling
        self.token_per_repo_id = token_per_repo_id

    def decode(
        self, value: Any, *, rid: Any = None, column: str = "videos", position: int = 0
    ) -> DecodedVideo:
        path = value.get("path") if isinstance(value, Mapping) else value if isinstance(value, str) else None
        try:
            return decode_video(self._source(value, path), self.sampling)
        except (VideoDecodeError, OSError) as err:
            record = "a row" if rid is None else f"record {str(rid)!r}"
            raise MediaDecodeError(
                f"{record}: video {path!r} ({column}[{position}]) cannot be decoded with PyAV: {err}",
                id=None if rid is None else str(rid),
                path=path,
                hint="check the source file (llava-hf validate --deep decodes every video's first frames); "
                "drop the record, or replace the file and build again",
            ) from None

    def column_value(
        self, feature: Any, value: Any, *, rid: Any = None, column: str, frames: Sequence[Any] | None = None
    ) -> tuple[Any, Any]:
        """The frames of a video column's value (one video or a list of them) and their timestamps.

        ``frames``: the row's ``video_frames`` (one list of frames per video): a video given as its frames
        (a null in ``videos``) is decoded from them (:func:`~llava_hf.media.frames.decode_frames`), its
        timestamps None (the frames carry no times)."""
        if value is None:
            return None, None
        if isinstance(feature, datasets.Video):
            video = self.decode(value, rid=rid, column=column)
            return video.frames, video.timestamps
        out: list[Any] = []
        stamps: list[Any] = []
        for position, item in enumerate(value):
            if item is not None:
                video = self.decode(item, rid=rid, column=column, position=position)
                out.append(video.frames)
                stamps.append(video.timestamps)
            elif frames is not None and position < len(frames) and frames[position]:
                out.append(self.decode_frames(frames[position], rid=rid, position=position))
                stamps.append(None)
            else:
                out.append(None)
                stamps.append(None)
        return out, stamps

    def decode_frames(self, values: Sequence[Any], *, rid: Any = None, position: int = 0) -> np.ndarray:
        """A video given as its frames, sampled into a ``(T, H, W, 3)`` array; an error names the record."""
        try:
            return decode_frames(values, self.sampling, self.token_per_repo_id)[0]
        except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for a damaged image
            record = "a row" if rid is None else f"record {str(rid)!r}"
            raise MediaDecodeError(
                f"{record}: a frame of video_frames[{position}] cannot be decoded: {type(err).__name__}: {err}",
                id=None if rid is None else str(rid),
                hint="check the source frames (llava-hf validate --deep decodes every image); "
                "drop the record, or replace the file and build again",
            ) from None

    def _source(self, value: Any, path: str | None) -> bytes | str:
        data = value.get("bytes") if isinstance(value, Mapping) else None
        if data is not None:
            return bytes(data)
        if path is None:
            raise VideoDecodeError("the stored value has neither bytes nor a path")
        from datasets.utils.file_utils import is_local_path

        if is_local_path(path):
            return path
        # a remote path (hf://...), read as datasets' Image feature reads one: with the repo's token
        from datasets.download.download_config import DownloadConfig
        from datasets.utils.file_utils import xopen
        from datasets.utils.py_utils import string_to_dict

        source_url = path.split("::")[-1]
        pattern = (
            datasets.config.HUB_DATASETS_URL
            if source_url.startswith(datasets.config.HF_ENDPOINT)
            else datasets.config.HUB_DATASETS_HFFS_URL
        )
        fields = string_to_dict(source_url, pattern)
        token = (self.token_per_repo_id or {}).get(fields["repo_id"]) if fields is not None else None
        with xopen(path, "rb", download_config=DownloadConfig(token=token)) as f:
            return bytes(f.read())


def _result(out: _Output, index: _Frames, targets: list[int]) -> DecodedVideo:
    return DecodedVideo(
        frames=out.result(),
        timestamps=[float(index.ticks[i] * index.tick) for i in targets],
        indices=targets,
        total_frames=len(index.ticks),
        decoded_frames=out.decoded,
        seeks=out.seeks,
    )


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise VideoDecodeError("no video stream")
    return container.streams.video[0]


def _index(opener: Opener) -> _Frames | None:
    """The frames from the packets alone (no decoding); None when packets cannot identify frames."""
    pts: list[int] = []
    keys: list[int] = []  # pts of key frame packets: seeking to it lands on it (by dts: often one earlier)
    with opener() as container:
        stream = _video_stream(container)
        if stream.time_base is None:
            return None
        tick = Fraction(stream.time_base)
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # the flush packet at the end; frames the decoder drops (edit lists)
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
    if not pts:
        raise VideoDecodeError("no video frames")
    pts.sort()
    if any(a == b for a, b in itertools.pairwise(pts)):
        return None  # repeated timestamps: frames cannot be told apart
    position = {p: i for i, p in enumerate(pts)}
    keys.sort()
    first = pts[0]
    return _Frames(
        ticks=[p - first for p in pts], tick=tick, pts=pts, keyframes=([position[p] for p in keys], keys)
    )


def _decoded(container: Any, stream: Any) -> Iterator[Any]:
    """Frames in the order PyAV's decoding outputs them, from where the container is."""
    for packet in container.demux(stream):
        yield from packet.decode()


def _decoded_index(opener: Opener) -> _Frames:
    """The frames as PyAV's full decoding outputs them (decodes everything, converts nothing)."""
    pts: list[int | None] = []
    with opener() as container:
        stream = _video_stream(container)
        for frame in _decoded(container, stream):
            pts.append(frame.pts)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        time_base = stream.time_base
    if not pts:
        raise VideoDecodeError("no frame could be decoded")
    known = [p for p in pts if p is not None]
    if time_base is not None and len(known) == len(pts) and all(a < b for a, b in itertools.pairwise(known)):
        return _Frames(ticks=[p - known[0] for p in known], tick=Fraction(time_base))
    if not rate:
        raise VideoDecodeError("its frames have no timestamps and the stream no frame rate")
    return _Frames(ticks=list(range(len(pts))), tick=1 / Fraction(rate))


class _Output:
    """The sampled frames as one (T, H, W, 3) array, allocated at the first frame's size."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.array: np.ndarray | None = None
        self.decoded = 0  # frames the decoder output
        self.seeks = 0

    def put(self, k: int, frame: Any) -> None:
        if self.array is None:
            self.array = np.empty((self.count, frame.height, frame.width, 3), dtype=np.uint8)
        _, height, width, _ = self.array.shape
        if (frame.height, frame.width) == (height, width):
            self.array[k] = frame.to_ndarray(format="rgb24")
        else:  # the stream changed size mid-way: scaled to its first sampled frame's size
            self.array[k] = frame.to_ndarray(format="rgb24", width=width, height=height)

    def result(self) -> np.ndarray:
        if self.array is None:
            return np.empty((0, 0, 0, 3), dtype=np.uint8)
        return self.array


def _decode_indexed(opener: Opener, index: _Frames, targets: list[int]) -> _Output:
    """The target frames, found by their timestamps, seeking to key frames when that skips enough."""
    assert index.pts is not None
    position = {p: i for i, p in enumerate(index.pts)}
    key_frames, key_seek = index.keyframes
    out = _Output(len(targets))
    with opener() as container:
        stream = _video_stream(container)
        frames = _decoded(container, stream)
        expected: int | None = 0  # the next frame the decoder must output; None just after a seek
        anchor = 0  # the key frame decoding resumed at
        for k, target in enumerate(targets):
            j = bisect.bisect_right(key_frames, target) - 1
            ahead = anchor if expected is None else expected
            if j >= 0 and key_frames[j] > ahead + SEEK_MIN_SKIP:
                container.seek(key_seek[j], stream=stream, backward=True, any_frame=False)
                stream.codec_context.flush_buffers()
                frames = _decoded(container, stream)
                expected, anchor = None, key_frames[j]
                out.seeks += 1
            for frame in frames:
                out.decoded += 1
                i = position.get(frame.pts) if frame.pts is not None else None
                if i is None:
                    raise _Mismatch(f"a decoded frame's pts {frame.pts} is not in the index")
                if expected is None:
                    if i < anchor:
                        continue  # frames before the key frame (leading frames of an open GOP)
                    if i != anchor:
                        raise _Mismatch(f"after seeking to frame {anchor}, decoding resumed at frame {i}")
                elif i != expected:
                    raise _Mismatch(f"the decoder output frame {i} where the index has frame {expected}")
                expected = i + 1
                if i == target:
                    out.put(k, frame)
                    break
            else:
                raise _Mismatch(f"decoding ended before frame {target}")
    return out


def _decode_by_position(opener: Opener, targets: list[int]) -> _Output:
    """The target frames by their position in PyAV's output, decoding from the start."""
    out = _Output(len(targets))
    if not targets:
        return out
    k = 0
    with opener() as container:
        for i, frame in enumerate(_decoded(container, _video_stream(container))):
            out.decoded += 1
            if i == targets[k]:
                out.put(k, frame)
                k += 1
                if k == len(targets):
                    break
    if k != len(targets):  # pragma: no cover - the same file decoded twice gave fewer frames
        raise VideoDecodeError(f"decoding gave {k} of the {len(targets)} sampled frames")
    return out
