"""Inputs, media folders and output as fsspec URLs (``file://``, ``http://`` on 127.0.0.1), and a record's
own http(s) media (``--allow-remote-media``): the same output as the local build, nothing published by
a failed build, a folder llava-hf did not make never replaced, limits and timeouts as problems."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import datasets
import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from llava_hf import build_folder
from llava_hf.errors import MissingDependencyError, RecordError, UsageError
from llava_hf.export import export_llava
from llava_hf.media.files import MediaRoots
from llava_hf.media.remote import fetch_url, join_under, redact_url
from llava_hf.media.sizes import MediaSizes
from llava_hf.utils.output import MARK
from llava_hf.utils.publish import TMP_INFIX
from llava_hf.validate import Validator
from tests.fixtures.build_corpus import make_corpus, turns, write_records
from tests.fixtures.http_server import HttpFolder
from tests.fixtures.media import make_jpeg

SAME: dict[str, Any] = {"records_per_shard": 3, "max_shard_size": "300KB"}  # several shards, cut by size too


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same_build(local: Path, published: Path) -> None:
    """Byte-identical data, manifest and preview; the card differs only in the path it loads from."""
    a, b = _files(local), _files(published)
    assert sorted(a) == sorted(b)
    for name in a:
        if name != "README.md":
            assert a[name] == b[name], name
    assert b["README.md"].decode().count('load_dataset("file://') == 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    corpus = make_corpus(tmp_path_factory.mktemp("urls_corpus"))
    local = tmp_path_factory.mktemp("local") / "out"
    build_folder(
        str(corpus["json"]),
        local,
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        **SAME,
    )
    corpus["local"] = local
    return corpus


def test_a_build_from_and_to_file_urls_is_the_local_build(corpus: dict[str, Any], tmp_path: Path) -> None:
    # file:// is never mapped to a local path: the media are read through fsspec's file system
    out = tmp_path / "out"
    result = build_folder(
        corpus["json"].as_uri(),
        out.as_uri(),
        image_folder=corpus["images"].as_uri(),
        video_folder=corpus["videos"].as_uri(),
        **SAME,
    )
    assert result.output_dir == out.as_uri()
    assert result.num_rows == {"train": 12}
    _assert_same_build(corpus["local"], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary prefix left
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.num_rows == 12
    export_llava(str(out), tmp_path / "exported")
    export_llava(str(corpus["local"]), tmp_path / "exported_local")
    assert _files(tmp_path / "exported") == _files(tmp_path / "exported_local")


def test_json_read_through_fsspec_file_objects_in_worker_processes(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """``local://`` is fsspec's local file system under a URL that datasets keeps as one (it maps
    ``file://`` to a plain path): the JSON is read and its shards' byte ranges re-read (seek) through
    fsspec file objects in two processes, the media and the output are URLs too."""
    out = tmp_path / "out"
    build_folder(
        f"local://{corpus['json']}",
        f"local://{out}",
        image_folder=f"local://{corpus['images']}",
        video_folder=f"local://{corpus['videos']}",
        num_proc=2,
        **SAME,
    )
    a, b = _files(corpus["local"]), _files(out)
    assert sorted(a) == sorted(b) and all(a[name] == b[name] for name in a if name != "README.md")


def test_media_folders_served_over_http_give_the_local_build(
    corpus: dict[str, Any], http_folder: HttpFolder, tmp_path: Path
) -> None:
    shutil.copytree(corpus["images"], http_folder.root / "images")
    shutil.copytree(corpus["videos"], http_folder.root / "videos")
    out = tmp_path / "out"
    build_folder(
        corpus["json"].as_uri(),
        out.as_uri(),
        image_folder=f"{http_folder.url}/images",
        video_folder=f"{http_folder.url}/videos/",
        **SAME,
    )
    _assert_same_build(corpus["local"], out)


def test_a_path_under_a_url_root_is_judged_as_under_a_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    make_jpeg(images / "ok.jpg", size=(32, 24))
    make_jpeg(tmp_path / "secret.jpg", size=(32, 24))
    records = [
        {"id": name, "image": name, "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))}
        for name in ("ok.jpg", "missing.jpg", "../secret.jpg", "sub/../ok.jpg")
    ]
    path = write_records(tmp_path / "data.json", records)
    roots = MediaRoots(images.as_uri())
    found = {
        c.record.id if c.record else "": c.first_error
        for c in Validator(roots=roots).iter_checked([str(path)])
    }
    assert found["ok.jpg"] is None and found["sub/../ok.jpg"] is None
    assert found["missing.jpg"] is not None and found["missing.jpg"].code == "missing_media"
    assert found["../secret.jpg"] is not None and found["../secret.jpg"].code == "media_outside_root"
    result = build_folder(str(path), tmp_path / "out", image_folder=images.as_uri(), on_error="skip")
    assert result.rejected == {"missing_media": 1, "media_outside_root": 1}
    assert join_under("s3://b/images", "/etc/passwd") is None
    assert join_under("https://h/images/", "a b#1.jpg") == "https://h/images/a%20b%231.jpg"


def test_an_interrupted_url_build_leaves_nothing_at_out(corpus: dict[str, Any], tmp_path: Path) -> None:
    bad = write_records(
        tmp_path / "bad.json",
        [{"id": "a", "conversations": turns(("human", "q"), ("gpt", "a"))}, {"id": "b", "image": "no.jpg"}],
    )
    out = tmp_path / "out"
    with pytest.raises(RecordError, match=r"bad\.json, record 1"):
        build_folder(bad.as_uri(), out.as_uri(), on_error="raise")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]
    # a previous build stays as it was
    folders: dict[str, Any] = {"image_folder": str(corpus["images"]), "video_folder": str(corpus["videos"])}
    build_folder(corpus["json"].as_uri(), out.as_uri(), **folders, **SAME)
    before = _files(out)
    with pytest.raises(RecordError):
        build_folder(bad.as_uri(), out.as_uri(), on_error="raise")
    assert _files(out) == before
    assert not list(tmp_path.glob(f"out{TMP_INFIX}*"))


def test_a_foreign_url_output_is_refused_and_a_previous_build_replaced(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a llava-hf build"):
        build_folder(corpus["json"].as_uri(), out.as_uri(), image_folder=str(corpus["images"]))
    assert _files(out) == {"notes.txt": b"mine"}
    with pytest.raises(UsageError, match="read-only"):
        build_folder(corpus["json"].as_uri(), "https://127.0.0.1:9/out", image_folder=str(corpus["images"]))
    # an interrupted publication (the mark, no manifest) and a killed run's temporary prefix are replaced
    (out / "notes.txt").unlink()
    (out / MARK).write_text("{}")
    (out / "data").mkdir()
    (out / "data" / "train-00000-of-00009.parquet").write_bytes(b"old")
    stale = tmp_path / f"out{TMP_INFIX}0123"
    stale.mkdir()
    (stale / MARK).write_text("{}")
    build_folder(
        corpus["json"].as_uri(),
        out.as_uri(),
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        **SAME,
    )
    _assert_same_build(corpus["local"], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_http_without_aiohttp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(MissingDependencyError, match="aiohttp") as err:
        fetch_url("http://127.0.0.1:9/x.jpg")
    assert err.value.extra == "remote" and "[remote]" in str(err.value.hint)


# ------------------------------------------------------------------- a record's own http(s) media


def _remote_records(url: str) -> list[dict[str, Any]]:
    q = turns(("human", "<image>\nWhat is it?"), ("gpt", "A photo."))
    return [
        {"id": "one", "image": f"{url}/a.jpg", "conversations": q},
        {"id": "two", "images": [f"{url}/b.jpg", "local.jpg"], "conversations": turns(
            ("human", "<image><image>\nCompare."), ("gpt", "Alike.")
        )},
        {"id": "text", "conversations": turns(("human", "hi"), ("gpt", "hello"))},
    ]  # fmt: skip


@pytest.fixture
def remote(http_folder: HttpFolder, tmp_path: Path) -> dict[str, Any]:
    make_jpeg(http_folder.root / "a.jpg", size=(64, 48), seed=1)
    make_jpeg(http_folder.root / "b.jpg", size=(640, 480), seed=2)
    make_jpeg(tmp_path / "local.jpg", size=(32, 24), seed=3)
    records = _remote_records(http_folder.url)
    return {"server": http_folder, "records": records, "json": write_records(tmp_path / "data.json", records)}


def _first_codes(path: Path, **roots: Any) -> dict[str, str | None]:
    validator = Validator(roots=MediaRoots(**roots))
    return {
        c.record.id if c.record else str(c.index): (c.first_error.code if c.first_error else None)
        for c in validator.iter_checked([str(path)])
    }


def test_remote_media_are_refused_by_default(remote: dict[str, Any], tmp_path: Path) -> None:
    assert _first_codes(remote["json"]) == {"one": "remote_media", "two": "remote_media", "text": None}
    result = build_folder(str(remote["json"]), tmp_path / "out", on_error="skip")
    assert result.rejected == {"remote_media": 2} and result.fetched == 0
    lines = (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    assert "--allow-remote-media" not in lines[0] and "allow_remote_media=True" in lines[0]
    # allow_outside_root does not open the network
    assert _first_codes(remote["json"], allow_outside_root=True)["one"] == "remote_media"


def test_allowed_remote_media_are_fetched_kept_as_urls_and_exported_back(
    remote: dict[str, Any], tmp_path: Path
) -> None:
    served = remote["server"].root
    assert _first_codes(remote["json"], allow_remote_media=True) == {"one": None, "two": None, "text": None}
    out = tmp_path / "out"
    result = build_folder(str(remote["json"]), out, allow_remote_media=True)
    assert result.num_rows == {"train": 3}
    assert result.fetched == 2
    assert result.fetched_bytes == (served / "a.jpg").stat().st_size + (served / "b.jpg").stat().st_size
    ds = datasets.load_dataset(str(out), split="train").cast_column(
        "images", datasets.List(datasets.Image(decode=False))
    )
    assert ds[0]["images"][0] == {
        "bytes": (served / "a.jpg").read_bytes(),
        "path": remote["records"][0]["image"],
    }
    assert ds[1]["images"][0]["bytes"] == (served / "b.jpg").read_bytes()
    exported = tmp_path / "exported"
    export_llava(str(out), exported)
    assert json.loads((exported / "train.json").read_text()) == remote["records"]
    written = {p.name for p in exported.rglob("*") if p.is_file()}
    assert written == {"train.json", "local.jpg"}  # nothing written for the URLs


def test_a_remote_file_over_the_limit_or_too_slow_is_remote_fetch_failed(
    remote: dict[str, Any], tmp_path: Path
) -> None:
    url = remote["server"].url
    make_jpeg(remote["server"].root / "slow" / "c.jpg", size=(32, 24))
    records = [
        *remote["records"],
        {"id": "slow", "image": f"{url}/slow/c.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))},
        {"id": "gone", "image": f"{url}/gone.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))},
    ]  # fmt: skip
    path = write_records(tmp_path / "more.json", records)
    small = (remote["server"].root / "a.jpg").stat().st_size  # a.jpg fits, b.jpg (640x480) does not
    limits: dict[str, Any] = {"allow_remote_media": True, "max_remote_bytes": small, "remote_timeout": 0.5}
    codes = _first_codes(path, **limits)
    assert codes == {
        "one": None,
        "two": "remote_fetch_failed",
        "text": None,
        "slow": "remote_fetch_failed",
        "gone": "remote_fetch_failed",
    }
    result = build_folder(str(path), tmp_path / "out", on_error="skip", **limits)
    assert result.rejected == {"remote_fetch_failed": 3} and result.fetched == 1
    lines = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    by_id = {line["id"]: line["message"] for line in lines}
    assert f"more than the limit of {small}" in by_id["two"] and "images[0]" in by_id["two"]
    assert "longer than 0.5 s" in by_id["slow"]
    assert "not found" in by_id["gone"]
    # validate asks each failing URL once (a slow one would otherwise cost its timeout twice)
    remote["server"].requests.clear()
    assert _first_codes(path, **limits)["gone"] == "remote_fetch_failed"
    gets = Counter(p for method, p in remote["server"].requests if method == "GET")
    assert gets["/gone.jpg"] == 1 and gets["/slow/c.jpg"] == 1 and gets["/b.jpg"] == 1, gets


def test_credentials_in_a_url_are_not_in_messages(tmp_path: Path) -> None:
    url = "https://user:s3cret@example.invalid/a.jpg?sig=t0ken"
    assert redact_url(url) == "https://***@example.invalid/a.jpg?***"
    record = {"id": "x", "image": url, "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))}
    path = write_records(tmp_path / "data.json", [record])
    [checked] = Validator().iter_checked([str(path)])
    assert checked.first_error is not None
    assert "s3cret" not in checked.first_error.message and "t0ken" not in checked.first_error.message


def test_the_cli_flags_fetch_remote_media_and_publish_to_a_url(
    remote: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llava_hf.cli import main

    assert main(["validate", str(remote["json"])]) == 1
    assert "pass --allow-remote-media to fetch it" in capsys.readouterr().out
    assert main(["validate", str(remote["json"]), "--allow-remote-media", "--remote-timeout", "5"]) == 0
    fetched = sum((remote["server"].root / name).stat().st_size for name in ("a.jpg", "b.jpg"))
    assert f"fetched 2 remote media file(s), {fetched} bytes" in capsys.readouterr().out
    out = tmp_path / "out"
    argv = ["build", str(remote["json"]), "--allow-remote-media", "--output-dir", out.as_uri()]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"Built {out.as_uri()}: 3 rows" in printed and "fetched 2 remote media file(s)" in printed
    assert datasets.load_dataset(str(out), split="train").num_rows == 3
    assert main(["validate", str(remote["json"]), "--max-remote-bytes", "0"]) == 2
    assert "--max-remote-bytes 0 is not a positive number of bytes" in capsys.readouterr().err


def test_shards_are_written_to_the_url_and_a_killed_build_leaves_nothing_complete(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """The shards go to the output's temporary prefix as they are written, never to local disk; a build
    killed there leaves no OUT, and the next build removes its prefix."""
    served = tmp_path / "served"
    served.mkdir()
    image = make_jpeg(tmp_path / "images" / "a.jpg")
    with HttpFolder(served) as server:  # /slow/ answers only when the server stops: the build waits there
        records = [
            {"id": "a", "image": "a.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))},
            {
                "id": "b",
                "image": f"{server.url}/slow/b.jpg",
                "conversations": turns(("human", "<image>\nq"), ("gpt", "b")),
            },
        ]
        data = write_records(tmp_path / "data.json", records)
        out = tmp_path / "out"
        local_tmp = tmp_path / "tmp"
        local_tmp.mkdir()
        argv = [
            sys.executable,
            "-c",
            "import sys; from llava_hf.cli import main; sys.exit(main())",
            "build",
            str(data),
            "--image-folder",
            str(image.parent),
        ]
        argv += ["--allow-remote-media", "--remote-timeout", "300", "--records-per-shard", "1"]
        proc = subprocess.Popen(
            [*argv, "--output-dir", out.as_uri()],
            env={**os.environ, "TMPDIR": str(local_tmp)},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob(f"out{TMP_INFIX}*/data/*.parquet")):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the first shard never reached the output's prefix"
                time.sleep(0.1)
            [written] = tmp_path.glob(f"out{TMP_INFIX}*/data/*.parquet")
            assert written.parent.parent.joinpath(MARK).is_file()
            assert not list(local_tmp.rglob("*.parquet"))  # not staged on this machine's disk
            assert not out.exists()
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not out.exists()  # nothing that looks complete
    folders: dict[str, Any] = {"image_folder": str(corpus["images"]), "video_folder": str(corpus["videos"])}
    build_folder(corpus["json"].as_uri(), out.as_uri(), **folders, **SAME)
    _assert_same_build(corpus["local"], out)
    assert not list(tmp_path.glob(f"out{TMP_INFIX}*"))  # the killed build's prefix is removed


class CountingFileSystem(LocalFileSystem):
    """The local file system under ``counting://``, counting the calls the tests ask about (a real fsspec file
    system: every call does what LocalFileSystem does)."""

    protocol = ("counting",)
    calls: ClassVar[Counter[str]] = Counter()
    moved: ClassVar[list[str]] = []
    depth = 0

    def ls(self, path: str, detail: bool = False, **kwargs: Any) -> Any:
        self.calls["ls"] += 1
        self.depth += 1
        try:
            return super().ls(path, detail=detail, **kwargs)
        finally:
            self.depth -= 1

    def info(self, path: Any, **kwargs: Any) -> Any:
        self.calls["info" if self.depth == 0 else "info in ls"] += 1
        return super().info(path, **kwargs)

    def mv(self, path1: Any, path2: Any, **kwargs: Any) -> Any:
        self.moved.append(str(path1))
        return super().mv(path1, path2, **kwargs)


@pytest.fixture
def counting() -> Iterator[type[CountingFileSystem]]:
    fsspec.register_implementation("counting", CountingFileSystem, clobber=True)
    CountingFileSystem.calls.clear()
    CountingFileSystem.moved.clear()
    yield CountingFileSystem


def test_planning_lists_a_url_folder_once_instead_of_asking_each_file(
    tmp_path: Path, counting: type[CountingFileSystem]
) -> None:
    """Under a URL root the sizes of a folder's files come from one listing (an object store: 1,000 keys a
    request), not one request per file."""
    names = [f"{i}.jpg" for i in range(30)]
    for i, name in enumerate(names):
        make_jpeg(tmp_path / "images" / "sub" / name, size=(64 + i, 48), seed=i)
    sizes = MediaSizes()
    prefix = MediaSizes.prefix(f"counting://{tmp_path / 'images'}")
    assert prefix is not None
    got = [sizes.size(prefix, f"sub/{name}") for name in [*names, "missing.jpg"]]
    assert got == [(tmp_path / "images" / "sub" / n).stat().st_size for n in names] + [0]
    assert counting.calls["ls"] == 1 and counting.calls["info"] == 0


def test_each_shard_moves_once_into_a_url_output(
    corpus: dict[str, Any], tmp_path: Path, counting: type[CountingFileSystem]
) -> None:
    """An object store moves by copying: a shard is written under the temporary prefix and moved once, to its
    published name."""
    folders: dict[str, Any] = {"image_folder": str(corpus["images"]), "video_folder": str(corpus["videos"])}
    out = tmp_path / "out"
    result = build_folder(str(corpus["json"]), f"counting://{out}", **folders, **SAME)
    shards = [name for files in result.files.values() for name in files]
    assert len(shards) > 2
    moved = [path for path in counting.moved if path.endswith(".parquet")]
    assert len(moved) == len(shards) and all(TMP_INFIX in path for path in moved)
    files = _files(out)
    for name in _files(corpus["local"]):
        if name != "README.md":
            assert files[name] == (corpus["local"] / name).read_bytes(), name


def test_rejected_records_of_workers_writing_to_a_url_are_the_local_builds(tmp_path: Path) -> None:
    """The workers' reports go under the URL's temporary prefix; rejected.jsonl and the counts are the same."""
    records = [
        {"id": "a", "conversations": turns(("human", "q"), ("gpt", "a"))},
        {"id": "b", "image": "no.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))},
        {"id": "c", "conversations": turns(("human", "q"), ("gpt", "c"))},
    ]
    data = write_records(tmp_path / "d.json", records)
    options: dict[str, Any] = {"on_error": "skip", "num_proc": 2, "records_per_shard": 1}
    local = build_folder(str(data), tmp_path / "local" / "out", **options)
    url = build_folder(str(data), (tmp_path / "url" / "out").as_uri(), **options)
    assert url.rejected == local.rejected == {"missing_media": 1}
    rejected = (tmp_path / "local" / "out" / "rejected.jsonl").read_text()
    assert (tmp_path / "url" / "out" / "rejected.jsonl").read_text() == rejected and '"id": "b"' in rejected
    assert sorted(p.name for p in (tmp_path / "url").iterdir()) == ["out"]
