"""Atomic output: complete or absent, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_hf._io import atomic_dir, atomic_text_file


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .incomplete, no .old


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


def test_atomic_dir_clears_a_stale_incomplete_folder(tmp_path: Path) -> None:
    stale = tmp_path / "out.incomplete"
    stale.mkdir()
    (stale / "junk").write_text("from a crashed run")
    with atomic_dir(tmp_path / "out") as tmp:
        assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
