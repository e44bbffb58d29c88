"""``validate`` and ``build --on-error skip`` judge every record alike, and neither crashes.

Valid records are mutated (wrong types; strings with control characters, NUL, RTL marks, emoji, lone
surrogates, very long; huge, overflowing and non-finite numbers; nesting; odd keys; packs; media that
are missing, not what they say, outside their root, or URLs) and written as a JSON or JSONL file. The
records ``validate`` reports an error for must be exactly the records ``build`` rejects (by index,
as often, with the same first code), and nothing may raise but llava-hf's own errors.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_hf import build_folder
from llava_hf.errors import LlavaHFError
from llava_hf.media.files import MediaRoots
from llava_hf.validate import Validator
from tests.fixtures.http_server import HttpFolder
from tests.fixtures.media import REAL, make_jpeg
from tests.fixtures.records import SUFFIXES, G, H

#: Values written as raw JSON text in place of their marker string (json.dumps cannot write them)
RAW = {
    "@BIGINT@": "7" * 5000,  # more digits than Python's int() reads
    "@OVERFLOW@": "-1e999",  # a float out of range
    "@DEEP@": "[" * 3000 + "]" * 3000,  # deeper than Python's json reads
    "@HUGEINT@": "1" + "0" * 30,  # beyond 64 bits: valid, kept
}
_TEXT_CODES = ("invalid_json", "invalid_number", "invalid_text")  # problems found in an item's text
SENTINEL = {"id": "sentinel \u2295", "conversations": [H("q"), G("a")]}  # a split never ends up empty

ODD = [
    "\x00", "\x01", "\x1f", "\x7f", "\u200f", "\u202e", "\ufeff", "\u2028", "😀", "\U0001f408", "é",
    "\ud800", "\udc00", "\udbff\udfff", "\n", "\t", '"', "\\", "\\ud800", "<image>", "<video>", " ", "",
]  # fmt: skip
_odd_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(ODD) | st.characters(), max_size=8).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(ODD[:14]), st.integers(200, 2000)),  # very long
)
_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    st.sampled_from(sorted(RAW)),
)
_values = st.recursive(
    st.none() | st.booleans() | _numbers | _odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_odd_text, inner, max_size=3),
    max_leaves=8,
)
_keys = (
    st.sampled_from(
        ["id", "image", "images", "video", "videos", "conversations", "messages", "_llava_hf_pack", "", "ID"]
    )
    | _odd_text
)
_media = (
    st.sampled_from(
        [
            "ok.jpg",
            "missing.jpg",
            "text.jpg",
            "ok.mp4",
            "notes.mp4",
            "../outside.jpg",
            "/abs.jpg",
            "",
            " ",
            "sub/",
            "http://127.0.0.1:9/remote.jpg",  # a URL: remote_media (remote media are not allowed here)
        ]
    )
    | _odd_text
)


@st.composite
def _record(draw: st.DrawFn, k: int) -> Any:
    kind = draw(st.sampled_from(["text", "image", "video"]))
    record: dict[str, Any] = {"id": f"r{k}"}
    if kind == "image":
        record["image"] = "ok.jpg"
    elif kind == "video":
        record["video"] = "ok.mp4"
    tag = {"text": "", "image": "<image>\n", "video": "<video>\n"}[kind]
    if draw(st.integers(0, 4)) == 0:  # the messages layout, typed parts
        part = {"text": [], "image": [{"type": "image"}], "video": [{"type": "video"}]}[kind]
        record["messages"] = [
            {"role": "user", "content": [*part, {"type": "text", "text": "q"}]},
            {"role": "assistant", "content": "a"},
        ]
    else:
        record["conversations"] = [H(tag + "q"), G("a")]
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(["key", "turn", "del", "media", "extra", "id", "append"]))
        if mutation == "key":
            record[draw(_keys)] = draw(_values)
        elif mutation == "turn":
            turns = record.get("conversations")
            if isinstance(turns, list) and turns:
                t = draw(st.integers(0, len(turns) - 1))
                field = draw(st.sampled_from(["from", "value", "role", "content"]) | _odd_text)
                value = draw(_values | st.sampled_from(["human", "gpt", "system", "user", "bot"]))
                turns[t] = {**turns[t], field: value} if isinstance(turns[t], dict) else value
        elif mutation == "del":
            record.pop(draw(st.sampled_from(sorted(record))), None)
        elif mutation == "media":
            key = draw(st.sampled_from(["image", "images", "video", "videos"]))
            paths = draw(st.lists(_media, min_size=1, max_size=2))
            record[key] = paths[0] if len(paths) == 1 and draw(st.booleans()) else paths
        elif mutation == "append":
            turns = record.get("conversations", record.get("messages"))
            if isinstance(turns, list):
                role = draw(st.sampled_from(["human", "gpt", "system", "user", "assistant", "tool"]))
                turns.append({"from": role, "value": draw(_odd_text)})
        elif mutation == "extra":
            record[draw(_odd_text)] = draw(_values)
        else:
            record["id"] = draw(st.sampled_from(["r0", "r1", "r2"]) | _values)
    if draw(st.integers(0, 9)) == 0:  # a pack of samples (Qwen's pack_data.py)
        return [record, {"conversations": [H("q2"), G("a2")]}]
    return record


@st.composite
def _records(draw: st.DrawFn) -> list[Any]:
    n = draw(st.integers(1, 4))
    return [draw(_record(k)) for k in range(n)]


def _text(records: list[Any], jsonl: bool) -> str:
    """JSON text of the records: non-finite floats as NaN/Infinity, lone surrogates as \\u escapes."""
    dump = [json.dumps(r, allow_nan=True, ensure_ascii=True) for r in records]
    text = "\n".join(dump) + "\n" if jsonl else "[\n" + ",\n".join(dump) + "\n]"
    for marker, raw in RAW.items():
        text = text.replace(json.dumps(marker), raw)
    return text


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agreement")
    images, videos = root / "images", root / "videos"
    images.mkdir()
    videos.mkdir()
    make_jpeg(images / "ok.jpg", size=(32, 24))
    (images / "text.jpg").write_text("<html>404</html>")
    shutil.copy(REAL / "4.mp4", videos / "ok.mp4")
    (videos / "notes.mp4").write_text("not a video")
    make_jpeg(root / "outside.jpg", size=(32, 24))
    return {"images": images, "videos": videos}


def _validated(path: Path, media: dict[str, Path]) -> Counter[tuple[int | None, str]]:
    validator = Validator(roots=MediaRoots(str(media["images"]), str(media["videos"])))
    errors: Counter[tuple[int | None, str]] = Counter()
    for checked in validator.iter_checked([str(path)], threads=2):
        error = checked.first_error
        if error is not None:
            errors[(checked.index, error.code)] += 1
    return errors


def _rejected(
    path: Path, out: Path, media: dict[str, Path], items: list[Any]
) -> Counter[tuple[int | None, str]]:
    result = build_folder(
        str(path), out, image_folder=str(media["images"]), video_folder=str(media["videos"]), on_error="skip"
    )
    report = out / "rejected.jsonl"
    lines = (
        [json.loads(line) for line in report.read_text(encoding="utf-8").split("\n") if line]
        if report.exists()
        else []
    )
    assert sum(result.rejected.values()) == len(lines)
    # nothing dropped uncounted: a sample is kept or rejected; an item whose text a problem replaces
    # is one rejected record, a pack included (as a JSONL line that is not JSON)
    whole = {line["index"] for line in lines if line["code"] in _TEXT_CODES}
    samples = sum(
        len(item) if isinstance(item, list) and k not in whole else 1 for k, item in enumerate(items)
    )
    assert result.num_rows["train"] + result.num_rejected == samples
    return Counter((line["index"], line["code"]) for line in lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records(), suffix=st.sampled_from(SUFFIXES))
def test_validate_reports_an_error_exactly_for_the_records_build_rejects(
    media: dict[str, Path], records: list[Any], suffix: str
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        data = _text([*records, SENTINEL], ".jsonl" in suffix).encode("utf-8")
        path.write_bytes(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
        try:
            validated = _validated(path, media)
            rejected = _rejected(path, Path(d) / "out", media, [*records, SENTINEL])
        except LlavaHFError:  # llava-hf's own errors are allowed; nothing else is
            return
    assert validated == rejected
    assert all(index != len(records) for index, _ in rejected)  # the sentinel is kept


def test_validate_and_build_agree_on_fetched_remote_media(http_folder: HttpFolder, tmp_path: Path) -> None:
    """With remote media allowed: a URL that is fine, too big, too slow, missing or not an image, alone
    or beside a local path that is missing or unreadable; the same records, the same first codes."""
    make_jpeg(http_folder.root / "ok.jpg", size=(32, 24))
    make_jpeg(http_folder.root / "big.jpg", size=(640, 480))
    make_jpeg(http_folder.root / "slow" / "ok.jpg", size=(32, 24))
    (http_folder.root / "page.jpg").write_text("<html>404</html>")
    images = tmp_path / "images"
    make_jpeg(images / "ok.jpg", size=(32, 24))
    (images / "text.jpg").write_text("not an image")
    url = http_folder.url
    remote = [f"{url}/ok.jpg", f"{url}/big.jpg", f"{url}/slow/ok.jpg", f"{url}/gone.jpg", f"{url}/page.jpg"]
    pairs = [[r] for r in remote] + [[local, r] for local in ("missing.jpg", "text.jpg") for r in remote]
    pairs += [[r, "missing.jpg"] for r in remote[1:]]
    records = [
        {"id": f"r{k}", "images": paths, "conversations": [H("<image>" * len(paths) + "q"), G("a")]}
        for k, paths in enumerate(pairs)
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps([*records, SENTINEL]))
    limits: dict[str, Any] = {"allow_remote_media": True, "max_remote_bytes": 10_000, "remote_timeout": 0.5}
    validator = Validator(roots=MediaRoots(str(images), **limits))
    validated = Counter(
        (c.index, c.first_error.code)
        for c in validator.iter_checked([str(path)])
        if c.first_error is not None
    )
    out = tmp_path / "out"
    result = build_folder(str(path), out, image_folder=str(images), on_error="skip", **limits)
    lines = [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert validated == Counter((line["index"], line["code"]) for line in lines)
    assert {code for _, code in validated} == {"remote_fetch_failed", "missing_media", "unreadable_media"}
    assert result.num_rows["train"] == 2  # r0 (the URL that is fine) and the sentinel
