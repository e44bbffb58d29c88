"""Reproducible mixtures: a YAML list of LLaVA JSON files with sampling strategies, resolved with a seed.

The YAML has LLaVA-NeXT's shape (``llava/train/train.py`` reads the same file)::

    datasets:
      - json_path: llava_v1_5_mix665k.json     # relative paths resolve against the YAML's folder
        image_folder: images/                  # optional; else the build's --image-folder
        video_folder: videos/                  # optional
        audio_folder: audios/                  # optional
        sampling_strategy: "random:25%"        # optional, default "all"
        name: mix665k                          # optional, default: the file's stem (made unique)
        repeat: 2                              # optional up-sampling factor (> 0, may be fractional)

Strategies: ``all | first:N | end:N | random:N | first:P% | end:P% | random:P%`` (N an integer,
P a number in (0, 100], decimals allowed). A percentage of ``n`` records selects
``ceil(P * n / 100)`` records, exactly as LLaVA-NeXT computes it, so a YAML moved over from
LLaVA-NeXT selects the same number of rows. ``N`` larger than the file is clipped to the file (with a
warning), also as in LLaVA-NeXT.

Unlike LLaVA-NeXT and Qwen-VL (unseeded ``random.shuffle`` / ``random.sample`` on every rank), the
selection is a pure function of the YAML, the record counts and the seed: every source draws from its
own generator ``random.Random(f"{seed}:{name}")`` (string seeds are hashed with SHA-512, not
``hash()``, so they agree across processes and machines), and the sampler only uses
``Random.random()``, the one method whose sequence Python guarantees across versions.

Rows come out in YAML order of the sources; inside a source, in ascending record index (so the
builder streams each file once); a record picked ``k`` times appears ``k`` times, adjacent.
``repeat: r`` gives every selected record ``floor(r)`` copies, plus one more copy for
``ceil(r * selected) - floor(r) * selected`` of them drawn at random without replacement.

The resolved selection is saved as ``mixture.json`` (:meth:`Mixture.save`), which
:meth:`Mixture.from_file` reads back into an equal :class:`Mixture`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, TypeVar

from ..errors import InputFileError, UsageError
from ..records import distinct_names
from ..utils.logging import get_logger

__all__ = [
    "MIXTURE_FORMAT_VERSION",
    "Mixture",
    "MixtureSource",
    "MixtureSpec",
    "SourceSpec",
    "Strategy",
    "iter_selected",
    "load_mixture",
    "parse_mixture",
    "parse_strategy",
    "resolve",
    "spec_from_dict",
]

logger = get_logger(__name__)

MIXTURE_FORMAT_VERSION = "1.0"

ACCEPTED_STRATEGIES = "all | first:N | end:N | random:N | first:P% | end:P% | random:P%"
_ENTRY_KEYS = (
    "json_path",
    "image_folder",
    "video_folder",
    "audio_folder",
    "sampling_strategy",
    "name",
    "repeat",
)
_STRATEGY_RE = re.compile(r"^(first|end|random):(\d+(?:\.\d+)?)(%?)$")
_JSON_SUFFIXES = (".gz", ".jsonl", ".json")

Kind = Literal["all", "first", "end", "random"]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# strategies


@dataclass(frozen=True)
class Strategy:
    """One parsed ``sampling_strategy``: ``kind`` plus either a row ``number`` or a ``percent``."""

    kind: Kind
    number: int | None = None
    percent: Fraction | None = None

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.percent is not None:
            return f"{self.kind}:{_format_fraction(self.percent)}%"
        return f"{self.kind}:{self.number}"

    def size(self, count: int) -> int:
        """How many distinct records this strategy takes from a file of ``count`` records."""
        if self.kind == "all":
            return count
        if self.percent is not None:
            return min(count, math.ceil(self.percent * count / 100))
        assert self.number is not None
        return min(count, self.number)


def _format_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # Percentages come from decimal strings, so the denominator divides a power of ten.
    text = f"{float(value):.10f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else str(value)


def parse_strategy(text: Any, *, where: str = "sampling_strategy") -> Strategy:
    """Parse ``all | first:N | end:N | random:N | first:P% | end:P% | random:P%``.

    ``where`` names the YAML file and entry in the error message.

    Raises:
        UsageError: the value is not one of the accepted forms (the message lists them).
    """
    if not isinstance(text, str):
        raise UsageError(
            f"{where}: sampling_strategy must be a string, got {text!r}; accepted forms: {ACCEPTED_STRATEGIES}",
            hint='quote it in the YAML, e.g. sampling_strategy: "first:1000"',
        )
    value = text.strip()
    if value == "all":
        return Strategy("all")
    match = _STRATEGY_RE.match(value)
    if match is None:
        raise UsageError(
            f"{where}: invalid sampling_strategy {text!r}; accepted forms: {ACCEPTED_STRATEGIES} "
            "(N a whole number of records, P a percentage in (0, 100])",
            hint='for example sampling_strategy: "random:25%" or "first:1000"',
        )
    kind, amount, percent_sign = match.groups()
    if percent_sign:
        percent = Fraction(amount)
        if not 0 < percent <= 100:
            raise UsageError(
                f"{where}: invalid sampling_strategy {text!r}: a percentage must be in (0, 100]",
                hint="to up-sample a source, add `repeat: K` to its entry",
            )
        return Strategy(kind, percent=percent)  # type: ignore[arg-type]
    if "." in amount:
        raise UsageError(
            f"{where}: invalid sampling_strategy {text!r}: N must be a whole number of records "
            f"(or a percentage, {kind}:{amount}%); accepted forms: {ACCEPTED_STRATEGIES}"
        )
    return Strategy(kind, number=int(amount))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# the parsed YAML


@dataclass(frozen=True)
class SourceSpec:
    """One entry of the YAML, with paths resolved against the YAML's folder."""

    name: str
    json_path: str
    image_folder: str | None
    video_folder: str | None
    strategy: Strategy
    repeat: Fraction = Fraction(1)
    audio_folder: str | None = None


