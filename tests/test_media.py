"""Media: paths stay inside their roots, images open with Pillow, videos have a video stream (av)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from llava_hf.media.files import (
    MediaRoots,
    _is_under,
    check_image,
    check_video,
    probe_video,
    relative_media_path,
    resolve_media,
)
from llava_hf.problems import Problem
from tests.fixtures.media import REAL, gif_bytes, make_jpeg, make_video


def _resolve(
    path: str, roots: MediaRoots, file: str = "/data/train.json"
) -> tuple[str | None, Problem | None]:
    return resolve_media(path, "image", roots, file=file, index=3, id="r3", field="images[0]")


# ------------------------------------------------------------------------------------------- resolution


def test_relative_paths_resolve_inside_the_root(llava_dir: Path) -> None:
    roots = MediaRoots(image_folder=str(llava_dir / "images"), video_folder=str(llava_dir / "videos"))
    full, problem = _resolve("coco/train2017/1.jpg", roots)
    assert problem is None and full == str((llava_dir / "images/coco/train2017/1.jpg").resolve())
    full, problem = _resolve("./coco/../coco/train2017/2.jpg", roots)  # `..` that stays inside is fine
    assert problem is None and full == str((llava_dir / "images/coco/train2017/2.jpg").resolve())
    full, problem = resolve_media("2.avi", "video", roots, file="t.json", index=0, id="v", field="videos[0]")
    assert problem is None and full == str((llava_dir / "videos/2.avi").resolve())


def test_default_root_is_the_json_files_folder(llava_dir: Path) -> None:
    json_file = llava_dir / "images" / "train.json"
    full, problem = _resolve("coco/train2017/3.jpg", MediaRoots(), file=str(json_file))
    assert problem is None and full == str((llava_dir / "images/coco/train2017/3.jpg").resolve())


def test_missing_media(llava_dir: Path) -> None:
    roots = MediaRoots(image_folder=str(llava_dir / "images"))
    full, problem = _resolve("coco/train2017/404.jpg", roots)
    assert full is None and problem is not None
    assert (problem.code, problem.severity, problem.index, problem.id, problem.field) == (
        "missing_media",
        "error",
        3,
        "r3",
        "images[0]",
    )
    message = problem.message
    assert message.startswith("/data/train.json, record 3 (id 'r3'), field 'images[0]'")
    assert "coco/train2017/404.jpg" in message
    # the library names its Python argument; `llava-hf validate` shows --image-folder (test_cli_validate)
    assert f"check image_folder= (now {str(llava_dir / 'images')!r})" in message and "--" not in message
    _, problem = _resolve("coco", roots)  # a folder is not a media file
    assert problem is not None and problem.code == "missing_media" and "not a regular file" in problem.message
    _, problem = _resolve("a\x00.jpg", roots)
    assert problem is not None and problem.code == "missing_media" and "NUL" in problem.message


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink_file", "symlink_dir", "home", "url"])
def test_media_outside_root(llava_dir: Path, tmp_path_factory: pytest.TempPathFactory, how: str) -> None:
    outside = tmp_path_factory.mktemp("outside")
    secret = make_jpeg(outside / "secret.jpg", size=(32, 32))
    images = llava_dir / "images"
    path = {
        "absolute": str(secret),
        "dotdot": os.path.relpath(secret, images),
        "symlink_file": "coco/link.jpg",
        "symlink_dir": "escape/secret.jpg",
        "home": "~/.ssh/id_rsa.jpg",
        "url": "s3://bucket/x.jpg",  # an http(s) URL is remote_media (tests/test_urls.py)
    }[how]
    (images / "coco" / "link.jpg").symlink_to(secret)
    (images / "escape").symlink_to(outside, target_is_directory=True)
    assert ".." in os.path.relpath(secret, images)
    full, problem = _resolve(path, MediaRoots(image_folder=str(images)))
    assert full is None and problem is not None
    assert problem.code == "media_outside_root" and problem.severity == "error"
    message = problem.message
    assert (
        "record 3 (id 'r3')" in message
        and "allow_outside_root=True" in message
        and f"image_folder={str(images)!r}" in message
    )
    # the same paths are accepted when the user trusts the JSON file
    full, problem = _resolve(path, MediaRoots(image_folder=str(images), allow_outside_root=True))
    if how in ("home", "url"):
        assert problem is None or problem.code == "missing_media"
    else:
        assert problem is None and full is not None
        assert os.path.realpath(full) == str(secret.resolve())
        assert check_image(full) is None


def test_symlink_inside_the_root_is_fine(llava_dir: Path) -> None:
    images = llava_dir / "images"
    (images / "alias.jpg").symlink_to(images / "coco" / "train2017" / "1.jpg")
    full, problem = _resolve("alias.jpg", MediaRoots(image_folder=str(images)))
    assert problem is None and full == str((images / "coco/train2017/1.jpg").resolve())


def test_video_paths_use_the_video_root(llava_dir: Path) -> None:
    roots = MediaRoots(image_folder=str(llava_dir / "images"), video_folder=str(llava_dir / "videos"))
    _, problem = resolve_media(
        "../images/coco/train2017/1.jpg", "video", roots, file="t.json", index=0, id="v", field="videos[0]"
    )
    assert (
        problem is not None
        and problem.code == "media_outside_root"
        and f"video_folder={str(llava_dir / 'videos')!r}" in problem.message
    )


# ------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("name", ["1.jpg", "2.jpg", "3.jpg"])
def test_real_jpegs_open(name: str) -> None:
    assert check_image(str(REAL / name)) is None
    assert check_image(str(REAL / name), deep=True) is None
    assert check_image("ignored", data=(REAL / name).read_bytes(), deep=True) is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_generated_images_at_realistic_sizes_open(tmp_path: Path, fmt: str) -> None:
    src = make_jpeg(tmp_path / "src.jpg", size=(1024, 768), seed=3)
    path = tmp_path / f"img.{fmt.lower()}"
    with Image.open(src) as im:
        im.save(path, format=fmt)
    assert check_image(str(path)) is None
    assert check_image(str(path), deep=True) is None


def test_a_gif_named_jpg_is_a_readable_image(tmp_path: Path) -> None:
    path = tmp_path / "cover.jpg"
    path.write_bytes(gif_bytes())
    assert check_image(str(path)) is None and check_image(str(path), deep=True) is None


def test_a_text_file_named_jpg_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "fake.jpg"
    path.write_text("<html>404 Not Found</html>")
    assert check_image(str(path)) == "not an image Pillow can identify"
    assert check_image(str(path), deep=True) == "not an image Pillow can identify"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert check_image(str(empty)) is not None


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95])
def test_truncated_jpeg_is_caught_only_by_deep(tmp_path: Path, fraction: float) -> None:
    for data in (
        (REAL / "2.jpg").read_bytes(),
        make_jpeg(tmp_path / "big.jpg", size=(1280, 960)).read_bytes(),
    ):
        path = tmp_path / "cut.jpg"
        path.write_bytes(data[: int(len(data) * fraction)])
        assert check_image(str(path)) is None  # the cheap check reads headers only
        reason = check_image(str(path), deep=True)
        assert reason is not None and "truncated" in reason


def test_corrupt_png_is_caught_by_the_cheap_check(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    assert check_image(str(path)) is not None


# ------------------------------------------------------------------------------------------------ videos


@pytest.mark.parametrize("name", ["1.mp4", "2.avi", "4.mp4"])
def test_real_videos_open(name: str) -> None:
    assert check_video(str(REAL / name)) is None
    assert check_video(str(REAL / name), deep=True) is None


@pytest.mark.parametrize("name", ["gen.mp4", "gen.avi"])
def test_generated_videos_open_and_probe(tmp_path: Path, name: str) -> None:
    path = make_video(tmp_path / name, frames=24, size=(320, 240), fps=12)
    assert check_video(str(path)) is None and check_video(str(path), deep=True) is None
    info = probe_video(str(path))
    assert (info.width, info.height, info.fps, info.num_frames) == (320, 240, 12.0, 24)
    assert info.duration == pytest.approx(24 / 12, abs=0.1)
    assert info.codec == ("h264" if name.endswith(".mp4") else "mpeg4")
    assert probe_video("ignored", data=path.read_bytes()) == info
    assert set(info.to_dict()) == {"duration", "fps", "num_frames", "width", "height", "codec"}


def test_probe_real_videos_match_their_streams() -> None:
    for name in ("1.mp4", "2.avi", "4.mp4"):
        info = probe_video(str(REAL / name))
        with av.open(str(REAL / name)) as container:
            stream = container.streams.video[0]
            assert (info.width, info.height) == (stream.codec_context.width, stream.codec_context.height)
            assert info.fps == pytest.approx(float(stream.average_rate), rel=1e-5)
            assert info.codec == "h264"
        assert info.duration is not None and info.duration > 1
        assert info.num_frames is not None and info.fps is not None
        assert info.num_frames == pytest.approx(info.duration * info.fps, rel=0.05)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_a_still_image_is_not_a_video_whatever_its_name(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "clip.mp4"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(path, format=fmt)
    for deep in (False, True):
        reason = check_video(str(path), deep=deep)
        assert reason is not None and "still image" in reason
    shutil.copy(REAL / "1.jpg", path)
    assert "still image" in str(check_video(str(path)))


def test_an_animated_gif_is_a_video(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), (i * 40, 0, 0)) for i in range(5)]
    path = tmp_path / "tgif.gif"
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert check_video(str(path)) is None and check_video(str(path), deep=True) is None


def test_not_videos(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert check_video(str(text)) is not None
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert check_video(str(empty)) is not None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((REAL / "1.mp4").read_bytes()[:50_000])  # the moov atom is at the end: gone
    assert check_video(str(cut)) is not None
    audio = tmp_path / "audio.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert check_video(str(audio)) == "no video stream"


def test_a_video_checked_from_its_bytes_is_named_as_from_its_path(tmp_path: Path) -> None:
    # build checks the bytes it read (av says "input: '<none>'" for them); validate opens the path
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((REAL / "1.mp4").read_bytes()[:50_000])
    for path in (text, cut):
        from_path = check_video(str(path))
        from_bytes = check_video(str(path), data=path.read_bytes())
        assert from_path is not None and repr(str(path)) in from_path, from_path
        assert from_bytes == from_path


def test_default_root_of_a_file_url_is_its_folder(llava_dir: Path) -> None:
    url = (llava_dir / "images" / "train.json").as_uri()
    full, problem = _resolve("coco/train2017/1.jpg", MediaRoots(), file=url)
    assert problem is None and full == str((llava_dir / "images/coco/train2017/1.jpg").resolve())


@pytest.mark.parametrize("name", ["frame.jpg", "frame.png", "frame.gif"])
def test_an_image_named_as_an_image_is_not_a_video_either(tmp_path: Path, name: str) -> None:
    """By name ffmpeg picks its image2 demuxer (or gif): still not a video."""
    path = tmp_path / name
    Image.new("RGB", (64, 48), (10, 20, 30)).save(path)
    reason = check_video(str(path))
    assert reason is not None and "still image" in reason


@pytest.mark.parametrize(
    ("path", "code"), [("..", "media_outside_root"), ("coco/..", "missing_media"), (".", "missing_media")]
)
def test_dot_paths(llava_dir: Path, path: str, code: str) -> None:
    _, problem = _resolve(path, MediaRoots(image_folder=str(llava_dir / "images")))
    assert problem is not None and problem.code == code


# ---------------------------------------------------------------------------- fast path helpers


_PARTS = st.lists(
    st.sampled_from(["a", "ab", "a.b", "..", ".", "", "b", "a\\b", "é"]), min_size=0, max_size=5
)


@given(root=_PARTS, path=_PARTS)
def test_is_under_agrees_with_commonpath(root: list[str], path: list[str]) -> None:
    # normalized absolute paths, as realpath gives them (POSIX normpath keeps a leading "//")
    real_root = "/" + os.path.normpath("/" + "/".join(root)).lstrip("/")
    full = "/" + os.path.normpath("/" + "/".join(path)).lstrip("/")
    expected = os.path.commonpath([full, real_root]) == real_root
    assert _is_under(full, real_root) == expected


@given(path=st.lists(st.sampled_from(["a", "b.jpg", ".", "..", "", "x y", "\\"]), min_size=1, max_size=6))
def test_relative_media_path_normalizes_as_pathlib(path: list[str]) -> None:
    joined = "/".join(path)
    if joined and not os.path.isabs(joined):
        assert relative_media_path(joined) == Path(joined).as_posix()


def test_a_png_whose_iend_comes_before_idat_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    import struct
    import zlib

    sink = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(sink, format="PNG")
    png = sink.getvalue()
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    damaged = png[:33] + iend + png[33:]  # Pillow's verify raises IndexError on it
    path = tmp_path / "x.png"
    path.write_bytes(damaged)
    for reason in (check_image(str(path)), check_image(str(path), data=damaged)):
        assert reason is not None and "IndexError" in reason


@pytest.fixture(scope="module")
def link_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{a,a/b}`` folders, ``root/in`` -> ``a`` (inside), ``root/out`` -> a folder outside."""
    base = tmp_path_factory.mktemp("links")
    root, outside = base / "root", base / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (root / "in").symlink_to(root / "a", target_is_directory=True)
    (root / "out").symlink_to(outside, target_is_directory=True)
    return root


