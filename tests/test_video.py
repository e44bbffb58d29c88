"""Video decoding with PyAV (llava_hf/_video.py): the sampling rules, and frames equal to PyAV's own
full decode of the same indices on real MP4/AVI files and on generated videos with small GOPs (where
sparse sampling seeks)."""

from __future__ import annotations

import io
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import llava_hf.media.video as video_module
from llava_hf.errors import UsageError
from llava_hf.media.video import DEFAULT_MAX_FRAMES, VideoSampling, decode_video

REAL = Path(__file__).parent / "data" / "real"
REAL_VIDEOS = ["1.mp4", "2.avi", "3.mp4", "4.mp4"]


def full_decode(data: bytes) -> tuple[list[np.ndarray], list[float]]:
    """Every frame as PyAV's own decoding yields it (RGB), and its time from the first frame."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
        rate = container.streams.video[0].average_rate
    rgb = [f.to_ndarray(format="rgb24") for f in frames]
    if frames[0].pts is None:  # a raw stream: frames at the nominal rate
        return rgb, [float(i / rate) for i in range(len(frames))]
    first = frames[0].pts * frames[0].time_base
    return rgb, [float(f.pts * f.time_base - first) for f in frames]


def key_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size and p.is_keyframe)


def make_video(
    path: Path, codec: str, *, gop: int, frames: int = 60, options: dict[str, str] | None = None
) -> bytes:
    """A small video whose frames all differ (moving gradients plus noise), written with av."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = 96, 64
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if options:
            stream.codec_context.options = options
        y = np.linspace(0, 255, 64)[:, None]
        x = np.linspace(0, 255, 96)[None, :]
        for i in range(frames):
            planes = [(x + 7 * i) % 256 + 0 * y, (y + 3 * i) % 256 + 0 * x, ((x + y) / 2 + 11 * i) % 256]
            arr = np.stack(planes, -1) + rng.integers(-20, 20, (64, 96, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(arr, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


GENERATED = {
    # H.264 with B-frames and a key frame every 10 frames: pts != dts, seeking by dts would land a GOP early
    "gop.mp4": ("libx264", 10, {"bf": "3", "keyint_min": "10", "scenecut": "0"}),
    # open GOPs: the B-frames before each key frame (in presentation order) reference the previous GOP
    "open_gop.mp4": (
        "libx264",
        10,
        {"x264-params": "open-gop=1:keyint=10:min-keyint=10:scenecut=0:bframes=3"},
    ),
    # Matroska: stream.frames is 0, the count must come from the packets
    "gop.mkv": ("libx264", 10, {"keyint_min": "10", "scenecut": "0"}),
    "gop.webm": ("libvpx", 8, None),
    # MPEG-4 part 2 in AVI with B-frames
    "gop.avi": ("mpeg4", 8, {"bf": "2"}),
    # a raw H.264 stream: packets carry no timestamps, so the index cannot be used
    "raw.h264": ("libx264", 10, {"keyint_min": "10", "scenecut": "0"}),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("videos")
    return {
        name: make_video(root / name, codec, gop=gop, options=options)
        for name, (codec, gop, options) in GENERATED.items()
    }


def _sources(generated: dict[str, bytes]) -> dict[str, bytes]:
    return {**{name: (REAL / name).read_bytes() for name in REAL_VIDEOS}, **generated}


# --- the sampling rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 8, 9, 243, 1000])
@pytest.mark.parametrize("count", [1, 2, 8, 16])
def test_num_frames_is_llava_next_linspace(n: int, count: int) -> None:
    picks = VideoSampling.from_options(num_frames=count).select(list(range(n)), Fraction(1, 25))
    if n >= count:
        assert picks == np.linspace(0, n - 1, count, dtype=int).tolist()
    else:
        assert picks == list(range(n))


def test_default_is_eight_frames() -> None:
    assert VideoSampling.from_options() == VideoSampling.from_options(num_frames=8)
    assert VideoSampling.from_options().select(list(range(100)), Fraction(1, 25)) == [
        0,
        14,
        28,
        42,
        56,
        70,
        84,
        99,
    ]


def _on_screen(ticks: list[int], tick: Fraction, fps: float) -> list[int]:
    """The frame shown at 0, 1/fps, 2/fps, ... seconds (each once), by brute force over every instant."""
    seconds = [t * tick for t in ticks]
    period = 1 / Fraction(fps).limit_denominator(1_000_000)
    picks: list[int] = []
    k = 0
    while k * period <= seconds[-1]:
        shown = max(i for i, s in enumerate(seconds) if s <= k * period)
        if shown not in picks:
            picks.append(shown)
        k += 1
    return picks


@pytest.mark.parametrize("fps", [0.5, 1, 2, 2.5, 29.97, 100])
def test_fps_picks_the_frame_on_screen_every_period(fps: float) -> None:
    # the real AVI's timestamps (29.92 fps, 1/359 s ticks of 12), and a variable frame rate
    with av.open(str(REAL / "2.avi")) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size)
        tick = Fraction(stream.time_base)
    avi = [p - pts[0] for p in pts]
    vfr = [0, 1, 2, 10, 11, 40, 41, 42, 43, 100, 180, 181, 250]
    for ticks, unit in ((avi, tick), (vfr, Fraction(1, 50))):
        picks = VideoSampling.from_options(fps=fps).select(ticks, unit)
        assert picks == _on_screen(ticks, unit, fps)


def test_fps_is_capped_by_max_frames_evenly() -> None:
    ticks = list(range(0, 3000, 2))  # 60 s at 25 fps (tick 1/50 s)
    every = VideoSampling.from_options(fps=5).select(ticks, Fraction(1, 50))
    assert len(every) == 300
    capped = VideoSampling.from_options(fps=5, max_frames=32).select(ticks, Fraction(1, 50))
    assert capped == [every[i] for i in np.linspace(0, len(every) - 1, 32, dtype=int)]
    assert VideoSampling.from_options(fps=5).max_frames == DEFAULT_MAX_FRAMES


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_frames": 8, "fps": 1.0}, "not both"),
        ({"num_frames": 0}, "num_frames must be a positive integer"),
        ({"num_frames": 2.5}, "num_frames must be a positive integer"),
        ({"num_frames": True}, "num_frames must be a positive integer"),
        ({"fps": 0}, "fps must be a positive number"),
        ({"fps": float("nan")}, "fps must be a positive number"),
        ({"fps": "2"}, "fps must be a positive number"),
        ({"fps": 1, "max_frames": -1}, "max_frames must be a positive integer"),
        ({"max_frames": 16}, "caps fps= sampling"),
    ],
)
def test_bad_options_name_the_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        VideoSampling.from_options(**options)  # type: ignore[arg-type]
    assert err.value.hint


# --- exact frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_VIDEOS)
def test_real_files_frames_equal_pyav_full_decode(name: str) -> None:
    data = (REAL / name).read_bytes()
    frames, times = full_decode(data)
    for sampling in (
        VideoSampling.from_options(),
        VideoSampling.from_options(num_frames=3),
        VideoSampling.from_options(num_frames=1000),
        VideoSampling.from_options(fps=1),
        VideoSampling.from_options(fps=2, max_frames=5),
    ):
        got = decode_video(data, sampling)
        assert got.total_frames == len(frames)
        assert got.indices == sampling.select([round(t * 10**9) for t in times], Fraction(1, 10**9))
        assert got.frames.dtype == np.uint8
        assert got.frames.shape == (len(got.indices), *frames[0].shape)
        for k, i in enumerate(got.indices):
            assert np.array_equal(got.frames[k], frames[i]), (name, sampling, i)
        assert got.timestamps == pytest.approx([times[i] for i in got.indices], abs=1e-9)


def test_the_real_avi_has_key_frames_to_seek_to_and_stream_frames_is_not_trusted(
    generated: dict[str, bytes],
) -> None:
    """Preconditions of the next tests: several key frames, and containers that give no frame count."""
    assert key_frames((REAL / "2.avi").read_bytes()) >= 4
    assert key_frames((REAL / "3.mp4").read_bytes()) >= 2
    for name in ("gop.mkv", "gop.webm"):
        with av.open(io.BytesIO(generated[name])) as container:
            assert container.streams.video[0].frames == 0
    with av.open(io.BytesIO(generated["raw.h264"])) as container:
        stream = container.streams.video[0]
        assert any(p.pts is None for p in container.demux(stream) if p.size)


@pytest.mark.parametrize("min_skip", [0, video_module.SEEK_MIN_SKIP])
def test_seeking_never_returns_a_different_frame(
    generated: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, min_skip: int
) -> None:
    """Every count of frames, on files with many key frames: equal to the full decode, and seeks happen."""
    monkeypatch.setattr(video_module, "SEEK_MIN_SKIP", min_skip)
    for name, data in _sources(generated).items():
        frames, _ = full_decode(data)
        seeks = 0
        for count in [*range(1, 25), 40]:
            got = decode_video(data, VideoSampling.from_options(num_frames=count))
            assert got.total_frames == len(frames), name
            assert got.indices == np.linspace(0, len(frames) - 1, count, dtype=int).tolist()
            for k, i in enumerate(got.indices):
                assert np.array_equal(got.frames[k], frames[i]), (name, count, i)
            seeks += got.seeks
        if key_frames(data) > 2 and name != "raw.h264":
            assert seeks > 0, name  # sparse sampling did seek: the comparison above covered it


def test_sparse_sampling_decodes_fewer_frames(generated: dict[str, bytes]) -> None:
    got = decode_video((REAL / "2.avi").read_bytes(), VideoSampling.from_options(num_frames=8))
    assert got.seeks > 0 and got.decoded_frames < got.total_frames
    got = decode_video(generated["gop.mp4"], VideoSampling.from_options(num_frames=4))
    assert got.seeks > 0 and got.decoded_frames < got.total_frames


def test_memory_holds_only_the_sampled_frames() -> None:
    """1.mp4 decoded whole to RGB is 243 frames of 691 kB (168 MB): only the 8 sampled ones are held."""
    data = (REAL / "1.mp4").read_bytes()
    frame_bytes = 640 * 360 * 3
    tracemalloc.start()
    try:
        got = decode_video(data, VideoSampling.from_options(num_frames=8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.frames.nbytes == 8 * frame_bytes
    assert peak < 12 * frame_bytes, peak  # the output, one converted frame, the index and the file's bytes


@pytest.mark.parametrize("data", [b"not a video at all", b""])
def test_undecodable_bytes_raise_video_decode_error(data: bytes) -> None:
    with pytest.raises(video_module.VideoDecodeError):
        decode_video(data, VideoSampling.from_options())


def test_a_still_image_has_no_video_to_sample() -> None:
    """A JPEG opens in ffmpeg as a one-frame video: it decodes to that one frame, as PyAV's decode does."""
    data = (REAL / "1.jpg").read_bytes()
    frames, _ = full_decode(data)
    got = decode_video(data, VideoSampling.from_options())
    assert got.total_frames == len(frames) == 1
    assert np.array_equal(got.frames[0], frames[0])
