"""A resolved mixture (:class:`Mixture`, :class:`MixtureSource`) and its ``mixture.json``: written with one
``[source, index]`` pair per line, read back in blocks of lines (or from any JSON with the same content)."""

from __future__ import annotations

import io
import itertools
import json
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import InputFileError
from .spec import _format_fraction, parse_strategy

MIXTURE_FORMAT_VERSION = "1.0"


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