@dataclass(frozen=True)
class MixtureSpec:
    """A parsed mixture YAML: its sources in order, plus the file's path and sha256 (None if built in code)."""

    sources: tuple[SourceSpec, ...]
    path: str | None = None
    sha256: str | None = None


def _is_url(path: str) -> bool:
    return "://" in path


def _resolve_path(value: str, base: Path | None) -> str:
    expanded = os.path.expanduser(value)
    if _is_url(expanded) or os.path.isabs(expanded) or base is None:
        return expanded
    return os.path.normpath(str(base / expanded))


def _stem(path: str) -> str:
    name = PurePosixPath(path.replace("\\", "/")).name
    for suffix in _JSON_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path


def _default_names(paths: Sequence[str]) -> list[str]:
    """The file stem, or, where stems collide, the shortest trailing path that tells them apart.

    The same file listed twice keeps its stem: the duplicate-name check then asks for ``name:``.
    """
    return distinct_names(paths, _stem)


def _parse_repeat(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{where}: repeat must be a number > 0, got {value!r}")
    try:
        repeat = Fraction(str(value).strip())
    except ValueError:
        raise UsageError(f"{where}: repeat must be a number > 0, got {value!r}") from None
    if repeat <= 0:
        raise UsageError(
            f"{where}: repeat must be > 0, got {value!r}",
            hint="to leave a source out, remove its entry or comment it out",
        )
    return repeat


def _optional_str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def spec_from_dict(data: Any, *, path: str | None = None, sha256: str | None = None) -> MixtureSpec:
    """Validate a loaded YAML document (``{"datasets": [...]}``) into a :class:`MixtureSpec`.

    Relative paths resolve against ``path``'s folder (or stay as given when ``path`` is None).
    """
    label = path or "<mixture>"
    if not isinstance(data, dict) or "datasets" not in data:
        raise UsageError(
            f"{label}: a mixture file must be a mapping with a `datasets:` list, got "
            f"{type(data).__name__ if not isinstance(data, dict) else 'keys ' + ', '.join(map(str, data))}",
            hint="datasets:\n  - json_path: a.json\n    sampling_strategy: all",
        )
    unknown_top = sorted(str(k) for k in data if k != "datasets")
    if unknown_top:
        raise UsageError(
            f"{label}: unknown top-level key(s) {', '.join(unknown_top)}; only `datasets` is read"
        )
    entries = data["datasets"]
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{label}: `datasets` must be a non-empty list of entries with a json_path")
    base = Path(path).parent if path is not None else None

    parsed: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        where = f"{label}: datasets[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: an entry must be a mapping with json_path, got {entry!r}")
        where = f"{where} ({entry.get('name') or entry.get('json_path')!s})"
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(unknown)}; accepted keys: {', '.join(_ENTRY_KEYS)}"
            )
        json_path = _optional_str(entry, "json_path", where)
        if json_path is None:
            raise UsageError(f"{where}: json_path is missing")
        strategy_text = entry.get("sampling_strategy", "all")
        name = entry.get("name")
        if name is not None and (not isinstance(name, (str, int)) or not str(name).strip()):
            raise UsageError(f"{where}: name must be a non-empty string, got {name!r}")
        image_folder = _optional_str(entry, "image_folder", where)
        video_folder = _optional_str(entry, "video_folder", where)
        audio_folder = _optional_str(entry, "audio_folder", where)
        parsed.append(
            {
                "name": None if name is None else str(name).strip(),
                "json_path": _resolve_path(json_path, base),
                "image_folder": None if image_folder is None else _resolve_path(image_folder, base),
                "video_folder": None if video_folder is None else _resolve_path(video_folder, base),
                "audio_folder": None if audio_folder is None else _resolve_path(audio_folder, base),
                "strategy": parse_strategy(strategy_text, where=where),
                "repeat": _parse_repeat(entry.get("repeat", 1), where),
            }
        )

    defaults = _default_names([p["json_path"] for p in parsed])
    names = [p["name"] if p["name"] is not None else d for p, d in zip(parsed, defaults)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise UsageError(
                f"{label}: datasets[{seen[name]}] and datasets[{i}] have the same source name {name!r}; "
                "every source needs a unique name (it fills the `source` column and seeds its sampler)",
                hint=f"add `name: ...` to datasets[{i}] (for example `name: {name}_2`)",
            )
        seen[name] = i
    sources = tuple(
        SourceSpec(
            name=name,
            json_path=p["json_path"],
            image_folder=p["image_folder"],
            video_folder=p["video_folder"],
            strategy=p["strategy"],
            repeat=p["repeat"],
            audio_folder=p["audio_folder"],
        )
        for name, p in zip(names, parsed)
    )
    return MixtureSpec(sources=sources, path=path, sha256=sha256)


def parse_mixture(path: str | os.PathLike[str]) -> MixtureSpec:
    """Read and validate a mixture YAML file (no JSON file is opened).

    Raises:
        InputFileError: the YAML file is missing or not valid YAML.
        UsageError: the document is not a valid mixture (the message names the entry and the fix).
    """
    import yaml

    file = os.fspath(path)
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise InputFileError(
            f"mixture file {file} does not exist", file=file, hint="check the path of the mixture YAML"
        ) from None
    except OSError as err:
        raise InputFileError(f"cannot read mixture file {file}: {err}", file=file) from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputFileError(f"mixture file {file} is not UTF-8 text: {err}", file=file) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InputFileError(
            f"mixture file {file} is not valid YAML{where}: {problem}",
            file=file,
            hint='a strategy with a colon can be quoted: sampling_strategy: "first:1000"',
        ) from None
    return spec_from_dict(data, path=file, sha256=hashlib.sha256(raw).hexdigest())


# --------------------------------------------------------------------------------------------------
# the resolved mixture


@dataclass(frozen=True)
class MixtureSource:
    """One source of a resolved mixture.

    ``count`` is the number of records in the file; ``selected`` the number of rows the mixture takes
    from it (repeats included).
    """

    name: str
    json_path: str
    image_folder: str | None
    video_folder: str | None
    strategy: str
    repeat: Fraction
    count: int
    selected: int
    audio_folder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        repeat: int | str = (
            self.repeat.numerator if self.repeat.denominator == 1 else _format_fraction(self.repeat)
        )
        out: dict[str, Any] = {
            "name": self.name,
            "json_path": self.json_path,
            "image_folder": self.image_folder,
            "video_folder": self.video_folder,
            "strategy": self.strategy,
            "repeat": repeat,
            "count": self.count,
            "selected": self.selected,
        }
        if self.audio_folder is not None:  # manifests without audio stay as they were
            out["audio_folder"] = self.audio_folder
        return out


_CHUNK = 1 << 16
_SELECTION_MARKER = '"selection": ['


@dataclass(frozen=True, init=False)
class Mixture:
    """A mixture resolved with a seed: which record of which source goes into which row.

    Rows are the sources in order, each source's selected record indices ascending (a record picked
    ``k`` times appears ``k`` times, adjacent). ``indices[i]`` holds source ``i``'s indices as a compact
    ``array('q')`` (8 bytes a row, so a 10M-row mixture stays small); :attr:`selection` gives the same
    rows as ``(source name, record index)`` pairs. Record indices are 0-based positions in the source
    file, packed samples counted one by one, as :func:`llava_hf.records.count_records` counts them.

    Build one with :func:`resolve` / :func:`load_mixture` / :meth:`from_file`, or directly from either
    ``selection`` pairs (in row order) or per-source ``indices``.
    """

    seed: int
    sources: tuple[MixtureSource, ...]
    indices: tuple[array[int], ...]
    yaml_path: str | None
    yaml_sha256: str | None

    def __init__(
        self,
        seed: int,
        sources: Sequence[MixtureSource],
        selection: Iterable[tuple[str, int]] | None = None,
        yaml_path: str | None = None,
        yaml_sha256: str | None = None,
        *,
        indices: Sequence[Sequence[int]] | None = None,
    ) -> None:
        sources = tuple(sources)
        if (selection is None) == (indices is None):
            raise ValueError("give either selection pairs or per-source indices")
        if indices is not None:
            if len(indices) != len(sources):
                raise ValueError(f"{len(sources)} sources but {len(indices)} index arrays")
            arrays = tuple(idx if isinstance(idx, array) else array("q", idx) for idx in indices)
        else:
            assert selection is not None
            arrays = _group_selection(sources, selection)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "indices", arrays)
        object.__setattr__(self, "yaml_path", yaml_path)
        object.__setattr__(self, "yaml_sha256", yaml_sha256)

    def __repr__(self) -> str:
        names = ", ".join(f"{src.name}={len(idx)}" for src, idx in zip(self.sources, self.indices))
        return f"Mixture(seed={self.seed}, rows={self.num_rows}: {names})"

    @property
    def num_rows(self) -> int:
        return sum(len(idx) for idx in self.indices)

    @property
    def selection(self) -> tuple[tuple[str, int], ...]:
        """Every row as a ``(source name, record index)`` pair, in row order (built on each access)."""
        return tuple((src.name, i) for src, idx in zip(self.sources, self.indices) for i in idx)

    def source(self, name: str) -> MixtureSource:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)

    def indices_of(self, name: str) -> array[int]:
        """One source's selected indices (ascending, repeats included) as the compact array itself."""
        for src, idx in zip(self.sources, self.indices):
            if src.name == name:
                return idx
        raise KeyError(name)

    def indices_by_source(self) -> dict[str, list[int]]:
        """For each source (in order), its selected record indices, ascending, repeats included."""
        return {src.name: idx.tolist() for src, idx in zip(self.sources, self.indices)}

    def _head(self) -> dict[str, Any]:
        return {
            "format_version": MIXTURE_FORMAT_VERSION,
            "seed": self.seed,
            "yaml": self.yaml_path,
            "yaml_sha256": self.yaml_sha256,
            "num_rows": self.num_rows,
            "sources": [src.to_dict() for src in self.sources],
        }

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a dict: the seed, the sources, and ``selection`` as ``[name, index]`` pairs."""
        return {**self._head(), "selection": [[name, index] for name, index in self.selection]}

    def _write(self, f: Any) -> None:
        head = json.dumps(self._head(), indent=2, ensure_ascii=False)
        f.write(head[: head.rstrip().rfind("}")].rstrip() + ",\n  " + _SELECTION_MARKER)
        wrote = False
        for src, idx in zip(self.sources, self.indices):
            prefix = "\n    [" + json.dumps(src.name, ensure_ascii=False) + ", "
            for start in range(0, len(idx), _CHUNK):
                f.write(
                    ("," if wrote else "") + ",".join(f"{prefix}{i}]" for i in idx[start : start + _CHUNK])
                )
                wrote = True
        f.write("\n  ]\n}\n" if wrote else "]\n}\n")

    def to_json(self) -> str:
        """The manifest as JSON text, with one ``[source, index]`` pair per line."""
        buf = io.StringIO()
        self._write(buf)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``mixture.json`` (streamed to a temporary name, then renamed into place)."""
        from ..utils.output import atomic_text_file

        target = Path(path)
        with atomic_text_file(target) as f:
            assert f is not None
            self._write(f)
        return target

    @classmethod
    def from_dict(cls, data: Any, *, file: str = "<mixture.json>") -> Mixture:
        """Rebuild a mixture from :meth:`to_dict` output, checking that it is consistent."""
        if not isinstance(data, dict):
            raise _bad_manifest(file, "not a mixture manifest (expected a JSON object)")
        pairs = data.get("selection")
        if not isinstance(pairs, list):
            raise _bad_manifest(file, "selection must be a list of [source, index] pairs")

        def chunks() -> Iterator[tuple[str, array[int]]]:
            name: str | None = None
            run = array("q")
            for pair in pairs:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
                    raise _bad_manifest(file, f"malformed selection pair {pair!r}")
                if isinstance(pair[1], bool) or not isinstance(pair[1], int):
                    raise _bad_manifest(file, f"malformed selection pair {pair!r}")
                if pair[0] != name:
                    if name is not None:
                        yield name, run
                    name, run = pair[0], array("q")
                run.append(pair[1])
            if name is not None:
                yield name, run

        return _from_parts(data, chunks(), file)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Mixture:
        """Read a ``mixture.json`` written by :meth:`save` (or any JSON with the same content)."""
        file = os.fspath(path)
        try:
            with open(file, encoding="utf-8") as f:
                return _read_saved(f, file)
        except FileNotFoundError:
            raise InputFileError(f"mixture manifest {file} does not exist", file=file) from None
        except _NotSaveLayout:
            pass
        except UnicodeDecodeError as err:
            raise InputFileError(f"{file} is not UTF-8 text: {err}", file=file) from None
        text = Path(file).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputFileError(
                f"{file} is not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=file
            ) from None
        return cls.from_dict(data, file=file)

    def to_markdown(self) -> str:
        """A summary table for the dataset card: one line per source, then the seed and totals."""
        lines = [
            "| source | file | strategy | repeat | records | rows |",
            "|---|---|---|---|---|---|",
        ]
        for src in self.sources:
            repeat = src.to_dict()["repeat"]
            lines.append(
                f"| {src.name} | {PurePosixPath(src.json_path.replace(os.sep, '/')).name} | "
                f"`{src.strategy}` | {repeat} | {src.count:,} | {src.selected:,} |"
            )
        lines.append("")
        lines.append(f"{self.num_rows:,} rows from {len(self.sources)} sources, seed {self.seed}.")
        return "\n".join(lines)


