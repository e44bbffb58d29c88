"""Validation problems as data: a stable code, a severity, where it is, and a message that says the fix.

A :class:`Problem` is not an exception. The reader and the rules return problems; a policy
(``on_error="raise"`` or ``"skip"``) decides what happens to the record, and a
:class:`ProblemCounter` keeps the books so that nothing is ever dropped without being counted.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .jsontext import safe_text

__all__ = [
    "CODES",
    "ERROR_CODES",
    "WARNING_CODES",
    "OnError",
    "Problem",
    "ProblemCounter",
    "Severity",
]

Severity = Literal["error", "warning"]
OnError = Literal["raise", "skip"]

#: Stable error codes (users and tools match on these strings).
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the file, or one JSONL line, is not valid JSON, or a record is nested too deeply to read",
    "invalid_number": "a number is NaN, Infinity or -Infinity (not JSON), out of range, or too long to read",
    "invalid_text": "a string or key holds a lone UTF-16 surrogate escape (not Unicode text)",
    "invalid_record": "a record is not a JSON object, its id is neither a string nor an integer, or it has "
    "llava-hf's own key _llava_hf_pack or _llava_hf_layout",
    "invalid_conversations": "conversations/messages is missing, not a list, or empty",
    "invalid_turn": "a turn is not an object with a string from/role and value/content",
    "unknown_role": "a turn's role is not human, gpt or system (user/assistant are accepted aliases), nor a "
    "tool turn's (function_call, observation, tool_call, tool_response, tool)",
    "bad_turn_order": "a system turn only first; then human first; then strictly alternating",
    "empty_value": "a turn's text is empty",
    "invalid_media_field": "image/video is neither a string nor a list of strings (for videos: or of non-empty frame lists)",
    "placeholder_mismatch": "the number of <image>/<video> tags differs from the number of media",
    "placeholder_in_answer": "an <image>/<video> tag inside a gpt turn",
    "missing_media": "a media file does not exist",
    "unreadable_media": "a media file does not open as an image (Pillow) or a video (av)",
    "media_outside_root": "a media path is absolute or leaves its root folder",
    "remote_media": "a media path is an http(s) URL and remote media are not allowed (--allow-remote-media)",
    "remote_fetch_failed": "a media URL could not be fetched: an error, past --remote-timeout, or larger than "
    "--max-remote-bytes",
    "duplicate_id": "an id already used by an earlier record of the same split",
}

#: Stable warning codes: the record is kept.
WARNING_CODES: dict[str, str] = {
    "placeholder_added": "a record with media and no tag got its tags prepended to the first human turn",
    "ends_with_human": "the last turn is from human: nothing follows to learn from",
}

CODES: dict[str, str] = {**ERROR_CODES, **WARNING_CODES}


@dataclass(frozen=True)
class Problem:
    """One problem found in one record (``index`` is None for a problem of the whole file)."""

    code: str
    message: str
    file: str
    index: int | None = None
    id: str | None = None
    field: str | None = None
    severity: Severity = "error"

    def __post_init__(self) -> None:
        for name in ("message", "file", "id", "field"):  # a report line is always UTF-8 text
            text = getattr(self, name)
            if text is not None and safe_text(text) is not text:
                object.__setattr__(self, name, safe_text(text))
        if self.code not in CODES:
            raise ValueError(f"unknown problem code {self.code!r}; known codes: {sorted(CODES)}")
        expected: Severity = "error" if self.code in ERROR_CODES else "warning"
        if self.severity != expected:
            object.__setattr__(self, "severity", expected)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        """The report line: file, index, id, code, severity, message (and field)."""
        d = asdict(self)
        return {k: d[k] for k in ("file", "index", "id", "code", "severity", "field", "message")}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __str__(self) -> str:
        return self.message


def locate(file: str, index: int | None, id: str | None, field: str | None = None) -> str:
    """``data.json, record 12 (id '42'), field 'image'``: the prefix of every message."""
    parts = [file]
    if index is not None:
        parts.append(f"record {index}" + (f" (id {id!r})" if id is not None else ""))
    if field:
        parts.append(f"field {field!r}")
    return ", ".join(parts)


@dataclass
class ProblemCounter:
    """Counts problems by code and severity, and records kept/dropped, so the books always balance."""

    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    warnings: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    kept: int = 0

    def add(self, problem: Problem) -> None:
        (self.errors if problem.is_error else self.warnings)[problem.code] += 1

    def reject(self, problem: Problem) -> None:
        """A record dropped under ``on_error="skip"``, counted under its first error's code."""
        self.rejected[problem.code] += 1

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())