_LINK_PARTS = st.lists(
    st.sampled_from(["a", "b", "in", "out", "..", ".", "", "x.jpg"]), min_size=1, max_size=5
)


@given(parts=_LINK_PARTS)
def test_resolution_with_cached_folders_is_realpath(link_tree: Path, parts: list[str]) -> None:
    # without following the file itself (check_file=False, as the builder resolves), the full path is
    # the realpath of its folder joined with its name; and inside the root exactly when realpath is
    path = "/".join(parts)
    if os.path.isabs(path) or not path:
        return
    full, problem = resolve_media(
        path, "image", MediaRoots(image_folder=str(link_tree)), file="t.json", index=0, id="0",
        field="images[0]", check_file=False,
    )  # fmt: skip
    joined = os.path.join(str(link_tree), path)
    head, name = os.path.split(joined)
    expected = (
        os.path.realpath(joined) if name in ("", ".", "..") else os.path.join(os.path.realpath(head), name)
    )
    inside = os.path.commonpath([expected, os.path.realpath(link_tree)]) == os.path.realpath(link_tree)
    if inside:
        assert problem is None and full == expected
    else:
        assert full is None and problem is not None and problem.code == "media_outside_root"


@pytest.mark.parametrize("check_file", [True, False])
def test_a_folder_replaced_by_a_symlink_between_runs_is_judged_again(
    tmp_path: Path, check_file: bool
) -> None:
    # a long-lived process (a notebook, a service) builds twice; in between, a folder under the root
    # became a symlink to a folder outside it: the second run must not trust what the first resolved
    images, outside = tmp_path / "images", tmp_path / "outside"
    make_jpeg(images / "sub" / "x.jpg")
    make_jpeg(outside / "x.jpg")

    def resolve() -> tuple[str | None, Problem | None]:
        return resolve_media(
            "sub/x.jpg", "image", MediaRoots(image_folder=str(images)), file="t.json", index=0, id="0",
            field="images[0]", check_file=check_file,
        )  # fmt: skip

    full, problem = resolve()
    assert problem is None and full == os.path.join(os.path.realpath(images), "sub", "x.jpg")
    shutil.rmtree(images / "sub")
    (images / "sub").symlink_to(outside, target_is_directory=True)
    full, problem = resolve()
    assert full is None and problem is not None and problem.code == "media_outside_root"
