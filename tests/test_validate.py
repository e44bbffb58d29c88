"""Every validation rule (code, severity, message), the Validator over files, and the on_error policies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llava_hf.errors import LlavaHFError, RecordError
from llava_hf.media.files import MediaRoots
from llava_hf.problems import Problem, ProblemCounter
from llava_hf.records import Record, Turn, iter_records, normalize
from llava_hf.validate import CheckedRecord, Validator, apply_policy, check_conversation
from tests.fixtures.records import G, H, S, add_bad_media, check_all, codes, mixed_records, write

FILE = "train.json"


def _record(value: dict[str, Any], index: int = 4) -> Record:
    record, problems = normalize(value, file=FILE, index=index)
    assert not problems and record is not None, problems
    return record


def _conv(value: dict[str, Any], *, strict: bool = False) -> tuple[Record, list[Problem]]:
    return check_conversation(_record(value), strict=strict)


def _only(problems: list[Problem], code: str) -> Problem:
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, problems
    return found[0]


def _assert_located(p: Problem, rid: str, field: str | None, index: int = 4) -> None:
    """The message names the file, the record index, the id and the field."""
    assert (p.file, p.index, p.id, p.field) == (FILE, index, rid, field)
    prefix = f"{FILE}, record {index} (id {rid!r})" + (f", field {field!r}" if field else "")
    assert p.message.startswith(prefix + ": "), p.message


# ---------------------------------------------------------------------------------------- conversation


def test_good_records_have_no_problem(sample_records: list[dict[str, Any]]) -> None:
    for value in sample_records:
        record = _record(value)
        fixed, problems = check_conversation(record)
        assert problems == [] and fixed == record


@pytest.mark.parametrize("role", ["bot", "Human", "tools", ""])
def test_unknown_role(role: str) -> None:
    _, problems = _conv({"id": "u", "conversations": [H("q"), {"from": role, "value": "a"}]})
    p = _only(problems, "unknown_role")
    assert p.severity == "error"
    _assert_located(p, "u", "conversations[1]")
    assert repr(role) in p.message and "human, gpt or system" in p.message
    assert "bad_turn_order" not in [q.code for q in problems]  # the order is not judged on unknown roles


@pytest.mark.parametrize(
    ("turns", "field", "why"),
    [
        ([H("q"), S("s"), G("a")], "conversations[1]", "a system turn may only come first"),
        ([S("s"), S("t"), H("q"), G("a")], "conversations[1]", "a system turn may only come first"),
        ([G("a"), H("q")], "conversations[0]", "must start with human"),
        ([S("s"), G("a"), H("q")], "conversations[1]", "must start with human after the system turn"),
        ([H("q"), H("q2"), G("a")], "conversations[1]", "turn 1 should be gpt"),
        ([H("q"), G("a"), G("a2")], "conversations[2]", "turn 2 should be human"),
        ([S("only a system prompt")], "conversations[0]", "system turn alone"),
    ],
)
def test_bad_turn_order(turns: list[dict[str, str]], field: str, why: str) -> None:
    _, problems = _conv({"id": "o", "conversations": turns})
    p = _only(problems, "bad_turn_order")
    assert p.severity == "error"
    _assert_located(p, "o", field)
    assert why in p.message
    assert "ends_with_human" not in [q.code for q in problems]


def test_aliases_follow_the_same_order_rules() -> None:
    _, problems = _conv(
        {"id": "a", "conversations": [{"from": "user", "value": "q"}, {"from": "user", "value": "q2"}]}
    )
    assert [p.code for p in problems] == ["bad_turn_order"]
    _, problems = _conv(
        {"id": "b", "conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]}
    )
    assert problems == []


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_value(value: str) -> None:
    _, problems = _conv({"id": "e", "conversations": [H("q"), G(value)]})
    p = _only(problems, "empty_value")
    _assert_located(p, "e", "conversations[1]")
    assert "empty" in p.message and "remove the turn or write its text" in p.message


@pytest.mark.parametrize(
    ("media", "turns", "counts"),
    [
        (
            {"image": "a.jpg"},
            [H("<image><image> q"), G("a")],
            "2 <image> tag(s) in the conversation but 1 image(s)",
        ),
        (
            {"image": ["a.jpg", "b.jpg", "c.jpg"]},
            [H("<image> q <image>"), G("a")],
            "2 <image> tag(s) in the conversation but 3 image(s)",
        ),
        ({}, [H("<image>\nq"), G("a")], "1 <image> tag(s) in the conversation but 0 image(s)"),
        (
            {"video": "v.mp4"},
            [H("<video>\n<video> q"), G("a")],
            "2 <video> tag(s) in the conversation but 1 video(s)",
        ),
        (
            {"video": ["v.mp4", "w.mp4"]},
            [H("<video> q"), G("a")],
            "1 <video> tag(s) in the conversation but 2 video(s)",
        ),
        (
            {"image": "a.jpg"},
            [H("<image><video>\nq"), G("a")],
            "1 <video> tag(s) in the conversation but 0 video(s)",
        ),
    ],
)
def test_placeholder_mismatch(media: dict[str, Any], turns: list[dict[str, str]], counts: str) -> None:
    record = _record({"id": "p", **media, "conversations": turns})
    fixed, problems = check_conversation(record)
    p = _only(problems, "placeholder_mismatch")
    assert p.severity == "error"
    _assert_located(p, "p", "conversations")
    assert counts in p.message and "write exactly one" in p.message
    assert fixed.conversations == record.conversations  # nothing is "fixed" when tags are present


@pytest.mark.parametrize("tag", ["<image>", "<video>"])
def test_placeholder_in_answer(tag: str) -> None:
    media = {"image": "a.jpg"} if tag == "<image>" else {"video": "v.mp4"}
    _, problems = _conv({"id": "g", **media, "conversations": [H(f"{tag}\nq"), G(f"Here: {tag}")]})
    p = _only(problems, "placeholder_in_answer")
    _assert_located(p, "g", "conversations[1]")
    assert tag in p.message and "move the tag into a human turn" in p.message
    assert [q.code for q in problems] == ["placeholder_in_answer"]  # the human tag still matches the media


def test_placeholder_added_prepends_to_the_first_human_turn() -> None:
    value = {
        "id": "seed",
        "image": ["a.jpg", "b.jpg"],
        "conversations": [
            S("Be kind."),
            H("Describe both."),
            G("Two cats."),
            H("And now?"),
            G("Still cats."),
        ],
    }
    record = _record(value)
    fixed, problems = check_conversation(record)
    p = _only(problems, "placeholder_added")
    assert p.severity == "warning" and not p.is_error
    _assert_located(p, "seed", "conversations")
    assert "2 image(s)" in p.message and "strict=True" in p.message
    assert fixed.conversations == (
        Turn("system", "Be kind."),
        Turn("human", "<image>\n<image>\nDescribe both."),
        Turn("gpt", "Two cats."),
        Turn("human", "And now?"),
        Turn("gpt", "Still cats."),
    )
    assert record.conversations[1] == Turn("human", "Describe both.")  # the input record is untouched
    assert value["conversations"][1] == H("Describe both.")
    # once fixed, the record passes the same rules without a warning
    assert check_conversation(fixed)[1] == []


def test_placeholder_added_for_videos_and_images() -> None:
    fixed, problems = _conv(
        {"id": "both", "image": "a.jpg", "video": ["v.mp4", "w.mp4"], "conversations": [H("q"), G("a")]}
    )
    assert [p.code for p in problems] == ["placeholder_added", "placeholder_added"]
    human = fixed.conversations[0].value
    assert human.count("<image>\n") == 1 and human.count("<video>\n") == 2 and human.endswith("\nq")


def test_strict_makes_untagged_media_an_error() -> None:
    record = _record({"id": "s", "image": "a.jpg", "conversations": [H("q"), G("a")]})
    fixed, problems = check_conversation(record, strict=True)
    p = _only(problems, "placeholder_mismatch")
    assert p.severity == "error" and "0 <image> tag(s)" in p.message
    assert fixed == record
    assert "placeholder_added" not in [q.code for q in problems]


def test_untagged_media_without_a_human_turn_is_not_fixed() -> None:
    _, problems = _conv({"id": "n", "image": "a.jpg", "conversations": [S("s"), G("a")]})
    assert sorted(p.code for p in problems) == ["bad_turn_order", "placeholder_mismatch"]


def test_ends_with_human() -> None:
    _, problems = _conv({"id": "h", "conversations": [H("q"), G("a"), H("q2")]})
    p = _only(problems, "ends_with_human")
    assert p.severity == "warning"
    _assert_located(p, "h", "conversations")
    assert "last turn is from human" in p.message
    _, problems = _conv({"id": "h1", "conversations": [H("only a question")]})
    assert [q.code for q in problems] == ["ends_with_human"]


def test_messages_layout_names_the_messages_field() -> None:
    value = {"id": "m", "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": ""}]}
    _, problems = _conv(value)
    assert {(p.code, p.field) for p in problems} == {
        ("empty_value", "messages[1]"),
        ("bad_turn_order", "messages[1]"),
    }


def test_every_problem_is_reported_not_just_the_first() -> None:
    _, problems = _conv({"id": "x", "image": "a.jpg", "conversations": [H(""), G("<image> a"), H("")]})
    assert Counter(p.code for p in problems) == {
        "empty_value": 2,
        "placeholder_in_answer": 1,
        "placeholder_mismatch": 1,
        "ends_with_human": 1,
    }


# ------------------------------------------------------------------------------------------- validator


def test_duplicate_id_on_the_second_and_later_records_across_files(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.json",
        [{"id": 7, "conversations": [H("q"), G("a")]}, {"id": "x", "conversations": [H("q"), G("a")]}],
    )
    b = write(
        tmp_path / "b.jsonl",
        [
            {"id": "7", "conversations": [H("q"), G("b")]},
            {"id": "y", "conversations": [H("q"), G("a")]},
            {"id": "x", "conversations": [H("q"), G("a")]},
            {"id": 7, "conversations": [H("q"), G("c")]},
        ],
    )
    checked = check_all([a, b])
    assert [codes(c) for c in checked] == [[], [], ["duplicate_id"], [], ["duplicate_id"], ["duplicate_id"]]
    p = checked[2].problems[0]
    assert (p.file, p.index, p.id, p.field, p.severity) == (str(b), 0, "7", "id", "error")
    assert p.message.startswith(f"{b}, record 0 (id '7'), field 'id': ") and "unique" in p.message
    # a new run starts afresh
    assert [codes(c) for c in check_all([b])] == [[], [], [], ["duplicate_id"]]


def test_generated_ids_do_not_collide_within_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "noid.json", [{"conversations": [H("q"), G(str(i))]} for i in range(20)])
    assert all(codes(c) == [] for c in check_all([path]))


def test_good_data_with_real_media_passes(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> None:
    path = write_json(sample_records, "good.json")
    roots = MediaRoots(str(llava_dir / "images"), str(llava_dir / "videos"))
    for deep in (False, True):
        checked = check_all([path], roots=roots, deep=deep)
        assert [codes(c) for c in checked] == [[]] * len(sample_records)
    assert checked[1].image_paths == (
        str((llava_dir / "images/coco/train2017/2.jpg").resolve()),
        str((llava_dir / "images/coco/train2017/3.jpg").resolve()),
    )
    assert checked[2].video_paths == (str((llava_dir / "videos/1.mp4").resolve()),)


def test_mixed_file_every_bad_record_and_no_false_alarm(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> None:
    secret = add_bad_media(llava_dir)
    values, expected, expected_deep = mixed_records(sample_records, secret)
    roots = MediaRoots(str(llava_dir / "images"), str(llava_dir / "videos"))
    for suffix in (".json", ".jsonl.gz"):
        path = write_json(values, f"mixed{suffix}")
        for deep, want in ((False, expected), (True, expected_deep)):
            checked = check_all([path], roots=roots, deep=deep)
            assert len(checked) == len(values)
            got = {i: sorted(codes(c)) for i, c in enumerate(checked)}
            assert got == want
            for i, c in enumerate(checked):
                assert c.index == i and c.file == str(path)
                for p in c.problems:
                    assert p.index == i and p.message.startswith(f"{path}, record {i}")


def test_allow_outside_root_accepts_absolute_dotdot_and_symlinks(
    llava_dir: Path, write_json: Callable[..., Path]
) -> None:
    secret = add_bad_media(llava_dir)
    paths = [str(secret), "../outside/secret.jpg", "coco/sneaky.jpg"]
    values = [
        {"id": f"o{i}", "image": p, "conversations": [H("<image>\nq"), G("a")]} for i, p in enumerate(paths)
    ]
    path = write_json(values, "outside.json")
    refused = check_all([path], roots=MediaRoots(str(llava_dir / "images")))
    assert [codes(c) for c in refused] == [["media_outside_root"]] * 3
    accepted = check_all(
        [path], roots=MediaRoots(str(llava_dir / "images"), allow_outside_root=True), deep=True
    )
    assert [codes(c) for c in accepted] == [[]] * 3
    assert {Path(c.image_paths[0]).resolve() for c in accepted} == {secret.resolve()}


def test_unreadable_media_message(llava_dir: Path, write_json: Callable[..., Path]) -> None:
    add_bad_media(llava_dir)
    path = write_json(
        [{"id": "v", "video": ["1.mp4", "still.mp4"], "conversations": [H("<video><video>"), G("a")]}],
        "v.json",
    )
    (checked,) = check_all([path], roots=MediaRoots(video_folder=str(llava_dir / "videos")))
    (p,) = checked.problems
    assert (p.code, p.field, p.id, p.index) == ("unreadable_media", "videos[1]", "v", 0)
    assert (
        "'still.mp4'" in p.message
        and "still image" in p.message
        and "replace or remove the file" in p.message
    )
    assert not checked.ok and checked.first_error == p


def test_check_media_off_and_readability_off(llava_dir: Path, write_json: Callable[..., Path]) -> None:
    add_bad_media(llava_dir)
    values = [
        {"id": "a", "image": "nope.jpg", "conversations": [H("<image>q"), G("a")]},
        {"id": "b", "image": "bad/text.jpg", "conversations": [H("<image>q"), G("a")]},
    ]
    path = write_json(values, "m.json")
    roots = MediaRoots(str(llava_dir / "images"))
    assert [codes(c) for c in check_all([path], roots=roots, check_media=False)] == [[], []]
    assert [codes(c) for c in check_all([path], roots=roots, check_readable=False)] == [["missing_media"], []]


def test_iter_checked_keeps_order_with_many_records(llava_dir: Path, write_json: Callable[..., Path]) -> None:
    names = ["coco/train2017/1.jpg", "coco/train2017/404.jpg", "ocr_vqa/cover.jpg", "bad/text.jpg"]
    add_bad_media(llava_dir)
    values = [{"id": i, "image": names[i % 4], "conversations": [H("<image>q"), G("a")]} for i in range(300)]
    path = write_json(values, "many.json")
    validator = Validator(roots=MediaRoots(str(llava_dir / "images")))
    checked = list(validator.iter_checked([str(path)], threads=4, window=8))
    assert [c.index for c in checked] == list(range(300))
    want = {0: [], 1: ["missing_media"], 2: [], 3: ["unreadable_media"]}
    assert [codes(c) for c in checked] == [want[i % 4] for i in range(300)]


def test_file_level_problem_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        '[{"id": 1, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, {"id":'
    )
    checked = check_all([path])
    assert [codes(c) for c in checked] == [[], ["invalid_json"]]
    assert checked[1].record is None and checked[1].index is None and checked[1].file == str(path)


# ---------------------------------------------------------------------------------------------- policies


def _checked_stream(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> tuple[list[CheckedRecord], list[Any]]:
    secret = add_bad_media(llava_dir)
    values, _, _ = mixed_records(sample_records, secret)
    path = write_json(values, "mixed.json")
    return check_all([path], roots=MediaRoots(str(llava_dir / "images"), str(llava_dir / "videos"))), values


def test_policy_raise_stops_at_the_first_error(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> None:
    checked, _ = _checked_stream(llava_dir, write_json, sample_records)
    counter = ProblemCounter()
    kept: list[Record] = []
    with pytest.raises(RecordError) as info:
        for c in checked:
            record = apply_policy(c, "raise", counter)
            assert record is not None
            kept.append(record)
    err = info.value
    first_bad = next(c for c in checked if not c.ok)
    assert isinstance(err, LlavaHFError)
    assert (err.file, err.index, err.code) == (first_bad.file, first_bad.index, first_bad.problems[0].code)
    assert err.id == first_bad.problems[0].id
    assert str(err) == first_bad.problems[0].message and "record" in str(err)
    assert len(kept) == counter.kept == first_bad.index


def test_policy_raise_on_a_whole_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{")
    (checked,) = check_all([path])
    with pytest.raises(RecordError) as info:
        apply_policy(checked, "raise", ProblemCounter())
    assert (info.value.code, info.value.index, info.value.file, info.value.id) == (
        "invalid_json",
        None,
        str(path),
        None,
    )


def test_policy_skip_counts_every_drop(
    llava_dir: Path, write_json: Callable[..., Path], sample_records: list[dict[str, Any]]
) -> None:
    checked, values = _checked_stream(llava_dir, write_json, sample_records)
    counter = ProblemCounter()
    kept = [r for c in checked if (r := apply_policy(c, "skip", counter)) is not None]
    assert len(kept) + counter.num_rejected == len(values) == len(checked)
    assert counter.kept == len(kept)
    expected_rejects = Counter(c.first_error.code for c in checked if c.first_error is not None)
    assert counter.rejected == expected_rejects
    assert set(counter.rejected) >= {
        "invalid_record",
        "missing_media",
        "media_outside_root",
        "unreadable_media",
    }
    assert counter.errors == Counter(p.code for c in checked for p in c.problems if p.is_error)
    assert counter.warnings == {"placeholder_added": 1, "ends_with_human": 1}
    # records with warnings only are kept, and kept fixed
    untagged = next(r for r in kept if r.id == "untagged")
    assert untagged.conversations[0].value.startswith("<image>\n")
    assert {r.id for r in kept} >= {str(v["id"]) for v in sample_records}


def test_records_round_trip_through_to_llava(tmp_path: Path, sample_records: list[dict[str, Any]]) -> None:
    path = write(tmp_path / "rt.json", sample_records)
    again = write(tmp_path / "rt2.json", [r.to_llava() for r, _ in iter_records(path) if r is not None])
    first = [r for r, _ in iter_records(path)]
    second = [r for r, _ in iter_records(again)]
    assert [(r.id, r.images, r.videos, r.conversations, r.extra) for r in first if r] == [
        (r.id, r.images, r.videos, r.conversations, r.extra) for r in second if r
    ]
    assert json.loads(again.read_text())[1]["id"] == "42"


def test_id_less_files_with_the_same_name_do_not_collide(tmp_path: Path) -> None:
    values = [{"conversations": [H("q"), G("a")]}]
    a = write(tmp_path / "a" / "train.json", values)
    b = write(tmp_path / "b" / "train.json", values)
    checked = check_all([a, b])
    assert [codes(c) for c in checked] == [[], []]
    assert [c.record.id for c in checked if c.record] == ["a/train-0", "b/train-0"]


def test_media_checks_run_in_worker_threads(llava_dir: Path, write_json: Callable[..., Path]) -> None:
    import threading

    seen: set[str] = set()

    class Recording(Validator):
        def check_readability(self, checked: CheckedRecord) -> CheckedRecord:
            seen.add(threading.current_thread().name)
            return super().check_readability(checked)

    values = [
        {"id": i, "image": "coco/train2017/1.jpg", "conversations": [H("<image>q"), G("a")]}
        for i in range(40)
    ]
    path = write_json(values, "t.json")
    validator = Recording(roots=MediaRoots(str(llava_dir / "images")))
    checked = list(validator.iter_checked([str(path)], threads=4, window=16))
    assert [codes(c) for c in checked] == [[]] * 40
    assert seen and threading.main_thread().name not in seen


# ------------------------------------------------------------------------------- two processes (validate_parallel)


def _split_items(llava_dir: Path, sample_records: list[dict[str, Any]]) -> list[Any]:
    """Records with every code, twice (each id used again in the second half), id-less records (their
    generated ids hold the index), and packs."""
    values, _, _ = mixed_records(sample_records, add_bad_media(llava_dir))
    idless = [
        {"image": "coco/train2017/1.jpg", "conversations": [H("<image>\nq"), G("a")]},
        {"image": "coco/train2017/404.jpg", "conversations": [H("<image>\nq"), G("a")]},
        {"conversations": "not a list"},
        [{"id": "p1", "conversations": [H("q"), G("a")]}, {"conversations": [H("q"), G("a"), H("q2")]}],
        [{"id": "p2", "conversations": [H("q"), G("a")]}, {"conversations": 7}],
    ]
    half = [*values, *idless, *idless]
    return [*half, {"id": "000000033471", "conversations": [H("q"), G("a")]}, *half]


def _problems_both_ways(
    path: Path, llava_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], ...]:
    from llava_hf import validate_parallel as _validate_pool

    roots = MediaRoots(str(llava_dir / "images"), str(llava_dir / "videos"))
    one = list(Validator(roots=roots).iter_checked([str(path)]))
    monkeypatch.setattr(_validate_pool, "SPLIT_MIN", 0)
    steps = list(_validate_pool.validate_files(Validator(roots=roots), [str(path)], processes=2))
    want = [p for c in one for p in c.problems]
    got = [p for s in steps for p in s.problems]
    counted = sum(c.record is not None or c.index is not None for c in one)
    return want, got, [counted, sum(s.records for s in steps)]


@pytest.mark.parametrize("name", ["data.json", "data.jsonl"])
def test_two_processes_report_what_one_does(
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    items = _split_items(llava_dir, sample_records)
    path = write_json(items, name)
    with caplog.at_level("DEBUG", logger="llava_hf"):
        want, got, (counted, records) = _problems_both_ways(path, llava_dir, monkeypatch)
    assert "checked in two processes" in caplog.text  # the file was split, and the split kept
    assert got == want  # codes, messages, indices, ids, fields, in the same order
    assert records == counted
    codes_found = {p.code for p in got}
    assert {
        "duplicate_id",
        "missing_media",
        "unreadable_media",
        "invalid_record",
        "placeholder_added",
    } <= codes_found
    second_half = [p for p in got if p.index is not None and p.index > len(items) // 2]
    assert any(p.code == "duplicate_id" for p in second_half)
    assert any(p.id is not None and p.id.startswith("data-") for p in second_half)  # generated ids, rebased


def test_two_processes_when_the_split_point_is_not_a_record(
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from llava_hf import validate_parallel as _validate_pool

    path = write_json(_split_items(llava_dir, sample_records), "data.json")
    real = _validate_pool.split_offset
    monkeypatch.setattr(_validate_pool, "split_offset", lambda f: (real(f) or 0) + 1)  # inside a record
    with caplog.at_level("DEBUG", logger="llava_hf"):
        want, got, (counted, records) = _problems_both_ways(path, llava_dir, monkeypatch)
    assert "no record starts at byte" in caplog.text
    assert got == want and records == counted


def test_two_processes_with_a_truncated_second_half(
    llava_dir: Path,
    write_json: Callable[..., Path],
    sample_records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_json(_split_items(llava_dir, sample_records), "data.json")
    path.write_bytes(path.read_bytes()[:-200])  # no closing ']': a problem of the whole file, at its end
    with caplog.at_level("DEBUG", logger="llava_hf"):
        want, got, (counted, records) = _problems_both_ways(path, llava_dir, monkeypatch)
    assert "a problem of the whole file" in caplog.text
    assert got == want and records == counted
    assert got[-1].code == "invalid_json" and got[-1].index is None
