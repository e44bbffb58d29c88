"""``llava-hf validate``: the summary, the JSONL report, exit codes, and no traceback on a user mistake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llava_hf.cli import main
from llava_hf.errors import InputFileError, UsageError
from tests.fixtures.records import G, H, add_bad_media, demo_folder, mixed_records

REPORT_KEYS = {"file", "index", "id", "code", "severity", "message", "field"}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _report(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        assert set(line) == REPORT_KEYS
        assert line["severity"] in ("error", "warning")
    return lines


def _summary(out: str) -> dict[str, int]:
    m = re.search(
        r"records: (\d+)\s+images: (\d+)\s+videos: (\d+)\s+text-only: (\d+)\s+turns: (\d+)\s*\n\s*errors: (\d+)\s+warnings: (\d+)",
        out,
    )
    assert m, out
    keys = ("records", "images", "videos", "text_only", "turns", "errors", "warnings")
    return dict(zip(keys, map(int, m.groups())))


def _code_counts(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^    ([a-z_]+)\s+(\d+)$", out, re.MULTILINE)}


def _media_args(llava_dir: Path) -> list[str]:
    return ["--image-folder", str(llava_dir / "images"), "--video-folder", str(llava_dir / "videos")]


def _expected_stats(values: list[Any]) -> dict[str, int]:
    """Counts from the raw records (objects with a list of turns), computed the obvious way."""
    stats = Counter(records=len(values))
    for v in values:
        if not isinstance(v, dict) or not isinstance(v.get("conversations"), list):
            continue
        if not all(isinstance(t, dict) for t in v["conversations"]) or isinstance(v.get("id"), float):
            continue
        if v.get("image") is not None and not isinstance(v["image"], (str, list)):
            continue
        images: Any = v.get("image", v.get("images", []))
        videos: Any = v.get("video", v.get("videos", []))
        n_img = 1 if isinstance(images, str) else len(images)
        n_vid = 1 if isinstance(videos, str) else len(videos)
        stats["images"] += n_img
        stats["videos"] += n_vid
        stats["text_only"] += n_img == 0 and n_vid == 0
        stats["turns"] += len(v["conversations"])
    return dict(stats)


# ------------------------------------------------------------------------------------------------ good


def test_good_data_exits_0_with_the_summary(
    capsys: pytest.CaptureFixture[str],
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_json(sample_records, "train.json")
    report = tmp_path / "report.jsonl"
    code, out, err = _run(capsys, str(path), *_media_args(llava_dir), "--report", str(report))
    assert code == 0, out + err
    stats = _summary(out)
    expected = _expected_stats(sample_records)
    assert {k: stats[k] for k in expected} == expected
    assert stats["errors"] == stats["warnings"] == 0
    assert "OK: no errors." in out and "train.json" in out
    assert report.exists() and report.read_text() == ""
    assert "Traceback" not in err


def test_the_real_messages_demo_validates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = demo_folder(tmp_path)
    code, out, _ = _run(capsys, str(root / "mllm_demo.json"), str(root / "mllm_video_demo.json"))
    assert code == 0, out
    stats = _summary(out)
    demo = json.loads((root / "mllm_demo.json").read_text())
    video = json.loads((root / "mllm_video_demo.json").read_text())
    assert stats["records"] == len(demo) + len(video)
    assert stats["images"] == sum(len(r["images"]) for r in demo)
    assert stats["videos"] == sum(len(r["videos"]) for r in video)
    assert stats["turns"] == sum(len(r["messages"]) for r in demo + video)


def test_jsonl_gzip_and_file_url(
    capsys: pytest.CaptureFixture[str],
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
) -> None:
    gz = write_json(sample_records, "train.jsonl.gz")
    code, out, _ = _run(capsys, gz.as_uri(), *_media_args(llava_dir))
    assert code == 0, out
    assert _summary(out)["records"] == len(sample_records)


# ------------------------------------------------------------------------------------------ mixed file


def test_mixed_file_reports_every_bad_record_and_no_false_alarm(
    capsys: pytest.CaptureFixture[str],
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The issue's "Done when": every bad record with the right code, nothing on the good ones."""
    secret = add_bad_media(llava_dir)
    values, expected, expected_deep = mixed_records(sample_records, secret)
    path = write_json(values, "mixed.json")
    for deep, want in ((False, expected), (True, expected_deep)):
        report = tmp_path / f"report-{deep}.jsonl"
        argv = [str(path), *_media_args(llava_dir), "--report", str(report)] + (["--deep"] if deep else [])
        code, out, err = _run(capsys, *argv)
        assert code == 1
        lines = _report(report)
        got: dict[int, list[str]] = {i: [] for i in range(len(values))}
        for line in lines:
            assert line["file"] == str(path)
            got[line["index"]].append(line["code"])
            assert line["message"].startswith(f"{path}, record {line['index']}")
            if line["id"] is not None:
                assert f"(id {line['id']!r})" in line["message"]
        assert {i: sorted(c) for i, c in got.items()} == want
        # the summary agrees with the report
        stats = _summary(out)
        assert stats["records"] == len(values)
        by_severity = Counter(line["severity"] for line in lines)
        assert (stats["errors"], stats["warnings"]) == (by_severity["error"], by_severity["warning"])
        assert _code_counts(out) == dict(Counter(line["code"] for line in lines))
        assert f"FAILED: {by_severity['error']} error(s)." in out
        assert f"First 10 of {len(lines)} problem(s):" in out
        assert f"Report: {report} ({len(lines)} line(s))" in out
        assert "Traceback" not in err


