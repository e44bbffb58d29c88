"""Mixtures: YAML parsing, seeded resolution, the mixture.json manifest."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from llava_hf.errors import InputFileError, LlavaHFError, UsageError
from llava_hf.mixture import (
    Mixture,
    MixtureSpec,
    SourceSpec,
    Strategy,
    iter_selected,
    load_mixture,
    parse_mixture,
    parse_strategy,
    resolve,
)


def spec(*sources: tuple[str, str] | tuple[str, str, float]) -> MixtureSpec:
    """A spec from (name, strategy[, repeat]) tuples."""
    return MixtureSpec(
        sources=tuple(
            SourceSpec(
                name=s[0],
                json_path=f"/data/{s[0]}.json",
                image_folder=None,
                video_folder=None,
                strategy=parse_strategy(s[1]),
                repeat=Fraction(str(s[2])) if len(s) > 2 else Fraction(1),
            )
            for s in sources
        )
    )


def rows_of(mixture: Mixture, name: str) -> list[int]:
    return [i for n, i in mixture.selection if n == name]


# ---------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    ("text", "kind", "number", "percent"),
    [
        ("all", "all", None, None),
        (" all ", "all", None, None),
        ("first:1000", "first", 1000, None),
        ("end:3", "end", 3, None),
        ("random:0", "random", 0, None),
        ("first:50%", "first", None, Fraction(50)),
        ("random:12.5%", "random", None, Fraction(25, 2)),
        ("end:100%", "end", None, Fraction(100)),
    ],
)
def test_parse_strategy_accepted_forms(
    text: str, kind: str, number: int | None, percent: Fraction | None
) -> None:
    strategy = parse_strategy(text)
    assert (strategy.kind, strategy.number, strategy.percent) == (kind, number, percent)
    assert parse_strategy(str(strategy)) == strategy  # the normalized text parses back to the same


@pytest.mark.parametrize(
    "text",
    [
        "",
        "some",
        "first",
        "first:",
        "first:-1",
        "last:10",
        "random:10.5",
        "first:0%",
        "random:101%",
        "first:1e3",
        "FIRST:10",
        "random:10%%",
        "first:10 %",
    ],
)
def test_parse_strategy_rejects_with_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_strategy(text, where="mix.yaml: datasets[2] (b.json)")
    message = str(info.value)
    assert "mix.yaml: datasets[2] (b.json)" in message
    assert repr(text) in message


def test_parse_strategy_error_lists_accepted_forms() -> None:
    with pytest.raises(
        UsageError, match=r"all \| first:N \| end:N \| random:N \| first:P% \| end:P% \| random:P%"
    ):
        parse_strategy("sample:10")
    with pytest.raises(UsageError, match="must be a string"):
        parse_strategy(1000)


@pytest.mark.parametrize(
    ("percent", "count", "expected"),
    [
        ("10", 0, 0),
        ("10", 1, 1),
        ("10", 9, 1),
        ("10", 10, 1),
        ("10", 11, 2),
        ("50", 7, 4),
        ("12.5", 8, 1),
        ("12.5", 9, 2),
        ("100", 13, 13),
        ("33", 100, 33),
        ("0.1", 738590, 739),
    ],
)
def test_percentages_round_up_like_llava_next(percent: str, count: int, expected: int) -> None:
    # LLaVA-NeXT: math.ceil(int(P) * len(data) / 100); we keep that count (exactly, also for decimals).
    assert Strategy("random", percent=Fraction(percent)).size(count) == expected
    assert expected == math.ceil(Fraction(percent) * count / 100)


# ---------------------------------------------------------------------------------------- resolution


def test_first_and_end_are_exact() -> None:
    mix = resolve(
        spec(("a", "first:3"), ("b", "end:2"), ("c", "first:40%"), ("d", "end:40%")),
        {"a": 10, "b": 10, "c": 10, "d": 10},
    )
    assert rows_of(mix, "a") == [0, 1, 2]
    assert rows_of(mix, "b") == [8, 9]
    assert rows_of(mix, "c") == [0, 1, 2, 3]
    assert rows_of(mix, "d") == [6, 7, 8, 9]
    assert [s.selected for s in mix.sources] == [3, 2, 4, 4]


def test_end_zero_takes_nothing_and_n_beyond_the_file_is_clipped(caplog: pytest.LogCaptureFixture) -> None:
    # LLaVA-NeXT's data[-0:] would take the whole file for end:0.
    mix = resolve(spec(("a", "end:0"), ("b", "first:50"), ("c", "random:50")), {"a": 5, "b": 5, "c": 5})
    assert rows_of(mix, "a") == []
    assert rows_of(mix, "b") == [0, 1, 2, 3, 4]
    assert rows_of(mix, "c") == [0, 1, 2, 3, 4]
    assert "asks for first:50 but /data/b.json has only 5 records" in caplog.text


def test_all_keeps_every_record_in_order() -> None:
    mix = resolve(spec(("a", "all"), ("b", "all")), {"a": 3, "b": 2})
    assert mix.selection == (("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1))
    assert mix.num_rows == 5


def test_same_seed_same_rows_another_seed_another_selection() -> None:
    s = spec(("a", "random:100"), ("b", "random:25%"))
    counts = {"a": 1000, "b": 400}
    first = resolve(s, counts, seed=7)
    assert resolve(s, counts, seed=7) == first
    other = resolve(s, counts, seed=8)
    assert rows_of(other, "a") != rows_of(first, "a")
    assert rows_of(other, "b") != rows_of(first, "b")
    for mix in (first, other):
        a = rows_of(mix, "a")
        assert len(a) == 100 and len(set(a)) == 100 and a == sorted(a) and all(0 <= i < 1000 for i in a)
        assert len(rows_of(mix, "b")) == 100


def test_sources_draw_independently() -> None:
    # Adding or changing another source does not move a source's own draw.
    alone = resolve(spec(("b", "random:10")), {"b": 100}, seed=3)
    with_other = resolve(spec(("a", "random:50%"), ("b", "random:10")), {"a": 77, "b": 100}, seed=3)
    assert rows_of(alone, "b") == rows_of(with_other, "b")


def test_selection_is_the_same_in_a_fresh_interpreter() -> None:
    # hash() of strings is salted per process; the selection must not depend on it.
    s = spec(("a", "random:20"), ("b", "random:33%", 1.5))
    mix = resolve(s, {"a": 500, "b": 90}, seed=11)
    code = (
        "import json,sys\n"
        "from fractions import Fraction\n"
        "from llava_hf.mixture import MixtureSpec, SourceSpec, parse_strategy, resolve\n"
        "s = MixtureSpec(sources=(SourceSpec('a','/data/a.json',None,None,parse_strategy('random:20')),"
        "SourceSpec('b','/data/b.json',None,None,parse_strategy('random:33%'),Fraction('1.5'))))\n"
        "print(json.dumps(resolve(s, {'a': 500, 'b': 90}, seed=11).to_dict()['selection']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(out.stdout) == [list(pair) for pair in mix.selection]


def test_random_covers_the_file_across_seeds() -> None:
    # Not a fixed pattern: over many seeds every record of a small file gets picked sometimes.
    seen: Counter[int] = Counter()
    for seed in range(200):
        seen.update(rows_of(resolve(spec(("a", "random:2")), {"a": 10}, seed=seed), "a"))
    assert set(seen) == set(range(10))
    assert min(seen.values()) > 10  # 400 picks over 10 records: each about 40 times


def test_whole_repeats_are_adjacent_copies() -> None:
    mix = resolve(spec(("a", "first:3", 2), ("b", "all", 3)), {"a": 10, "b": 2})
    assert rows_of(mix, "a") == [0, 0, 1, 1, 2, 2]
    assert rows_of(mix, "b") == [0, 0, 0, 1, 1, 1]
    assert [s.selected for s in mix.sources] == [6, 6]
    assert mix.indices_by_source() == {"a": [0, 0, 1, 1, 2, 2], "b": [0, 0, 0, 1, 1, 1]}


def test_fractional_repeat_adds_seeded_extra_copies() -> None:
    s = spec(("a", "all", 1.5))
    mix = resolve(s, {"a": 9}, seed=0)
    rows = rows_of(mix, "a")
    copies = Counter(rows)
    assert len(rows) == math.ceil(1.5 * 9) == 14
    assert set(copies) == set(range(9)) and sorted(Counter(copies.values()).items()) == [(1, 4), (2, 5)]
    assert rows == sorted(rows)
    assert resolve(s, {"a": 9}, seed=0) == mix
    assert {tuple(rows_of(resolve(s, {"a": 9}, seed=k), "a")) for k in range(10)} != {tuple(rows)}


def test_repeat_below_one_downsamples() -> None:
    rows = rows_of(resolve(spec(("a", "first:10", 0.3)), {"a": 100}), "a")
    assert len(rows) == 3 and len(set(rows)) == 3 and all(i < 10 for i in rows)


def test_resolve_rejects_missing_counts_and_bad_seeds() -> None:
    with pytest.raises(UsageError, match="no record count for source 'b'"):
        resolve(spec(("a", "all"), ("b", "all")), {"a": 1})
    with pytest.raises(UsageError, match="seed must be an integer"):
        resolve(spec(("a", "all")), {"a": 1}, seed="1")  # type: ignore[arg-type]


def test_iter_selected_streams_with_repeats_and_stops_early() -> None:
    consumed: list[int] = []

    def items() -> object:
        for i in range(100):
            consumed.append(i)
            yield i, f"r{i}"

    assert list(iter_selected([1, 1, 4, 7, 7, 7], items())) == ["r1", "r1", "r4", "r7", "r7", "r7"]  # type: ignore[arg-type]
    assert consumed == list(range(8))
    # A rejected record (index 4 missing from the reader's output) is skipped, not substituted.
    assert list(iter_selected([2, 4, 5], [(2, "a"), (3, "b"), (5, "c")])) == ["a", "c"]
    assert list(iter_selected([], [(0, "a")])) == []


# --------------------------------------------------------------------------------------- YAML parsing


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_yaml_paths_resolve_against_the_yaml_folder(tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path / "mixes" / "mix.yaml",
        "datasets:\n"
        "  - json_path: ../data/a.json\n"
        "    image_folder: ../images\n"
        "    video_folder: /abs/videos\n"
        '    sampling_strategy: "first:10"\n'
        "  - json_path: b.jsonl.gz\n"
        "    sampling_strategy: random:25%\n"
        "    repeat: 2\n"
        "  - json_path: c.json\n"
        "    name: extra\n",
    )
    parsed = parse_mixture(yaml_file)
    a, b, c = parsed.sources
    assert a.name == "a" and a.json_path == str(tmp_path / "data" / "a.json")
    assert a.image_folder == str(tmp_path / "images") and a.video_folder == "/abs/videos"
    assert str(a.strategy) == "first:10" and a.repeat == 1
    assert b.name == "b" and b.json_path == str(tmp_path / "mixes" / "b.jsonl.gz")
    assert b.image_folder is None and str(b.strategy) == "random:25%" and b.repeat == 2
    assert c.name == "extra" and c.strategy == Strategy("all")
    import hashlib

    assert parsed.sha256 == hashlib.sha256(yaml_file.read_bytes()).hexdigest()
    assert parsed.path == str(yaml_file)


def test_default_names_collide_then_use_parent_folders(tmp_path: Path) -> None:
    # LLaVA-NeXT's own gobi.yaml lists three files all called data_cleaned.json.
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n"
        "  - json_path: /d/LLaVA-ReCap-118K/data/data_cleaned.json\n"
        "  - json_path: /d/LLaVA-ReCap-558K/data/data_cleaned.json\n"
        "  - json_path: /d/other.json\n",
    )
    names = [s.name for s in parse_mixture(yaml_file).sources]
    assert names == ["LLaVA-ReCap-118K/data/data_cleaned", "LLaVA-ReCap-558K/data/data_cleaned", "other"]


def test_default_names_keep_the_dots_before_the_json_extensions(tmp_path: Path) -> None:
    """A source's default name (which seeds its sampler) strips only .json/.jsonl/.gz, unlike the
    stem of generated ids (``records.file_stem``)."""
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n  - json_path: /d/llava_v1.5_mix.json\n  - json_path: /d/Caps.JSONL.GZ\n",
    )
    names = [s.name for s in parse_mixture(yaml_file).sources]
    assert names == ["llava_v1.5_mix", "Caps"]


def test_duplicate_names_are_a_clear_error(tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n  - json_path: a.json\n    sampling_strategy: first:10%\n"
        "  - json_path: a.json\n    sampling_strategy: end:10%\n",
    )
    with pytest.raises(
        UsageError, match=r"datasets\[0\] and datasets\[1\] have the same source name 'a'"
    ) as info:
        parse_mixture(yaml_file)
    assert "name:" in (info.value.hint or "")
    explicit = write(
        tmp_path / "m2.yaml", "datasets:\n  - json_path: a.json\n  - json_path: b.json\n    name: a\n"
    )
    with pytest.raises(UsageError, match="same source name 'a'"):
        parse_mixture(explicit)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("datasets: []\n", "non-empty list"),
        ("- json_path: a.json\n", "mapping with a `datasets:` list"),
        ("datasets:\n  - a.json\n", r"datasets\[0\]: an entry must be a mapping"),
        ("datasets:\n  - image_folder: x\n", "json_path is missing"),
        (
            "datasets:\n  - json_path: a.json\n    sampling_stratgy: all\n",
            "unknown key.*sampling_stratgy.*accepted keys",
        ),
        (
            "datasets:\n  - json_path: a.json\n    sampling_strategy: sample:5\n",
            r"mix.yaml: datasets\[0\] \(a.json\): invalid sampling_strategy 'sample:5'; accepted forms: all \|",
        ),
        ("datasets:\n  - json_path: a.json\n    sampling_strategy: 1000\n", "must be a string"),
        ("datasets:\n  - json_path: a.json\n    repeat: 0\n", "repeat must be > 0"),
        ("datasets:\n  - json_path: a.json\n    repeat: many\n", "repeat must be a number"),
        ("datasets:\n  - json_path: a.json\nsampling: all\n", "unknown top-level key"),
    ],
)
def test_invalid_mixture_files(tmp_path: Path, text: str, match: str) -> None:
    yaml_file = write(tmp_path / "mix.yaml", text)
    with pytest.raises(UsageError, match=match) as info:
        parse_mixture(yaml_file)
    assert str(yaml_file) in str(info.value)


def test_broken_or_missing_yaml_is_an_input_file_error(tmp_path: Path) -> None:
    broken = write(tmp_path / "mix.yaml", "datasets:\n  - json_path: a.json\n   sampling_strategy: [all\n")
    with pytest.raises(InputFileError, match=r"mix.yaml is not valid YAML at line \d+, column \d+"):
        parse_mixture(broken)
    with pytest.raises(InputFileError, match="does not exist"):
        parse_mixture(tmp_path / "missing.yaml")
    assert issubclass(InputFileError, LlavaHFError)


# ------------------------------------------------------------------------------ with real source files


def write_sources(root: Path) -> Path:
    """Three sources: text-only JSON, image JSONL, a Qwen packed JSON (a list item holding 2 samples)."""
    text = [
        {"id": i, "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
        for i in range(12)
    ]
    write(root / "text.json", json.dumps(text))
    images = [
        {
            "id": f"img-{i}",
            "image": f"coco/{i}.jpg",
            "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
        }
        for i in range(8)
    ]
    write(root / "sub" / "images.jsonl", "".join(json.dumps(r) + "\n" for r in images))
    packed = [text[0], [text[1], text[2]], text[3]]
    write(root / "packed.json", json.dumps(packed))
    return write(
        root / "mix.yaml",
        "datasets:\n"
        "  - json_path: text.json\n    sampling_strategy: random:50%\n"
        "  - json_path: sub/images.jsonl\n    image_folder: images\n    sampling_strategy: end:3\n    repeat: 2\n"
        "  - json_path: packed.json\n",
    )


def test_load_mixture_counts_records_and_saves_a_manifest_that_reproduces_it(tmp_path: Path) -> None:
    yaml_file = write_sources(tmp_path)
    mix = load_mixture(yaml_file, seed=5)
    assert [(s.name, s.count, s.selected) for s in mix.sources] == [
        ("text", 12, 6),
        ("images", 8, 6),
        ("packed", 4, 4),
    ]
    assert rows_of(mix, "images") == [5, 5, 6, 6, 7, 7]
    assert rows_of(mix, "packed") == [0, 1, 2, 3]
    assert load_mixture(yaml_file, seed=5) == mix
    assert load_mixture(yaml_file, seed=6) != mix

    (tmp_path / "out").mkdir()
    manifest = mix.save(tmp_path / "out" / "mixture.json")
    data = json.loads(manifest.read_text())
    assert data["seed"] == 5 and data["num_rows"] == 16
    assert data["selection"][:1] == [["text", rows_of(mix, "text")[0]]]
    assert data["sources"][1] == {
        "name": "images",
        "json_path": str(tmp_path / "sub" / "images.jsonl"),
        "image_folder": str(tmp_path / "images"),
        "video_folder": None,
        "strategy": "end:3",
        "repeat": 2,
        "count": 8,
        "selected": 6,
    }
    import hashlib

    assert data["yaml_sha256"] == hashlib.sha256(yaml_file.read_bytes()).hexdigest()
    again = Mixture.from_file(manifest)
    assert again == mix
    assert again.indices_by_source() == mix.indices_by_source()
    assert not list((tmp_path / "out").glob("*.incomplete"))


def test_a_reformatted_manifest_still_reads(tmp_path: Path) -> None:
    mix = resolve(spec(("a", "random:30%", 1.5), ("b", "end:2")), {"a": 50, "b": 9}, seed=4)
    for text in (json.dumps(mix.to_dict(), indent=4), json.dumps(mix.to_dict()), mix.to_json()):
        (tmp_path / "mixture.json").write_text(text)
        assert Mixture.from_file(tmp_path / "mixture.json") == mix
    empty = resolve(spec(("a", "first:0")), {"a": 5})
    assert Mixture.from_file(empty.save(tmp_path / "empty.json")) == empty and empty.num_rows == 0


def test_fractional_repeat_survives_the_manifest(tmp_path: Path) -> None:
    mix = resolve(spec(("a", "random:12.5%", 2.25)), {"a": 40}, seed=1)
    assert Mixture.from_file(mix.save(tmp_path / "mixture.json")) == mix


def test_a_tampered_manifest_is_refused(tmp_path: Path) -> None:
    mix = resolve(spec(("a", "first:3"), ("b", "all")), {"a": 5, "b": 2})
    good = mix.to_dict()
    cases = [
        ({**good, "format_version": "9.0"}, "unsupported format_version"),
        ({**good, "seed": "x"}, "seed must be an integer"),
        ({**good, "selection": [*good["selection"], ["zzz", 0]]}, "unknown source 'zzz'"),
        ({**good, "selection": [["a", 0], ["a", 1], ["a", 9], ["b", 0], ["b", 1]]}, "out of range"),
        ({**good, "selection": good["selection"][1:]}, "selected=3, the selection has 2"),
        ({**good, "sources": [{"name": "a"}]}, "malformed sources"),
        (
            {**good, "selection": [["a", 1], ["a", 0], ["a", 2], ["b", 0], ["b", 1]]},
            "not in row order at \\['a', 0\\]",
        ),
        ({**good, "selection": [["b", 0], ["a", 0], ["a", 1], ["a", 2], ["b", 1]]}, "not in row order"),
        ({**good, "selection": [["a", 0, 1]]}, "malformed selection pair"),
    ]
    for data, match in cases:
        path = tmp_path / "mixture.json"
        path.write_text(json.dumps(data))
        with pytest.raises(InputFileError, match=match):
            Mixture.from_file(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputFileError, match="not valid JSON at line 1"):
        Mixture.from_file(tmp_path / "bad.json")


def test_a_missing_source_file_is_named(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "mix.yaml", "datasets:\n  - json_path: nowhere.json\n")
    with pytest.raises(LlavaHFError, match=r"nowhere\.json"):
        load_mixture(yaml_file)


def test_markdown_summary_lists_every_source(tmp_path: Path) -> None:
    mix = load_mixture(write_sources(tmp_path), seed=5)
    table = mix.to_markdown()
    assert "| images | images.jsonl | `end:3` | 2 | 8 | 6 |" in table
    assert "| text | text.json | `random:50%` | 1 | 12 | 6 |" in table
    assert "16 rows from 3 sources, seed 5." in table


# ------------------------------------------------------------------------------------- building it


def write_media_sources(root: Path) -> Path:
    """A text-only source, an image source (real JPEGs) and a video source (real MP4/AVI), plus the YAML."""
    import shutil

    real = Path(__file__).parent / "data" / "real"
    (root / "images" / "coco").mkdir(parents=True)
    (root / "videos").mkdir()
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        shutil.copy(real / name, root / "images" / "coco" / name)
    for name in ("1.mp4", "2.avi"):
        shutil.copy(real / name, root / "videos" / name)
    text = [
        {
            "id": f"t{i}",
            "conversations": [{"from": "human", "value": f"Say {i}."}, {"from": "gpt", "value": f"{i}"}],
        }
        for i in range(10)
    ]
    write(root / "text.json", json.dumps(text))
    images = [
        {
            "id": 100 + i,
            "image": f"coco/{name}",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"},
                {"from": "gpt", "value": name},
            ],
        }
        for i, name in enumerate(("1.jpg", "2.jpg", "3.jpg"))
    ]
    write(root / "data" / "images.jsonl", "".join(json.dumps(r) + "\n" for r in images))
    videos = [
        {
            "id": f"v{i}",
            "video": name,
            "conversations": [
                {"from": "human", "value": "<video>\nWhat happens?"},
                {"from": "gpt", "value": name},
            ],
        }
        for i, name in enumerate(("1.mp4", "2.avi"))
    ]
    write(root / "data" / "videos.json", json.dumps(videos))
    return write(
        root / "mix.yaml",
        "datasets:\n"
        "  - json_path: text.json\n    sampling_strategy: random:3\n"
        "  - json_path: data/images.jsonl\n    image_folder: images\n    sampling_strategy: first:2\n"
        "  - json_path: data/videos.json\n    video_folder: videos\n    sampling_strategy: end:1\n"
        "    name: clips\n",
    )


def test_text_image_and_video_sources_build_into_one_dataset(tmp_path: Path) -> None:
    import datasets

    from llava_hf import build_folder

    yaml_file = write_media_sources(tmp_path / "src")
    mix = load_mixture(yaml_file, seed=3)
    out = tmp_path / "out"
    result = build_folder(None, out, mixture=mix)
    assert result.num_rows == {"train": 6} and not result.rejected

    assert Mixture.from_file(out / "mixture.json") == mix
    manifest = json.loads((out / "llava_hf.json").read_text())
    assert manifest["mixture"] == "mixture.json"

    ds = datasets.load_dataset(str(out), split="train").cast_column(
        "videos", datasets.List(datasets.Video(decode=False))
    )
    rows = list(ds)
    expected_text = [f"t{i}" for i in rows_of(mix, "text")]
    assert [r["id"] for r in rows] == [*expected_text, "100", "101", "v1"]
    assert [r["source"] for r in rows] == ["text"] * 3 + ["images"] * 2 + ["clips"]
    assert [len(r["images"]) for r in rows] == [0, 0, 0, 1, 1, 0]
    assert rows[5]["videos"][0]["bytes"] == (tmp_path / "src" / "videos" / "2.avi").read_bytes()
    card = (out / "README.md").read_text()
    assert "| images | images.jsonl | `first:2` | 1 | 3 | 2 |" in card
    assert "6 rows from 3 sources, seed 3." in card


def test_a_repeated_record_builds_as_many_rows(tmp_path: Path) -> None:
    import datasets

    from llava_hf import build_folder

    text = [
        {"id": f"t{i}", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
        for i in range(4)
    ]
    write(tmp_path / "a.json", json.dumps(text))
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n  - json_path: a.json\n    sampling_strategy: end:2\n    repeat: 2\n",
    )
    mix = load_mixture(yaml_file)
    result = build_folder(None, tmp_path / "out", mixture=mix)
    assert result.num_rows == {"train": 4}, result.rejected
    ids = datasets.load_dataset(str(tmp_path / "out"), split="train")["id"]
    assert ids == ["t2", "t2", "t3", "t3"]


def test_a_packed_source_selects_samples_by_their_position(tmp_path: Path) -> None:
    # count_records counts the samples of a pack; the selection's index i is the i-th sample.
    import datasets

    from llava_hf import build_folder

    def sample(i: int) -> dict[str, object]:
        return {
            "id": f"s{i}",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        }

    write(
        tmp_path / "p_pack.json",
        json.dumps([[sample(0), sample(1)], [sample(2)], [sample(3), sample(4), sample(5)]]),
    )
    yaml_file = write(
        tmp_path / "mix.yaml", "datasets:\n  - json_path: p_pack.json\n    sampling_strategy: end:3\n"
    )
    mix = load_mixture(yaml_file)
    assert rows_of(mix, "p_pack") == [3, 4, 5]
    build_folder(None, tmp_path / "out", mixture=mix)
    ids = datasets.load_dataset(str(tmp_path / "out"), split="train")["id"]
    assert ids == ["s3", "s4", "s5"]


def test_a_mixture_split_into_many_shards_builds_alike_in_one_and_two_processes(tmp_path: Path) -> None:
    # one process builds from planning's own pass (the selection from each shard's start on), two
    # processes read each shard again with its part of the selection: the same rows, the same files
    import hashlib

    import datasets

    from llava_hf import build_folder

    def sample(i: int) -> dict[str, object]:
        return {
            "id": f"s{i}",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        }

    write(tmp_path / "plain.json", json.dumps([sample(i) for i in range(20)]))
    packs = [[sample(100 + 3 * k + j) for j in range(k % 3 + 1)] for k in range(9)]
    write(tmp_path / "packs.json", json.dumps(packs))
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n  - json_path: plain.json\n    sampling_strategy: random:7\n    repeat: 2\n"
        "  - json_path: packs.json\n    sampling_strategy: random:5\n",
    )
    mix = load_mixture(yaml_file, seed=11)
    samples = [s for pack in packs for s in pack]
    expected = [f"s{i}" for i in rows_of(mix, "plain")] + [
        str(samples[i]["id"]) for i in rows_of(mix, "packs")
    ]
    shards = []
    for num_proc in (1, 2):
        out = tmp_path / f"np{num_proc}"
        result = build_folder(None, out, mixture=mix, num_proc=num_proc, records_per_shard=3)
        assert not result.rejected
        assert datasets.load_dataset(str(out), split="train")["id"] == expected
        shards.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "data").iterdir()})
    assert shards[0] == shards[1]


def test_a_mixture_s_shards_are_sized_by_what_it_takes(tmp_path: Path) -> None:
    """max_shard_size: a record counts as often as the mixture takes it, and not at all when it is
    not taken (its JSON text is read, not written)."""
    from llava_hf.build.config import LlavaConfig
    from llava_hf.build.plan import iter_plan

    lines = [
        json.dumps(
            {
                "id": f"x{i}",
                "conversations": [{"from": "human", "value": "q" * (50 + i)}, {"from": "gpt", "value": "a"}],
            }
        )
        + "\n"
        for i in range(40)
    ]
    write(tmp_path / "a.jsonl", "".join(lines))
    yaml_file = write(
        tmp_path / "mix.yaml",
        "datasets:\n  - json_path: a.jsonl\n    sampling_strategy: first:30\n    repeat: 3\n",
    )
    mix = load_mixture(yaml_file, seed=0)
    limit = 1000
    starts, total = [0], 0
    for i, line in enumerate(lines):
        estimate = len(line) * (3 if i < 30 else 0)
        if i != starts[-1] and total + estimate > limit:
            starts.append(i)
            total = 0
        total += estimate
    config = LlavaConfig(mixture=mix, max_shard_size=limit, records_per_shard=10**6)
    planned = list(iter_plan(config))
    assert [p.spec.start_index for p in planned] == starts[: len(planned)]
    assert len(planned) == len(starts) - (starts[-1] >= 30)  # a shard that takes nothing is left out
    assert len(planned) > 3


def test_cli_build_with_a_mixture_writes_the_manifest(tmp_path: Path) -> None:
    from llava_hf.cli import main

    yaml_file = write_media_sources(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["build", "--mixture", str(yaml_file), "--seed", "11", "--output-dir", str(out)]) == 0
    assert Mixture.from_file(out / "mixture.json") == load_mixture(yaml_file, seed=11)
    bad = write(
        tmp_path / "bad.yaml", "datasets:\n  - json_path: src/text.json\n    sampling_strategy: top:5\n"
    )
    assert main(["build", "--mixture", str(bad), "--output-dir", str(tmp_path / "out2")]) == 2


def test_a_source_without_image_folder_uses_the_build_image_folder(tmp_path: Path) -> None:
    from llava_hf import build_folder

    yaml_file = write_media_sources(tmp_path / "src")
    text = yaml_file.read_text().replace("    image_folder: images\n", "")
    yaml_file.write_text(text)
    mix = load_mixture(yaml_file, seed=0)
    assert mix.source("images").image_folder is None
    result = build_folder(
        None, tmp_path / "out", image_folder=str(tmp_path / "src" / "images"), mixture=mix, on_error="skip"
    )
    assert result.num_rows == {"train": 6} and not result.rejected


def test_a_mixture_can_be_made_from_pairs_or_indices() -> None:
    mix = resolve(spec(("a", "random:5", 2), ("b", "all")), {"a": 20, "b": 3}, seed=2)
    assert Mixture(mix.seed, mix.sources, mix.selection) == mix
    assert Mixture(mix.seed, mix.sources, indices=[list(i) for i in mix.indices]) == mix
    assert repr(mix) == "Mixture(seed=2, rows=13: a=10, b=3)"
    with pytest.raises(ValueError, match="not in row order"):
        Mixture(0, mix.sources, [("b", 0), ("a", 1)])
    with pytest.raises(ValueError, match="unknown source 'zzz'"):
        Mixture(0, mix.sources, [("zzz", 0)])
    with pytest.raises(ValueError, match="either selection pairs or per-source indices"):
        Mixture(0, mix.sources)


def test_a_large_manifest_reads_back_across_blocks(tmp_path: Path) -> None:
    # more lines than one read block, with source changes inside blocks
    mix = resolve(
        spec(("a", "all"), ("b", "random:3"), ("c", "random:60%", 1.5)), {"a": 150_000, "b": 9, "c": 150_000}
    )
    path = mix.save(tmp_path / "mixture.json")
    assert Mixture.from_file(path) == mix
    assert mix.indices_of("b").tolist() == mix.indices_by_source()["b"]

    lines = path.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.strip().startswith('["a", 7]'))
    bad = tmp_path / "bad.json"
    bad.write_text("\n".join([*lines[:at], '    ["a", 9999999],', *lines[at + 1 :]]))
    with pytest.raises(InputFileError, match="record index 9999999 is out of range for source 'a'"):
        Mixture.from_file(bad)
    bad.write_text("\n".join([*lines[:at], '    ["a", seven],', *lines[at + 1 :]]))
    with pytest.raises(InputFileError, match="not valid JSON"):
        Mixture.from_file(bad)
    bad.write_text("\n".join([*lines[:at], lines[at + 1], lines[at], *lines[at + 2 :]]))
    with pytest.raises(InputFileError, match=r"not in row order at \['a', 7\]"):
        Mixture.from_file(bad)
