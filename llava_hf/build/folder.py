"""``build_folder``: LLaVA JSON + media → a folder in the Hub's layout that plain ``datasets`` loads.

::

    OUT/data/{split}-{i:05d}-of-{n:05d}.parquet   the rows (llava_hf.schema), media bytes as they are
    OUT/README.md                                  card: YAML configs, data_files, features; statistics
    OUT/preview.png                                contact sheet of the first images (when any)
    OUT/rejected.jsonl                             one line per dropped record (on_error="skip")
    OUT/mixture.json                               the resolved mixture (mixture builds)
    OUT/llava_hf.json                              manifest: format version, splits, counts

The rows come from :class:`~llava_hf.build.builder.LlavaBuilder`'s config, planning and generation, shard by shard
in ``num_proc`` processes; each original shard is one Parquet file, written straight with pyarrow (row groups
of 64 rows or 256 MB of media, media bytes neither compressed nor dictionary-encoded), so a file depends only on the
data, never on ``num_proc``, and an unchanged rebuild gives byte-identical shards. Planning ends a
shard before the record that would take the estimate of its output (its records' JSON text plus the
sizes of their media files) past ``max_shard_size``, or make it more than ``records_per_shard`` records
when that is given. The whole folder is
written in a working folder beside ``OUT`` and renamed at the end: an interrupted build leaves nothing
that looks complete, and a folder llava-hf did not make is never deleted (``llava_hf.utils.output``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import operator
import os
import posixpath
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LlavaHFError, UsageError
from ..jsontext import safe_text
from ..media.remote import DEFAULT_MAX_REMOTE_BYTES, DEFAULT_REMOTE_TIMEOUT, is_url, url_fs
from ..problems import OnError
from ..records.dataset_info import by_file, read_dataset_info
from ..schema import OutputFormat, features_for
from ..utils.logging import Progress, get_logger
from ..utils.meter import ReadMeter, file_size
from ..utils.output import atomic_dir, refuse_foreign_output
from ..utils.publish import Staging, published_folder
from .config import LlavaConfig, ShardSpec
from .layout import MANIFEST, REJECTED, SHARD_RE, read_manifest, split_files
from .manifest import one_media_root, write_card, write_manifest
from .parquet import HARD_LIMIT_FACTOR, ShardPart, ShardWriter, parse_shard_size
from .plan import input_splits, iter_plan
from .stats import FileStats, StatsCollector, text_column
from .write import ShardRunner, SplitTask, write_split

__all__ = ["SHARD_RE", "BuildResult", "build_folder", "read_manifest", "split_files"]

logger = get_logger(__name__)


@dataclass
class BuildResult:
    """What a build wrote: rows per split, the files, and every rejected record counted by code."""

    output_dir: Path | str  # a str when it is an fsspec URL
    num_rows: dict[str, int]
    files: dict[str, list[str]]
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    num_bytes: dict[str, int] = field(default_factory=dict)
    #: media fetched from http(s) URLs (allow_remote_media), and their bytes
    fetched: int = 0
    fetched_bytes: int = 0
    configs: dict[str, BuildResult] = field(default_factory=dict)  # several dataset= names: one each

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())


#: Records per file when ``records_per_shard`` is not given: a cap that does not bind in practice
#: (``max_shard_size`` decides), and keeps a file of tiny records from growing without end.
RECORDS_PER_FILE_CAP = 1_000_000


def build_folder(
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None,
    output_dir: str | os.PathLike[str],
    *,
    image_folder: str | None = None,
    video_folder: str | None = None,
    audio_folder: str | None = None,
    num_proc: int | None = None,
    on_error: OnError = "raise",
    strict: bool = False,
    task: str = "sft",
    allow_outside_root: bool = False,
    deep: bool = False,
    max_shard_size: int | str = "500MB",
    format: OutputFormat = "conversations",
    mixture: Any = None,
    records_per_shard: int | None = None,
    content_defined_chunking: bool = False,
    page_index: bool = False,
    wait: bool = False,
    dataset: str | Sequence[str] | None = None,
    allow_remote_media: bool = False,
    max_remote_bytes: int = DEFAULT_MAX_REMOTE_BYTES,
    remote_timeout: float = DEFAULT_REMOTE_TIMEOUT,
    engine: str = "local",
    ray_address: str | None = None,
) -> BuildResult:
    """Build LLaVA-format files into ``output_dir`` in the Hub layout (see the module docstring).

    A Parquet file takes an input's records in order while their estimated output (their JSON text
    plus the sizes of their media files) stays within ``max_shard_size`` (a record bigger than that
    alone gets a file of its own), and at most ``records_per_shard`` records when that is given: files
    come out close to ``max_shard_size``, not above it. Each file is a unit of parallel work (``num_proc``).
    ``content_defined_chunking``/``page_index`` turn on the Parquet options that help Xet deduplicate
    re-uploads of edited data (datasets' ``to_parquet`` default); they cost CPU (see benchmarks/).
    One run at a time writes to ``output_dir``: another one fails at once with
    :class:`~llava_hf.errors.OutputLockedError`, or ``wait=True`` waits for it.
    ``dataset``: ``data_files`` is LLaMA-Factory's ``dataset_info.json``; build its entry of this name
    (its file, read with the entry's columns and tags); several names: one config each
    (:func:`~llava_hf.build.configs.build_configs`). ``allow_remote_media``: fetch media given as
    http(s) URLs (at most ``max_remote_bytes`` each, within ``remote_timeout`` seconds) instead of
    rejecting them as ``remote_media``; the row keeps the URL as its path.

    ``data_files``, the media folders and ``output_dir`` may be fsspec URLs (``s3://``, ``gs://``, ``hf://``,
    ``file://``; ``http(s)://`` to read). An output on a URL is written under a temporary prefix beside it (the
    workers write their shards there themselves) and then published, the manifest and card last
    (:mod:`llava_hf.utils.publish`).
    ``engine="ray"``: each shard is a task of Ray Data (:mod:`llava_hf.build.ray_engine`) on the cluster at
    ``ray_address`` (or ``RAY_ADDRESS``), or on a local Ray with ``num_proc`` CPUs started for the build; the
    folder is the same as the local build's, byte for byte.

    Raises:
        RecordError: a bad record with ``on_error="raise"`` (the output folder is not created).
        UsageError, InputFileError: bad options or inputs.
    """
    options = {k: v for k, v in locals().items() if k not in ("data_files", "output_dir")}
    if is_url(os.fspath(output_dir)):
        url = os.fspath(output_dir)
        with published_folder(url, manifest=MANIFEST, last=(MANIFEST, "README.md")) as staging:
            result = _build(data_files, staging.local, load_path=url, staging=staging, **options)
        result.output_dir = url
    else:
        result = _build(data_files, output_dir, **options)
    _log_result(result)
    return result


def _build(
    data_files: Any,
    output_dir: str | os.PathLike[str],
    *,
    image_folder: str | None,
    video_folder: str | None,
    audio_folder: str | None,
    num_proc: int | None,
    on_error: OnError,
    strict: bool,
    task: str,
    allow_outside_root: bool,
    deep: bool,
    max_shard_size: int | str,
    format: OutputFormat,
    mixture: Any,
    records_per_shard: int | None,
    content_defined_chunking: bool,
    page_index: bool,
    wait: bool,
    dataset: str | Sequence[str] | None,
    allow_remote_media: bool,
    max_remote_bytes: int,
    remote_timeout: float,
    engine: str,
    ray_address: str | None,
    load_path: str | None = None,
    staging: Staging | None = None,
) -> BuildResult:
    """:func:`build_folder` into a local ``output_dir``; ``load_path``: the card's ``load_dataset`` path;
    ``staging``: the output is on a URL, and the shards and reports go to its temporary prefix."""
    max_bytes = parse_shard_size(max_shard_size)
    if engine not in ("local", "ray"):
        raise UsageError(f"unknown engine {engine!r}", hint="use engine='local' or engine='ray'")
    entries = None
    if dataset is not None:
        if not isinstance(data_files, (str, os.PathLike)):
            raise UsageError("dataset= needs data_files to be one dataset_info.json", hint="give its path")
        names = [dataset] if isinstance(dataset, str) else list(dataset)
        if len(names) > 1:
            from .configs import build_configs, options_of

            return build_configs(
                data_files, names, output_dir, load_path=load_path, staging=staging, **options_of(locals())
            )
        [entry] = read_dataset_info(data_files, names)
        data_files, entries = entry.file, by_file([entry])
    out = Path(output_dir)
    _check_output_dir(out)
    _check_split_names(data_files)
    config_kwargs: dict[str, Any] = {
        "image_folder": image_folder,
        "video_folder": video_folder,
        "audio_folder": audio_folder,
        "on_error": on_error,
        "strict": strict,
        "task": task,
        "allow_outside_root": allow_outside_root,
        "allow_remote_media": allow_remote_media,
        "max_remote_bytes": max_remote_bytes,
        "remote_timeout": remote_timeout,
        "deep": deep,
        "format": format,
        "mixture": mixture,
        "report_dir": None,  # set below, inside the output's working folder
        "max_shard_size": max_bytes,
        "records_per_shard": RECORDS_PER_FILE_CAP if records_per_shard is None else records_per_shard,
        "dataset_entries": entries,
    }
    # the config and planning of LlavaBuilder, without a DatasetBuilder (no cache folder, no
    # patching of modules for streaming: neither is used here)
    config = LlavaConfig(data_files=data_files, **config_kwargs)
    procs = max(1, num_proc or 1)
    schema = features_for(format).arrow_schema
    writer = ShardWriter(
        schema,
        max_bytes=HARD_LIMIT_FACTOR * max_bytes,
        content_defined_chunking=content_defined_chunking,
        page_index=page_index,
        stats=functools.partial(StatsCollector, text_column(schema.names)),
    )
    with contextlib.ExitStack() as stack:
        runner: ShardRunner | None = None
        if engine == "ray":
            from .ray_engine import ray_session, run_shards

            stack.enter_context(ray_session(ray_address, num_cpus=procs))
            runner = run_shards
        tmp = stack.enter_context(atomic_dir(out, wait=wait))
        # the shards' reports and files go to llava-hf's working folder beside the output (or to the
        # temporary prefix of a URL output, where every worker writes): a killed build leaves them
        # there, and the next build into the same output removes them
        if staging is None:
            (tmp.parent / "reports").mkdir()
            (tmp / "data").mkdir()
            config.report_dir, data_dir, fs = str(tmp.parent / "reports"), str(tmp / "data"), None
        else:
            staging.fs.makedirs(f"{staging.prefix}/data", exist_ok=True)
            config.report_dir, data_dir, fs = staging.url(".reports"), f"{staging.prefix}/data", staging.fs
        result = BuildResult(output_dir=out, num_rows={}, files={})
        # shards are built as soon as planning has read them; one process builds each from
        # planning's own pass (the JSON is parsed once), workers read their part again
        meter = ReadMeter()
        plan = iter_plan(config, stream=procs == 1 and runner is None, meter=meter)
        shards: list[ShardSpec] = []
        parts: dict[str, list[ShardPart]] = {}
        inputs = input_splits(config)
        for split, planned in itertools.groupby(plan, key=operator.attrgetter("split")):
            sizes = [file_size(spec.file) for spec in inputs[split]]
            total = None if None in sizes else sum(size or 0 for size in sizes)
            with Progress(f"Building {split}", total) as progress:
                split_task = SplitTask(config, split, writer, data_dir, procs, progress, meter, runner, fs)
                parts[split] = write_split(split_task, planned, shards)
                progress.finish()
        if fs is None:
            _check_visible([part for split_parts in parts.values() for part in split_parts])
        counts: dict[Path, FileStats] = {}
        for split in inputs:  # every split, also one that planning found empty
            result.files[split], result.num_rows[split], result.num_bytes[split] = _name_shards(
                split, parts.get(split, []), tmp, counts, staging
            )
        _collect_reports(config.report_dir, shards, tmp / REJECTED, result)
        _refuse_empty_splits(result, tmp / REJECTED)
        if mixture is not None:
            mixture.save(tmp / "mixture.json")
        one_root = mixture is None and one_media_root(data_files, image_folder, video_folder, audio_folder)
        write_manifest(tmp, result, format, data_files, mixture, (one_root, counts))
        write_card(tmp, out.name, counts, load_path, data_urls=None if staging is None else staging.urls())
    return result


def _check_split_names(data_files: Any) -> None:
    """Split names that datasets accepts (``\\w+(\\.\\w+)*``): a card naming another is unloadable."""
    if isinstance(data_files, Mapping):
        for name in data_files:
            if not re.fullmatch(r"\w+(\.\w+)*", str(name)):
                raise UsageError(
                    f"split name {name!r} is not valid: datasets accepts letters, digits, '_' and '.' "
                    f"(no '-' or spaces)",
                    hint="name it e.g. train, validation, test or train_extra",
                )


def _check_output_dir(out: Path) -> None:
    """A previous build is replaced; any other existing folder is refused (replacing deletes it)."""
    if safe_text(str(out)) != str(out):  # pyarrow opens its files by UTF-8 path
        raise UsageError(
            f"output folder {safe_text(str(out))!r} is not a valid UTF-8 path",
            hint="choose an --output-dir whose name is UTF-8",
        )
    refuse_foreign_output(out, manifest=MANIFEST)


def _name_shards(
    split: str, parts: list[ShardPart], root: Path, counts: dict[Path, FileStats], staging: Staging | None
) -> tuple[list[str], int, int]:
    """Name the parts ``data/{split}-{i:05d}-of-{n:05d}.parquet``: renamed under ``root``, or (a URL output)
    moved to that name only when ``staging`` is published; ``counts``: their card's counts by path under ``root``."""
    n = len(parts)
    names: list[str] = []
    for i, part in enumerate(parts):
        name = f"data/{split}-{i:05d}-of-{n:05d}.parquet"
        if staging is None:
            os.replace(part.path, root / name)
        else:
            staging.moves[name] = posixpath.relpath(part.path, staging.prefix)
        names.append(name)
        counts[root / name] = part.stats
    return names, sum(p.rows for p in parts), sum(p.nbytes for p in parts)


def _check_visible(parts: list[ShardPart]) -> None:
    """Every shard file is where its worker wrote it, as this process sees the file system: a Ray worker on
    another node writes a local ``output_dir`` on its own disk unless every node mounts it."""
    missing = [part.path for part in parts if not os.path.exists(part.path)]
    if missing:
        raise UsageError(
            f"{len(missing)} of the {len(parts)} shard file(s) the workers wrote are not on this machine's "
            f"file system (the first: {missing[0]}): the output folder is not shared by every node",
            hint="give --output-dir a folder every node mounts (NFS, a mounted bucket), or a URL (s3://, gs://)",
        )


def _refuse_empty_splits(result: BuildResult, rejected: Path) -> None:
    """A split with no rows cannot be loaded (datasets refuses an empty Parquet split): say why instead."""
    empty = [split for split, n in result.num_rows.items() if n == 0]
    if not empty:
        return
    why = "it has no records"
    if result.rejected:
        counts = ", ".join(f"{code}={n}" for code, n in sorted(result.rejected.items()))
        first = json.loads(_json_lines(rejected.read_text(encoding="utf-8"))[0])["message"]
        why = f"every record was rejected ({counts}); the first: {first}"
    raise LlavaHFError(
        f"split {empty[0]!r} would have no rows: {why}",
        hint="run 'llava-hf validate FILE --report problems.jsonl' to see every problem",
    )


def _json_lines(text: str) -> list[str]:
    """The lines of a JSON-lines text. Not ``str.splitlines``: a JSON string may hold U+2028, U+0085 and
    the like unescaped (json.dumps with ensure_ascii=False), which it splits on."""
    return [line for line in text.split("\n") if line]


def _collect_reports(reports: str, shards: list[ShardSpec], target: Path, result: BuildResult) -> None:
    """Merge the shards' reports (in the folder or under the URL ``reports``): rejected records into
    ``rejected.jsonl`` (in input order), counts."""
    lines: list[str] = []
    fs, folder = url_fs(reports) if is_url(reports) else (None, reports)
    for shard in shards:
        path = f"{folder}/{shard.uid}.jsonl"
        try:  # one read, no existence check first: a request less per shard on object storage
            data = Path(path).read_bytes() if fs is None else fs.cat_file(path)
        except FileNotFoundError:  # a shard that dropped nothing and warned of nothing
            continue
        for line in _json_lines(data.decode("utf-8")):
            entry = json.loads(line)
            kind = entry.pop("kind")
            if kind == "fetched":
                result.fetched += entry["count"]
                result.fetched_bytes += entry["bytes"]
            elif kind == "rejected":
                result.rejected[entry["code"]] += 1
                lines.append(
                    json.dumps(
                        {k: entry[k] for k in ("file", "index", "id", "code", "message")},
                        ensure_ascii=False,
                    )
                )
            else:
                result.warnings[entry["code"]] += 1
    if lines:
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _log_result(result: BuildResult) -> None:
    rows = ", ".join(f"{split}: {n}" for split, n in result.num_rows.items())
    logger.info("built %s (%s rows)", result.output_dir, rows)
    if result.rejected:
        logger.warning(
            "rejected %d record(s): %s (listed in %s)",
            result.num_rejected,
            ", ".join(f"{c}={n}" for c, n in sorted(result.rejected.items())),
            f"{result.output_dir}/{REJECTED}",
        )
    if result.fetched:
        logger.info("fetched %d remote media file(s), %d bytes", result.fetched, result.fetched_bytes)