def test_progress_to_a_pipe_is_plain_lines_counting_the_summary_s_records(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> None:
    """stderr not a terminal (a pipe here, a log file in a job): a few plain lines, no carriage
    return; the bar has a total (the input's bytes) and ends counting the summary's records."""
    import time

    from tqdm import tqdm

    from llava_hf.utils.logging import LINE_INTERVAL

    secret = add_bad_media(llava_dir)
    values, _, _ = mixed_records(sample_records, secret)
    mixed = write_json(values, "mixed.json")
    gz = write_json(sample_records, "more.jsonl.gz")
    broken = llava_dir / "broken.json"  # a whole-file problem: not a record of the summary
    broken.write_text(json.dumps([{"id": "b1", "conversations": [H("q"), G("a")]}])[:-1])
    total = sum(p.stat().st_size for p in (mixed, gz, broken))
    command = "import sys; from llava_hf.cli import main; sys.exit(main())"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "validate",
            str(mixed),
            str(gz),
            str(broken),
            *_media_args(llava_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "\r" not in done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith("Validating:")]
    assert 2 <= len(bars) <= 2 + elapsed / LINE_INTERVAL  # the first, one per interval at most, the last
    assert bars[0].startswith("Validating:   0%") and bars[-1].startswith("Validating: 100%")
    assert f"/{tqdm.format_sizeof(total)}B " in bars[0]  # the input's size, from the start
    records = _summary(done.stdout)["records"]
    assert records == len(values) + len(sample_records) + 1  # + the complete record of broken.json
    assert f" {records:,} records, " in bars[-1]


def test_bad_jsonl_line_and_broken_array_in_the_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = {"id": "g", "conversations": [H("q"), G("a")]}
    lines = tmp_path / "d.jsonl"
    lines.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(dict(good, id="g2")) + "\n")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([dict(good, id="g3")])[:-1])
    report = tmp_path / "r.jsonl"
    code, out, err = _run(capsys, str(lines), str(broken), "--report", str(report))
    assert code == 1, err
    rows = _report(report)
    assert [(r["file"], r["index"], r["code"]) for r in rows] == [
        (str(lines), 1, "invalid_json"),
        (str(broken), None, "invalid_json"),
    ]
    assert "line 2" in rows[0]["message"]
    assert re.search(r"line 1 column \d+ \(byte \d+\)", rows[1]["message"])
    assert _summary(out)["records"] == 4  # 3 lines + the one complete record of broken.json
    assert "Traceback" not in err


def test_duplicate_ids_across_files_of_one_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"id": 1, "conversations": [H("q"), G("a")]}]))
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"id": "1", "conversations": [H("q"), G("a")]}) + "\n")
    report = tmp_path / "r.jsonl"
    code, _, _ = _run(capsys, str(a), str(b), "--report", str(report))
    assert code == 1
    assert [(r["file"], r["index"], r["id"], r["code"]) for r in _report(report)] == [
        (str(b), 0, "1", "duplicate_id")
    ]
    code, _, _ = _run(capsys, str(a))
    assert code == 0