def _group_selection(
    sources: Sequence[MixtureSource], pairs: Iterable[tuple[str, int]]
) -> tuple[array[int], ...]:
    """Per-source index arrays from ``(name, index)`` pairs in row order (ValueError otherwise)."""
    position = {src.name: i for i, src in enumerate(sources)}
    arrays = tuple(array("q") for _ in sources)
    current, last = 0, -1
    for name, index in pairs:
        i = position.get(name)
        if i is None:
            raise ValueError(f"the selection names an unknown source {name!r}")
        if i < current or (i == current and index < last):
            raise ValueError(
                f"the selection is not in row order at [{name!r}, {index}]: rows come source by source, "
                "in the sources' order, record indices ascending"
            )
        if i != current:
            current, last = i, -1
        arrays[i].append(index)
        last = index
    return arrays


def _bad_manifest(file: str, message: str) -> InputFileError:
    return InputFileError(
        f"{file}: {message}", file=file, hint="regenerate it with `llava-hf build --mixture`"
    )


class _NotSaveLayout(Exception):
    """The manifest is valid JSON but not in the one-pair-per-line layout of :meth:`Mixture.save`."""


def _read_saved(f: IO[str], file: str) -> Mixture:
    """Read a manifest in :meth:`Mixture.save`'s layout: the head, then one ``[name, index]`` per line.

    The selection is read in blocks of lines; a block whose lines all belong to one source (all but
    the blocks where the source changes) is converted by ``str`` and ``array`` operations alone, so a
    10M-row manifest reads in seconds with the index arrays as the only large objects. Raises
    :class:`_NotSaveLayout` when the text is laid out otherwise (hand-formatted JSON).
    """
    head_lines: list[str] = []
    for line in f:
        if line.strip() == _SELECTION_MARKER:
            break
        head_lines.append(line)
    else:
        raise _NotSaveLayout
    try:
        head = json.loads("".join(head_lines).rstrip().rstrip(",") + "\n}")
    except json.JSONDecodeError:
        raise _NotSaveLayout from None
    if not isinstance(head, dict):
        raise _NotSaveLayout

    def name_of(line: str) -> tuple[str, str]:
        item = line.strip()
        cut = item.rfind(", ")
        if cut < 0 or not item.startswith("["):
            raise _NotSaveLayout
        try:
            name = json.loads(item[1:cut])
        except json.JSONDecodeError:
            raise _NotSaveLayout from None
        if not isinstance(name, str):
            raise _NotSaveLayout
        return name, line[: line.index("[") + cut + 2]

    def numbers(text: str, prefix: str) -> array[int]:
        body = text.replace(prefix, " ").replace("],", " ").replace("]", " ")
        try:
            return array("q", map(int, body.split()))
        except ValueError:
            raise _NotSaveLayout from None

    def chunks() -> Iterator[tuple[str, array[int]]]:
        ended = False
        while True:
            lines = f.readlines(1 << 22)
            if not lines:
                break
            had_ended = ended
            while lines and lines[-1].strip() in ("", "}", "]"):
                ended = ended or lines[-1].strip() == "]"
                lines.pop()
            if lines and had_ended:
                raise _NotSaveLayout
            start = 0
            while start < len(lines):
                name, prefix = name_of(lines[start])
                block = "".join(lines[start:])
                if block.count(prefix) == len(lines) - start:
                    stop = len(lines)
                else:  # the source changes inside this block: find where, line by line
                    stop = start + 1
                    while stop < len(lines) and lines[stop].startswith(prefix):
                        stop += 1
                    block = "".join(lines[start:stop])
                run = numbers(block, prefix)
                if len(run) != stop - start:
                    raise _NotSaveLayout
                yield name, run
                start = stop
        if not ended:
            raise _NotSaveLayout

    return _from_parts(head, chunks(), file)


