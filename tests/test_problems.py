"""Problems as data: stable codes, severities fixed by the code, report lines, the counter's books."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llava_hf.errors import LlavaHFError, RecordError
from llava_hf.problems import CODES, ERROR_CODES, WARNING_CODES, Problem, ProblemCounter, Severity, locate

# The codes issues 2 and 21 name, by severity: users and tools match on these strings.
ISSUE_ERRORS = {
    "invalid_json",
    "invalid_record",
    "invalid_conversations",
    "invalid_turn",
    "unknown_role",
    "bad_turn_order",
    "empty_value",
    "invalid_media_field",
    "placeholder_mismatch",
    "placeholder_in_answer",
    "missing_media",
    "unreadable_media",
    "media_outside_root",
    "duplicate_id",
    # issue 21: what Python's json reads but a build cannot keep
    "invalid_number",
    "invalid_text",
    # issue 22 (point 3): a record's own http(s) media
    "remote_media",
    "remote_fetch_failed",
}
ISSUE_WARNINGS = {"placeholder_added", "ends_with_human"}


def test_codes_are_exactly_the_issue_codes() -> None:
    assert set(ERROR_CODES) == ISSUE_ERRORS
    assert set(WARNING_CODES) == ISSUE_WARNINGS
    assert set(CODES) == ISSUE_ERRORS | ISSUE_WARNINGS
    assert all(isinstance(text, str) and text for text in CODES.values())


@pytest.mark.parametrize("code", sorted(CODES))
def test_severity_follows_the_code(code: str) -> None:
    expected = "error" if code in ERROR_CODES else "warning"
    given: Severity
    for given in ("error", "warning"):
        p = Problem(code, "m", "f.json", 0, "x", None, severity=given)
        assert p.severity == expected
        assert p.is_error == (expected == "error")


def test_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown problem code 'nope'"):
        Problem("nope", "m", "f.json")


def test_report_line_keys_and_values() -> None:
    p = Problem("missing_media", "données.json, record 3 (id 'é'): gone", "données.json", 3, "é", "images[0]")
    d = p.to_dict()
    assert list(d) == ["file", "index", "id", "code", "severity", "field", "message"]
    line = p.to_json()
    assert "\n" not in line
    assert "données" in line  # UTF-8, not \u escapes
    assert json.loads(line) == {
        "file": "données.json",
        "index": 3,
        "id": "é",
        "code": "missing_media",
        "severity": "error",
        "field": "images[0]",
        "message": "données.json, record 3 (id 'é'): gone",
    }
    assert str(p) == p.message


def test_whole_file_problem_has_null_index() -> None:
    p = Problem("invalid_json", "bad.json: invalid JSON: ...", "bad.json")
    assert json.loads(p.to_json())["index"] is None
    assert json.loads(p.to_json())["id"] is None


def test_locate() -> None:
    assert locate("a.json", None, None) == "a.json"
    assert locate("a.json", 0, None) == "a.json, record 0"
    assert locate("a.json", 12, "42") == "a.json, record 12 (id '42')"
    assert locate("a.json", 12, "42", "image") == "a.json, record 12 (id '42'), field 'image'"


def test_counter_books_balance() -> None:
    c = ProblemCounter()
    problems = [
        Problem("missing_media", "m", "f", 0, "a"),
        Problem("missing_media", "m", "f", 1, "b"),
        Problem("placeholder_added", "m", "f", 2, "c"),
        Problem("duplicate_id", "m", "f", 3, "a"),
    ]
    for p in problems:
        c.add(p)
    assert c.errors == {"missing_media": 2, "duplicate_id": 1}
    assert c.warnings == {"placeholder_added": 1}
    c.reject(problems[0])
    c.reject(problems[3])
    c.kept += 2
    assert c.rejected == {"missing_media": 1, "duplicate_id": 1}
    assert c.num_rejected == 2
    assert c.kept + c.num_rejected == 4


def test_record_error_carries_the_problem() -> None:
    p = Problem(
        "bad_turn_order",
        "d.json, record 4 (id 'x'), field 'conversations[0]': ...",
        "d.json",
        4,
        "x",
        "conversations[0]",
    )
    err = RecordError(p)
    assert isinstance(err, LlavaHFError)
    assert (err.file, err.index, err.id, err.code, err.field) == (
        "d.json",
        4,
        "x",
        "bad_turn_order",
        "conversations[0]",
    )
    assert err.problem is p
    assert str(err) == p.message
    assert err.hint and "skip" in err.hint


def test_a_problem_is_always_utf8_text() -> None:
    # a lone surrogate (a file name that is not UTF-8, an id read from "\\ud800") is written as its escape
    p = Problem("missing_media", "in /data/img\udcff: x", "d\udcff.json", 3, "q\ud800", "images[0]")
    assert (p.message, p.file, p.id) == ("in /data/img\\udcff: x", "d\\udcff.json", "q\\ud800")
    assert json.loads(p.to_json())["id"] == "q\\ud800"
    p.to_json().encode("utf-8")


def test_docs_list_every_code_with_its_severity() -> None:
    """docs/problems.md (linked from the README) has one row per code, no more."""
    text = (Path(__file__).parent.parent / "docs" / "problems.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| (error|warning) \|", text, flags=re.M))
    assert rows == {code: "error" if code in ERROR_CODES else "warning" for code in CODES}
