"""The build on Ray Data: the same folder as the local build, errors as one line, a killed worker retried,
a two-node cluster on 127.0.0.1, and ``llava_hf.ray``'s reading and decoding."""

from __future__ import annotations

import contextlib
import filecmp
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import ray

from llava_hf import build_folder
from llava_hf import decode_media as local_decode_media
from llava_hf.errors import RecordError
from llava_hf.ray import decode_media, read_llava
from tests.fixtures.build_corpus import bad_corpus, make_corpus, make_media, turns, write_records
from tests.fixtures.http_server import HttpFolder
from tests.fixtures.media import make_jpeg
from tests.hub_server import TEST_USER

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_ray_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # token auth is for real clusters, not 127.0.0.1 tests
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    yield
    assert not ray.is_initialized(), "a build left Ray running"


def _local_then_ray(build: Any, out: Path, **ray_options: Any) -> tuple[Any, Any, Path]:
    """``build(out, **options)`` locally, its folder moved aside, then on Ray at the same path (the card
    names the folder): the results and where the local folder went."""
    local = build(out)
    moved = out.with_name("local")
    out.rename(moved)
    return local, build(out, engine="ray", **ray_options), moved


def _same_folder(a: Path, b: Path) -> None:
    """Every file of ``a`` is in ``b`` with the same bytes, and nothing else is."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_corpus(tmp_path_factory.mktemp("ray_corpus"))


def _build(corpus: dict[str, Any], out: Path, **kwargs: Any) -> Any:
    return build_folder(
        str(corpus["json"]),
        out,
        image_folder=str(corpus["images"]),
        video_folder=str(corpus["videos"]),
        records_per_shard=3,
        **kwargs,
    )


def test_importing_llava_hf_does_not_import_ray() -> None:
    code = "import sys, llava_hf, llava_hf.build, llava_hf.cli; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_without_ray_the_error_names_the_extra(tmp_path: Path) -> None:
    """ray blocked from importing: llava_hf.ray is an ImportError naming [ray]; the CLI says it in one line."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "try:\n    import llava_hf.ray\nexcept ImportError as err:\n"
        "    assert err.extra == 'ray' and \"'.[ray]'\" in err.hint, err.hint; print('ok')\n"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout
        == "ok\n"
    )
    data = _one_bad_record(tmp_path)
    cli = "import sys; sys.modules['ray'] = None; from llava_hf.cli import main; sys.exit(main())"
    argv = [
        sys.executable,
        "-c",
        cli,
        "build",
        str(data),
        "--output-dir",
        str(tmp_path / "out"),
        "--engine",
        "ray",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "needs 'ray[data]'" in done.stderr and ".[ray]" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_ray_build_writes_the_local_builds_folder(corpus: dict[str, Any], tmp_path: Path) -> None:
    build = functools.partial(_build, corpus, num_proc=2)
    local, on_ray, moved = _local_then_ray(build, tmp_path / "out")
    assert len(local.files["train"]) > 2  # several shards, run as several tasks
    assert on_ray.num_rows == local.num_rows and on_ray.files == local.files
    _same_folder(moved, tmp_path / "out")


def test_skip_gives_the_local_counts_and_rejected_lines(tmp_path: Path) -> None:
    images, videos = make_media(tmp_path / "in")
    data_files, expected, _, _ = bad_corpus(tmp_path / "in")
    options: dict[str, Any] = {
        "image_folder": str(images),
        "video_folder": str(videos),
        "on_error": "skip",
        "records_per_shard": 3,
    }
    build = functools.partial(build_folder, data_files, num_proc=2, **options)
    local, on_ray, moved = _local_then_ray(build, tmp_path / "out")
    assert dict(on_ray.rejected) == dict(local.rejected) == expected
    _same_folder(moved, tmp_path / "out")


def _one_bad_record(root: Path) -> Path:
    make_jpeg(root / "images" / "ok.jpg")
    records = [
        {"id": f"r{i}", "image": "ok.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", "a"))}
        for i in range(6)
    ]
    records[4]["image"] = "missing.jpg"
    return write_records(root / "data.json", records)


