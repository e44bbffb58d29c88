"""The mixture YAML parsed and checked: sampling strategies, :class:`SourceSpec`, :class:`MixtureSpec`."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from ..errors import InputFileError, UsageError
from ..records import distinct_names, file_stem

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

Kind = Literal["all", "first", "end", "random"]


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


def _default_names(paths: Sequence[str]) -> list[str]:
    """The file stem, or, where stems collide, the shortest trailing path that tells them apart.

    The same file listed twice keeps its stem: the duplicate-name check then asks for ``name:``.
    """
    return distinct_names(paths, functools.partial(file_stem, keep_dots=True))


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