# -------------------------------------------------------------------------------------- warnings/strict


def test_warnings_only_exit_0_and_strict_makes_them_errors(
    capsys: pytest.CaptureFixture[str], llava_dir: Path, write_json: Callable[..., Path], tmp_path: Path
) -> None:
    values = [
        {"id": "seed", "image": "coco/train2017/1.jpg", "conversations": [H("Describe."), G("A bus.")]},
        {"id": "open", "conversations": [H("q"), G("a"), H("q2")]},
    ]
    path = write_json(values, "warn.json")
    report = tmp_path / "w.jsonl"
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir), "--report", str(report))
    assert code == 0
    rows = _report(report)
    assert [(r["id"], r["code"], r["severity"]) for r in rows] == [
        ("seed", "placeholder_added", "warning"),
        ("open", "ends_with_human", "warning"),
    ]
    assert _summary(out)["warnings"] == 2 and "OK: no errors." in out
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir), "--strict", "--report", str(report))
    assert code == 1
    assert [(r["id"], r["code"], r["severity"]) for r in _report(report)] == [
        ("seed", "placeholder_mismatch", "error"),
        ("open", "ends_with_human", "warning"),
    ]


def test_messages_name_the_flags_in_the_output_and_the_report(
    capsys: pytest.CaptureFixture[str], llava_dir: Path, write_json: Callable[..., Path], tmp_path: Path
) -> None:
    """The library's problems name video_folder=, strict=True...; the CLI shows its flags instead."""
    values = [
        {"id": "seed", "image": "coco/train2017/1.jpg", "conversations": [H("Describe."), G("A bus.")]},
        {"id": "gone", "video": "nowhere.mp4", "conversations": [H("<video>q"), G("a")]},
        {"id": "out", "image": "../secret.jpg", "conversations": [H("<image>q"), G("a")]},
    ]
    path = write_json(values, "flags.json")
    report = tmp_path / "flags.jsonl"
    videos = str(llava_dir / "videos")
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir), "--report", str(report))
    assert code == 1
    messages = {r["id"]: r["message"] for r in _report(report)}
    assert "(pass --strict to make this an error)" in messages["seed"]
    assert f"check --video-folder (now {videos!r})" in messages["gone"]
    assert "Pass --allow-outside-root only if" in messages["out"]
    assert f"outside --image-folder {llava_dir / 'images'}." in messages["out"]
    for message in messages.values():
        assert message in out  # the lines shown are the report's
        assert not re.search(r"\b(strict|video_folder|image_folder|allow_outside_root)=", message)


def test_cli_text_turns_python_arguments_into_flags() -> None:
    from llava_hf.cli import cli_text

    assert cli_text("check video_folder= (now '/v')") == "check --video-folder (now '/v')"
    assert cli_text("pass on_error='skip' to drop them") == "pass --on-error skip to drop them"
    assert cli_text("Pass allow_outside_root=True only if") == "Pass --allow-outside-root only if"
    assert cli_text("outside image_folder='/my data'.") == "outside --image-folder '/my data'."
    assert (
        cli_text("records_per_shard=0 is not a positive integer")
        == "--records-per-shard 0 is not a positive integer"
    )
    assert cli_text("e.g. tag='v1.0'") == "e.g. --tag v1.0"
    # a name inside a quoted id or a path is data, not an argument
    assert (
        cli_text("record 3 (id 'tag=5'), /data/image_folder=1/x.jpg")
        == "record 3 (id 'tag=5'), /data/image_folder=1/x.jpg"
    )


def test_deep_catches_a_truncated_jpeg(
    capsys: pytest.CaptureFixture[str], llava_dir: Path, write_json: Callable[..., Path]
) -> None:
    add_bad_media(llava_dir)
    path = write_json(
        [{"id": "cut", "image": "bad/truncated.jpg", "conversations": [H("<image>q"), G("a")]}], "cut.json"
    )
    assert _run(capsys, str(path), *_media_args(llava_dir))[0] == 0
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir), "--deep")
    assert code == 1 and "unreadable_media" in out and "truncated" in out