def test_a_bad_record_is_the_local_builds_error_and_leaves_nothing(tmp_path: Path) -> None:
    data = _one_bad_record(tmp_path)
    with pytest.raises(RecordError) as raised:
        build_folder(
            str(data),
            tmp_path / "out",
            image_folder=str(tmp_path / "images"),
            records_per_shard=2,
            engine="ray",
        )
    message = str(raised.value)
    assert "record 4" in message and "'r4'" in message and "missing.jpg" in message
    assert "Ray" not in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_cli_engine_ray(tmp_path: Path) -> None:
    data = _one_bad_record(tmp_path)
    main = "import sys; from llava_hf.cli import main; sys.exit(main())"
    base = [sys.executable, "-c", main, "build", str(data), "--image-folder", str(tmp_path / "images")]
    failed = subprocess.run(
        [*base, "--output-dir", str(tmp_path / "bad"), "--engine", "ray", "--records-per-shard", "2"],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("llava-hf build: error:")]
    assert len(errors) == 1 and "record 4 (id 'r4')" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr and "RayTaskError" not in failed.stderr
    done = subprocess.run(
        [
            *base,
            "--output-dir",
            str(tmp_path / "out"),
            "--engine",
            "ray",
            "--on-error",
            "skip",
            "--num-proc",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert datasets.load_dataset(str(tmp_path / "out"), split="train")["id"] == ["r0", "r1", "r2", "r3", "r5"]
    usage = subprocess.run([*base, "--output-dir", str(tmp_path / "x"), "--ray-address", "127.0.0.1:1"])
    assert usage.returncode == 2


def test_read_llava_gives_the_built_rows_and_decode_media_the_same_pixels(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _build(corpus, out)
    built = datasets.load_dataset(str(out), split="train")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        ds = read_llava(
            str(corpus["json"]),
            image_folder=str(corpus["images"]),
            video_folder=str(corpus["videos"]),
            records_per_shard=3,
        )
        ds = ds.materialize()
        assert ds.num_blocks() >= 2  # one read task per planned shard
        rows = sorted(ds.take_all(), key=lambda row: row["id"])  # Ray Data yields blocks as they complete
        plain = built.cast_column("images", datasets.List(datasets.Image(decode=False))).sort("id")
        assert [r["id"] for r in rows] == plain["id"]
        assert [[m["bytes"] for m in r["images"]] for r in rows] == [
            [m["bytes"] for m in images] for images in plain["images"]
        ]
        assert [r["conversations"] for r in rows] == [list(c) for c in plain["conversations"]]
        decoded = {row["id"]: row for row in decode_media(ds, num_frames=4).take_all()}
        reference = local_decode_media(built, num_frames=4)
        assert len(decoded) == len(reference)
        for want in reference:
            got = decoded[want["id"]]
            assert len(got["images"]) == len(want["images"])
            for a, b in zip(got["images"], want["images"]):
                assert np.array_equal(a, np.asarray(b))
            assert len(got["videos"]) == len(want["videos"])
            for a, b in zip(got["videos"], want["videos"]):
                assert np.array_equal(a, b)
        from_parquet = ray.data.read_parquet(str(out / "data")).take_all()
        assert sorted(r["id"] for r in from_parquet) == sorted(plain["id"])
    finally:
        ray.shutdown()


def test_a_mixture_builds_and_reads_on_ray_as_locally(tmp_path: Path) -> None:
    """``mixture=``: the Ray build writes the local build's folder; read_llava gives the rows it holds."""
    from llava_hf.mixture import load_mixture

    make_jpeg(tmp_path / "images" / "a.jpg")
    plain = [
        {"id": f"p{i}", "image": "a.jpg", "conversations": turns(("human", "<image>\nq"), ("gpt", f"a{i}"))}
        for i in range(12)
    ]
    other = [{"id": f"o{i}", "conversations": turns(("human", "q"), ("gpt", f"b{i}"))} for i in range(9)]
    write_records(tmp_path / "plain.json", plain)
    write_records(tmp_path / "other.json", other)
    (tmp_path / "mix.yaml").write_text(
        "datasets:\n  - json_path: plain.json\n    sampling_strategy: random:5\n    repeat: 2\n"
        "  - json_path: other.json\n    sampling_strategy: first:4\n"
    )
    mix = load_mixture(tmp_path / "mix.yaml", seed=3)
    options: dict[str, Any] = {"image_folder": str(tmp_path / "images"), "records_per_shard": 4}
    out, local = tmp_path / "build" / "out", tmp_path / "local"  # the card names the folder: one path
    build_folder(None, out, mixture=mix, **options)
    out.rename(local)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        build_folder(None, out, mixture=mix, engine="ray", **options)
        rows = read_llava(None, mixture=mix, **options).take_all()
    finally:
        ray.shutdown()
    _same_folder(local, out)
    built = datasets.load_dataset(str(local), split="train")
    assert sorted(r["id"] for r in rows) == sorted(built["id"]) and len(rows) == 14


def test_several_dataset_info_configs_build_on_one_ray_as_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dataset=[...]`` with ``engine="ray"``: the local build's folder, every config built in one Ray."""
    peers = REPO / "tests" / "data" / "peers"
    shutil.copytree(peers, tmp_path / "data")
    info = tmp_path / "data" / "dataset_info.json"
    names = ["demo_messages", "renamed"]
    out = tmp_path / "build" / "out"
    build_folder(str(info), out, dataset=names, records_per_shard=2)
    out.rename(tmp_path / "local")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's sockets need a short path
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    try:
        build_folder(str(info), out, dataset=names, records_per_shard=2, engine="ray")
        sessions = [p for p in (ray_tmp / "ray").glob("session_*") if not p.is_symlink()]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _same_folder(tmp_path / "local", out)
    assert len(sessions) == 1  # one Ray started for both configs


def test_a_hub_repo_reads_into_ray_with_read_parquet(
    corpus: dict[str, Any], tmp_path: Path, hub_server: Any
) -> None:
    """The call the README gives: ``ray.data.read_parquet("hf://datasets/ORG/NAME/data", filesystem=HfFileSystem())``."""
    from huggingface_hub import HfFileSystem

    from llava_hf.hub import push_to_hub

    out = tmp_path / "out"
    _build(corpus, out)
    repo = f"{TEST_USER}/on-ray"
    push_to_hub(out, repo)
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # its workers see the test Hub's env
    try:
        rows = ray.data.read_parquet(f"hf://datasets/{repo}/data", filesystem=HfFileSystem()).take_all()
    finally:
        ray.shutdown()
    built = datasets.load_dataset(str(out), split="train")
    assert sorted(r["id"] for r in rows) == sorted(built["id"])
    by_id = {r["id"]: r for r in rows}
    images = built.select_columns(["id", "images"]).cast_column(
        "images", datasets.List(datasets.Image(decode=False))
    )
    for row in images:
        assert [m["bytes"] for m in by_id[row["id"]]["images"]] == [m["bytes"] for m in row["images"]]


# --- faults: a worker killed by its pid, and a two-node cluster ------------------------------------------------


def _many_shards(root: Path, shards: int, per_shard: int) -> Path:
    """Records whose images are distinct and big enough that a shard takes a while to check (``deep``)."""
    images = root / "images"
    for k in range(shards * per_shard):  # one each: a file is judged once per process
        make_jpeg(images / f"{k}.jpg", size=(480, 360), seed=k)
    records = [
        {
            "id": f"r{i}",
            "image": f"{i}.jpg",
            "conversations": turns(("human", "<image>\nq"), ("gpt", f"a{i}")),
        }
        for i in range(shards * per_shard)
    ]
    return write_records(root / "data.json", records)


def _report_writers(folder: Path) -> set[int]:
    """The pids of processes with a shard's report open under ``folder`` (while they build that shard)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():  # the driver reads the reports at the end
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if target.startswith(str(folder)) and target.endswith(".jsonl") and "reports/" in target:
                found.add(int(pid))
    return found


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` from its 3rd field on (state, ppid, pgrp, session, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            pid = _parent(pid)
        except OSError:
            break
        chain.append(pid)
    return chain


class _Watch(threading.Thread):
    """Watches which processes build shards under ``folder``; kills the first one with SIGKILL if asked."""

    def __init__(self, folder: Path, *, kill: bool = False) -> None:
        super().__init__(daemon=True)
        self.folder, self.kill = folder, kill
        self.seen: dict[int, list[int]] = {}  # pid -> its ancestors, then its session
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in _report_writers(self.folder):
                if pid not in self.seen:
                    with contextlib.suppress(OSError):
                        self.seen[pid] = [*_ancestors(pid), int(_stat(pid)[3])]
                if self.kill and self.killed is None:
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
            time.sleep(0.005)


def test_a_worker_killed_mid_build_is_retried_and_the_folder_is_the_same(tmp_path: Path) -> None:
    data = _many_shards(tmp_path, shards=6, per_shard=40)
    options: dict[str, Any] = {
        "image_folder": str(tmp_path / "images"),
        "records_per_shard": 40,
        "deep": True,
    }
    out = tmp_path / "build" / "out"
    build_folder(str(data), out, num_proc=2, **options)
    out.rename(tmp_path / "local")
    watch = _Watch(out.parent, kill=True)
    watch.start()
    try:
        result = build_folder(str(data), out, num_proc=2, engine="ray", **options)
    finally:
        watch.stop.set()
        watch.join()
    assert watch.killed is not None, "no worker was caught building a shard"
    assert len(result.files["train"]) == 6 and result.num_rows["train"] == 240
    _same_folder(tmp_path / "local", out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                ray_cli,
                "start",
                "--block",
                "--num-cpus",
                "1",
                "--node-ip-address",
                "127.0.0.1",
                "--disable-usage-stats",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children by pid below
        )


def _stop(node: subprocess.Popen[bytes]) -> None:
    """Stop a node started here: its process group, by the pid of its ``ray start``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for_nodes(head: subprocess.Popen[bytes], port: int, n: int, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the head's GCS port answers (ray.init would wait for it without end)
        assert head.poll() is None, f"the head node exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"the head node did not come up: {log.read_text()[-2000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    ray.init(address=f"127.0.0.1:{port}")
    try:
        while sum(node["Alive"] for node in ray.nodes()) < n:
            assert time.monotonic() < deadline, "the test cluster did not come up"
            time.sleep(0.5)
    finally:
        ray.shutdown()


def test_a_two_node_cluster_on_this_machine_builds_the_same_folder(tmp_path: Path) -> None:
    """Into an output on a URL (``file://``), whose temporary prefix the workers of both nodes write to."""
    data = _many_shards(tmp_path, shards=6, per_shard=40)
    options: dict[str, Any] = {
        "image_folder": str(tmp_path / "images"),
        "records_per_shard": 40,
        "deep": True,
    }
    out = tmp_path / "build" / "out"
    build_folder(str(data), out.as_uri(), **options)
    out.rename(tmp_path / "local")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # a short temp folder of its own (Ray's socket paths must stay under 108 bytes), removed at the end
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head_args = ["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", ray_tmp]
    head = _ray_node(head_args, tmp_path / "head.log")
    worker = None
    try:
        _wait_for_nodes(head, port, 1, tmp_path / "head.log")
        worker = _ray_node(["--address", address], tmp_path / "worker.log")
        _wait_for_nodes(head, port, 2, tmp_path / "head.log")
        watch = _Watch(out.parent)
        watch.start()
        try:
            build_folder(str(data), out.as_uri(), engine="ray", ray_address=address, **options)
        finally:
            watch.stop.set()
            watch.join()
        _same_folder(tmp_path / "local", out)
        nodes = {node.pid for node in (head, worker)}
        ran_on = {next((p for p in chain if p in nodes), None) for chain in watch.seen.values()}
        assert ran_on == nodes, f"tasks ran under {ran_on}, nodes are {nodes}:"
        # the CLI joins the cluster named by RAY_ADDRESS (a Ray of its own would run the tasks itself)
        joined = tmp_path / "joined"
        joined.mkdir()
        watch = _Watch(joined)
        watch.start()
        try:
            cli = [
                sys.executable,
                "-c",
                "import sys; from llava_hf.cli import main; sys.exit(main())",
                "build",
            ]
            cli += [str(data), "--image-folder", options["image_folder"], "--records-per-shard", "120"]
            done = subprocess.run(
                [*cli, "--engine", "ray", "--output-dir", str(joined / "out")],
                env={**os.environ, "RAY_ADDRESS": address},
                capture_output=True,
                text=True,
            )
        finally:
            watch.stop.set()
            watch.join()
        assert done.returncode == 0, done.stderr
        ran_on = {next((p for p in chain if p in nodes), None) for chain in watch.seen.values()}
        assert ran_on and ran_on <= nodes, f"tasks ran under {ran_on}, nodes are {nodes}:"
    finally:
        for node in (worker, head):
            if node is not None:
                _stop(node)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert json.loads((out / "llava_hf.json").read_text())["splits"]["train"]["num_rows"] == 240


def test_inputs_and_output_on_urls_build_on_ray_as_locally(
    corpus: dict[str, Any], http_folder: HttpFolder, tmp_path: Path
) -> None:
    """The JSON through fsspec file objects (``local://``), media over HTTP from 127.0.0.1, the output a
    ``file://`` URL: Ray's workers read them as the local build's do, and the published folder is the same."""
    shutil.copytree(corpus["images"], http_folder.root / "images")
    shutil.copytree(corpus["videos"], http_folder.root / "videos")
    out = tmp_path / "build" / "out"

    def build(**options: Any) -> Any:
        return build_folder(
            f"local://{corpus['json']}",
            out.as_uri(),
            image_folder=f"{http_folder.url}/images",
            video_folder=f"{http_folder.url}/videos",
            records_per_shard=3,
            num_proc=2,
            **options,
        )

    local = build()
    out.rename(tmp_path / "local")
    on_ray = build(engine="ray")
    assert on_ray.files == local.files and len(local.files["train"]) > 2
    _same_folder(tmp_path / "local", out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no temporary prefix left