def _from_parts(data: dict[str, Any], chunks: Iterator[tuple[str, array[int]]], file: str) -> Mixture:
    """Check the manifest's head and its selection (runs of one source's indices, in row order)."""
    version = data.get("format_version")
    if not isinstance(version, str) or version.split(".")[0] != MIXTURE_FORMAT_VERSION.split(".")[0]:
        raise _bad_manifest(
            file, f"unsupported format_version {version!r} (this llava-hf reads {MIXTURE_FORMAT_VERSION})"
        )
    seed = data.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _bad_manifest(file, f"seed must be an integer, got {seed!r}")
    try:
        sources = tuple(
            MixtureSource(
                name=str(s["name"]),
                json_path=str(s["json_path"]),
                image_folder=None if s.get("image_folder") is None else str(s["image_folder"]),
                video_folder=None if s.get("video_folder") is None else str(s["video_folder"]),
                strategy=str(parse_strategy(s["strategy"], where=f"{file}: source {s['name']!r}")),
                repeat=Fraction(str(s.get("repeat", 1))),
                count=int(s["count"]),
                selected=int(s["selected"]),
                audio_folder=None if s.get("audio_folder") is None else str(s["audio_folder"]),
            )
            for s in data["sources"]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise _bad_manifest(file, f"malformed sources ({type(err).__name__}: {err})") from None
    position = {src.name: i for i, src in enumerate(sources)}
    if len(position) != len(sources):
        raise _bad_manifest(file, "two sources share a name")
    arrays = [array("q") for _ in sources]
    current, last = 0, -1
    for name, run in chunks:
        i = position.get(name)
        if i is None:
            raise _bad_manifest(file, f"the selection names an unknown source {name!r}")
        if not run:
            continue
        low, high = min(run), max(run)
        if low < 0 or high >= sources[i].count:
            bad = low if low < 0 else high
            raise _bad_manifest(
                file, f"record index {bad} is out of range for source {name!r} ({sources[i].count} records)"
            )
        if i < current or (i == current and run[0] < last) or run != array("q", sorted(run)):
            at = run[0] if i < current or (i == current and run[0] < last) else _first_drop(run)
            raise _bad_manifest(
                file,
                f"the selection is not in row order at [{name!r}, {at}]: rows come source by source, "
                "in the sources' order, record indices ascending",
            )
        if i != current:
            current = i
        arrays[i].extend(run)
        last = run[-1]
    for src, idx in zip(sources, arrays):
        if len(idx) != src.selected:
            raise _bad_manifest(
                file, f"source {src.name!r} says selected={src.selected}, the selection has {len(idx)}"
            )
    num_rows = data.get("num_rows", sum(len(a) for a in arrays))
    if num_rows != sum(len(a) for a in arrays):
        raise _bad_manifest(
            file, f"num_rows={num_rows} but the selection has {sum(len(a) for a in arrays)} pairs"
        )
    return Mixture(
        seed=seed,
        sources=sources,
        indices=tuple(arrays),
        yaml_path=data.get("yaml"),
        yaml_sha256=data.get("yaml_sha256"),
    )


def _first_drop(run: array[int]) -> int:
    """The first index of ``run`` that is smaller than the one before it."""
    for a, b in itertools.pairwise(run):
        if b < a:
            return b
    return run[0]


# --------------------------------------------------------------------------------------------------
# resolution


def _sample(rng: Any, n: int, k: int) -> set[int]:
    """``k`` distinct integers from ``range(n)`` (Floyd's algorithm), using only ``rng.random()``.

    ``Random.random()`` is the one method whose output Python keeps stable across versions for a
    given seed, so the sample is the same on every Python.
    """
    chosen: set[int] = set()
    for j in range(n - k, n):
        t = min(int(rng.random() * (j + 1)), j)
        chosen.add(j if t in chosen else t)
    return chosen


def _sorted_sample(rng: Any, n: int, k: int) -> array[int]:
    """A uniform random ``k``-subset of ``range(n)``, ascending; draws the smaller of it and its complement."""
    if k <= n - k:
        return array("q", sorted(_sample(rng, n, k)))
    left_out = _sample(rng, n, n - k)
    return array("q", (i for i in range(n) if i not in left_out))


def _select(strategy: Strategy, count: int, rng: Any) -> array[int]:
    size = strategy.size(count)
    if strategy.kind == "all" or size == count:
        return array("q", range(count))
    if strategy.kind == "first":
        return array("q", range(size))
    if strategy.kind == "end":
        return array("q", range(count - size, count))
    return _sorted_sample(rng, count, size)


def _with_repeats(indices: array[int], repeat: Fraction, rng: Any) -> array[int]:
    if repeat == 1:
        return indices
    whole = math.floor(repeat)
    extra_count = math.ceil(repeat * len(indices)) - whole * len(indices)
    extra = _sample(rng, len(indices), extra_count)
    out = array("q")
    for pos, index in enumerate(indices):
        out.extend([index] * (whole + (1 if pos in extra else 0)))
    return out


def resolve(spec: MixtureSpec, counts: Mapping[str, int], seed: int = 0) -> Mixture:
    """Resolve ``spec`` against the record ``counts`` of its sources (by source name) with ``seed``.

    A pure function: the same spec, counts and seed give the same :class:`Mixture` everywhere.

    Raises:
        UsageError: a count is missing or negative, or ``seed`` is not an integer.
    """
    import random

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"the mixture seed must be an integer, got {seed!r}")
    label = spec.path or "<mixture>"
    sources: list[MixtureSource] = []
    arrays: list[array[int]] = []
    for src in spec.sources:
        count = counts.get(src.name)
        if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(
                f"{label}: no record count for source {src.name!r} ({src.json_path}): got {count!r}"
            )
        strategy = src.strategy
        if strategy.number is not None and strategy.number > count:
            logger.warning(
                "%s: source %r asks for %s but %s has only %d records; taking all of them",
                label,
                src.name,
                strategy,
                src.json_path,
                count,
            )
        rng = random.Random(f"{seed}:{src.name}")
        indices = _with_repeats(_select(strategy, count, rng), src.repeat, rng)
        sources.append(
            MixtureSource(
                name=src.name,
                json_path=src.json_path,
                image_folder=src.image_folder,
                video_folder=src.video_folder,
                strategy=str(strategy),
                repeat=src.repeat,
                count=count,
                selected=len(indices),
                audio_folder=src.audio_folder,
            )
        )
        arrays.append(indices)
    return Mixture(
        seed=seed,
        sources=tuple(sources),
        indices=tuple(arrays),
        yaml_path=spec.path,
        yaml_sha256=spec.sha256,
    )