def test_allow_outside_root(
    capsys: pytest.CaptureFixture[str], llava_dir: Path, write_json: Callable[..., Path]
) -> None:
    secret = add_bad_media(llava_dir)
    values = [
        {"id": f"o{i}", "image": p, "conversations": [H("<image>q"), G("a")]}
        for i, p in enumerate([str(secret), "../outside/secret.jpg", "coco/sneaky.jpg"])
    ]
    path = write_json(values, "out.json")
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir))
    assert code == 1 and _code_counts(out) == {"media_outside_root": 3}
    assert "--allow-outside-root" in out
    code, out, _ = _run(capsys, str(path), *_media_args(llava_dir), "--allow-outside-root")
    assert code == 0, out


# ------------------------------------------------------------------------------------------- bad usage


def test_missing_file_is_bad_usage_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "r.jsonl"
    code, out, err = _run(capsys, str(tmp_path / "nope.json"), "--report", str(report))
    assert code == 2
    assert "nope.json" in err and "no such file" in err and "hint:" in err and "LLAVA_HF_DEBUG" in err
    assert "Traceback" not in err + out
    assert not report.exists() and not list(tmp_path.glob("*.incomplete"))


def test_missing_media_folder_is_bad_usage(
    capsys: pytest.CaptureFixture[str],
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_json(sample_records, "d.json")
    for flag in ("--image-folder", "--video-folder"):
        code, _, err = _run(capsys, str(path), flag, str(tmp_path / "no-such-dir"))
        assert code == 2
        assert "no-such-dir" in err and "does not exist" in err and "Traceback" not in err


def test_unsupported_extension_is_bad_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n")
    code, _, err = _run(capsys, str(path))
    assert code == 2 and "unsupported file type" in err and "Traceback" not in err


def test_a_failure_midway_leaves_no_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "a.json"
    good.write_text(json.dumps([{"id": 1, "conversations": [H("q"), G("a")]}]))
    bad_url = "nosuchproto://bucket/b.json"
    report = tmp_path / "r.jsonl"
    code, _, err = _run(capsys, str(good), bad_url, "--report", str(report))
    assert code == 2 and "nosuchproto" in err and "Traceback" not in err
    assert not report.exists() and not list(tmp_path.glob(".r.jsonl*"))


@pytest.mark.parametrize(
    "argv", [["validate", "x.json", "--no-such-option"], ["validate"], ["no-such-command"]]
)
def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLAVA_HF_DEBUG", "1")
    with pytest.raises(InputFileError, match="no such file"):
        main(["validate", str(tmp_path / "nope.json")])
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(UsageError, match="does not exist"):
        main(["validate", str(tmp_path / "d.json"), "--image-folder", str(tmp_path / "none")])


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "llava-hf validate" in out
    for flag in (
        "--image-folder",
        "--video-folder",
        "--deep",
        "--strict",
        "--allow-outside-root",
        "--report",
    ):
        assert flag in out
    assert "0 when there is no error" in out


def test_report_path_that_is_a_folder_is_bad_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "d.json"
    path.write_text("[]")
    (tmp_path / "reports").mkdir()
    code, _, err = _run(capsys, str(path), "--report", str(tmp_path / "reports"))
    assert code == 2 and "is a folder" in err and "Traceback" not in err


def test_help_and_validate_start_without_importing_datasets(tmp_path: Path) -> None:
    # `datasets` alone costs ~1 s of CPU to import; validating or asking for help needs none of it
    repo = Path(__file__).resolve().parents[1]
    demo = repo / "dataset_scripts" / "demo"
    script = (
        "import sys\n"
        "from llava_hf.cli import main\n"
        "for argv in (['--help'], ['build', '--help'], ['push', '--help'], ['export', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"code = main(['validate', {str(demo / 'demo.json')!r}, '--image-folder', {str(demo / 'images')!r},\n"
        f"             '--video-folder', {str(demo / 'videos')!r}, '--report', {str(tmp_path / 'r.jsonl')!r}])\n"
        "heavy = sorted(m for m in ('datasets', 'pyarrow', 'pandas', 'huggingface_hub') if m in sys.modules)\n"
        "print('RESULT', code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "RESULT 0 []", done.stdout[-2000:]
