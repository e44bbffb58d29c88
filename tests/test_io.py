"""Atomic output: complete or absent, never half-written."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from llava_hf.errors import OutputLockedError, UsageError
from llava_hf.utils.output import (
    MARK,
    atomic_dir,
    atomic_text_file,
    final_path,
    output_lock,
    refuse_foreign_output,
)


def test_atomic_text_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.jsonl"
    with atomic_text_file(target) as f:
        assert f is not None
        f.write("é\n")
        assert not target.exists()  # not visible before the block ends
    assert target.read_text(encoding="utf-8") == "é\n"
    with pytest.raises(RuntimeError), atomic_text_file(target) as f:
        assert f is not None
        f.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text(encoding="utf-8") == "é\n"  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.jsonl"]  # no temporary left
    with atomic_text_file(None) as nothing:
        assert nothing is None


def test_atomic_dir_new_and_replace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        assert tmp != out and not out.exists()
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no working folder, no lock file


def test_atomic_dir_failure_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "partial.txt").write_text("x")
        raise ValueError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_no_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic_dir(out, overwrite=False) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_clears_the_marked_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    stale = tmp_path / ".out.llava-hf-incomplete"
    (stale / "out").mkdir(parents=True)
    (stale / MARK).write_text('{"pid": 1}')
    (stale / "out" / "junk").write_text("from a crashed run")
    with atomic_dir(tmp_path / "out") as tmp:
        assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_puts_back_an_output_a_killed_run_had_moved_aside(tmp_path: Path) -> None:
    backup = tmp_path / ".out.llava-hf-replaced"
    (backup / "out").mkdir(parents=True)
    (backup / MARK).write_text('{"pid": 1}')
    (backup / "out" / "previous.txt").write_text("the previous build")
    with pytest.raises(ValueError), atomic_dir(tmp_path / "out"):
        raise ValueError("this run fails too")
    assert (tmp_path / "out" / "previous.txt").read_text() == "the previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_never_deletes_what_it_did_not_make(tmp_path: Path) -> None:
    """Folders a user named like the old working folders (out.incomplete, out.old) are not touched, and
    one named like today's but without the mark stops the run."""
    for name in ("out.incomplete", "out.old", ".out.old", "out.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text(name)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(tmp_path / "out") as tmp:  # replacing the output
        (tmp / "b").write_text("2")
    for name in ("out.incomplete", "out.old", ".out.old", "out.tmp"):
        assert (tmp_path / name / "mine.txt").read_text() == name
    for name in (".out.llava-hf-incomplete", ".out.llava-hf-replaced"):
        theirs = tmp_path / name
        theirs.mkdir()
        (theirs / "mine.txt").write_text("keep")
        with pytest.raises(UsageError, match="not made by llava-hf") as err, atomic_dir(tmp_path / "out"):
            pytest.fail("the block must not run")
        assert name in str(err.value) and err.value.hint
        assert (theirs / "mine.txt").read_text() == "keep"
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b"]
        (theirs / "mine.txt").unlink()
        theirs.rmdir()


def test_final_path_names_the_output_of_a_working_folder(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "out") as tmp:
        assert tmp.name == "out" and final_path(tmp) == tmp_path / "out"
    assert final_path(tmp_path / "other") == tmp_path / "other"


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
        with pytest.raises(OutputLockedError, match=rf"another llava-hf run \(pid {os.getpid()}\)") as err:
            with atomic_dir(out):
                pytest.fail("the block must not run")
        assert err.value.pid == os.getpid() and "--wait" in (err.value.hint or "")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_wait_waits_for_the_other_writer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[str] = []
    holding, started = threading.Event(), threading.Event()

    def first() -> None:
        with output_lock(out):
            holding.set()
            started.wait(10)
            time.sleep(0.3)  # the second writer is blocked in the meantime
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    started.set()
    with atomic_dir(out, wait=True) as tmp:
        events.append("second writes")
        (tmp / "x").write_text("x")
    thread.join()
    assert events == ["first done", "second writes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_output_in_the_way_is_refused_unless_it_is_llava_hfs(tmp_path: Path) -> None:
    """Build and export share one check: a file or a non-empty folder is refused and left as it is;
    nothing there, an empty folder, or (for a build) a folder holding the manifest may be replaced."""
    refuse_foreign_output(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    refuse_foreign_output(tmp_path / "empty")
    refuse_foreign_output(tmp_path / "empty", manifest="llava_hf.json")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match=r"exists and is not empty; refusing to replace it") as info:
        refuse_foreign_output(mine)
    assert "mine" in str(info.value) and "output_dir=" in (info.value.hint or "")
    with pytest.raises(UsageError, match=r"is not a llava-hf build \(no llava_hf.json\)"):
        refuse_foreign_output(mine, manifest="llava_hf.json")
    (tmp_path / "a_file").write_text("x")
    for manifest in (None, "llava_hf.json"):
        with pytest.raises(UsageError, match="refusing to replace it"):
            refuse_foreign_output(tmp_path / "a_file", manifest=manifest)
    (mine / "llava_hf.json").write_text("{}")
    refuse_foreign_output(mine, manifest="llava_hf.json")  # a previous build: replaceable
    with pytest.raises(UsageError, match="is not empty"):
        refuse_foreign_output(mine)  # but export never replaces a non-empty folder
    assert sorted(p.name for p in mine.iterdir()) == ["llava_hf.json", "thesis.tex"]