def load_mixture(path: str | os.PathLike[str], *, seed: int = 0) -> Mixture:
    """Parse the mixture YAML at ``path``, count each source's records, and resolve with ``seed``.

    Counting reads every source file once (incrementally, with :func:`llava_hf.records.count_records`).

    Raises:
        InputFileError: the YAML or a source file is missing or unreadable.
        UsageError: the YAML is not a valid mixture.
    """
    from ..records import count_records

    spec = parse_mixture(path)
    counts = {src.name: count_records(src.json_path) for src in spec.sources}
    return resolve(spec, counts, seed)


def iter_selected(indices: Sequence[int], items: Iterable[tuple[int, T]]) -> Iterator[T]:
    """Yield each item of ``items`` (``(record index, item)`` pairs in ascending index order) as many
    times as its index occurs in ``indices`` (sorted, as :meth:`Mixture.indices_by_source` gives).

    Stops reading ``items`` after the last wanted index, so a ``first:N`` source reads only its head.
    Indices with no matching item (a record the reader rejected) are simply not yielded.
    """
    if not indices:
        return
    pos = 0
    last = indices[-1]
    for index, item in items:
        while pos < len(indices) and indices[pos] < index:
            pos += 1
        while pos < len(indices) and indices[pos] == index:
            yield item
            pos += 1
        if index >= last or pos >= len(indices):
            return
