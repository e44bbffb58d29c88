"""``build_folder``: LLaVA JSON + media → a folder in the Hub's layout that plain ``datasets`` loads.

::

    OUT/data/{split}-{i:05d}-of-{n:05d}.parquet   the rows (llava_hf.schema), media bytes as they are
    OUT/README.md                                  card: YAML configs, data_files, features; statistics
    OUT/preview.png                                contact sheet of the first images (when any)
    OUT/rejected.jsonl                             one line per dropped record (on_error="skip")
    OUT/mixture.json                               the resolved mixture (mixture builds)
    OUT/llava_hf.json                              manifest: format version, splits, counts

The rows come from :class:`~llava_hf.builder.LlavaBuilder`'s config, planning and generation, shard by shard
in ``num_proc`` processes; each original shard is written straight to Parquet with pyarrow (row groups
of 64 rows or 256 MB of media, media bytes neither compressed nor dictionary-encoded), so a file depends only on the
data, never on ``num_proc``, and an unchanged rebuild gives byte-identical shards. The whole folder is
written to ``OUT.incomplete`` and renamed at the end: an interrupted build leaves nothing that looks
complete.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import operator
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq

from . import __version__
from ._batches import RowBatch
from ._cardstats import FileStats, StatsCollector, text_column
from ._io import atomic_dir
from ._jsontext import safe_text
from ._logging import get_logger, tqdm
from ._parquet import writer_options
from .builder import LlavaConfig, PlannedShard, ShardSpec, _RowGenerator, input_splits, iter_plan
from .errors import LlavaHFError, UsageError
from .problems import OnError
from .schema import FORMAT_VERSION, OutputFormat, features_for

__all__ = ["SHARD_RE", "BuildResult", "build_folder", "read_manifest", "split_files"]

logger = get_logger(__name__)

MANIFEST = "llava_hf.json"
REJECTED = "rejected.jsonl"


@dataclass
class BuildResult:
    """What a build wrote: rows per split, the files, and every rejected record counted by code."""

    output_dir: Path
    num_rows: dict[str, int]
    files: dict[str, list[str]]
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    num_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())


def _parse_size(size: int | str) -> int:
    from datasets.utils.py_utils import convert_file_size_to_int

    try:
        return int(convert_file_size_to_int(size))
    except ValueError:
        raise UsageError(f"invalid size {size!r}", hint="write e.g. 500MB or 2GB") from None


def build_folder(
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None,
    output_dir: str | os.PathLike[str],
    *,
    image_folder: str | None = None,
    video_folder: str | None = None,
    num_proc: int | None = None,
    on_error: OnError = "raise",
    strict: bool = False,
    allow_outside_root: bool = False,
    deep: bool = False,
    max_shard_size: int | str = "500MB",
    format: OutputFormat = "conversations",
    mixture: Any = None,
    records_per_shard: int | None = None,
    content_defined_chunking: bool = False,
    page_index: bool = False,
) -> BuildResult:
    """Build LLaVA-format files into ``output_dir`` in the Hub layout (see the module docstring).

    ``content_defined_chunking``/``page_index`` turn on the Parquet options that help Xet deduplicate
    re-uploads of edited data (datasets' ``to_parquet`` default); they cost CPU (see benchmarks/).

    Raises:
        RecordError: a bad record with ``on_error="raise"`` (the output folder is not created).
        UsageError, InputFileError: bad options or inputs.
    """
    max_bytes = _parse_size(max_shard_size)
    out = Path(output_dir)
    _check_output_dir(out)
    _check_split_names(data_files)
    with tempfile.TemporaryDirectory(prefix="llava-hf-build-") as work:
        reports = Path(work) / "reports"
        reports.mkdir()
        config_kwargs: dict[str, Any] = {
            "image_folder": image_folder,
            "video_folder": video_folder,
            "on_error": on_error,
            "strict": strict,
            "allow_outside_root": allow_outside_root,
            "deep": deep,
            "format": format,
            "mixture": mixture,
            "report_dir": str(reports),
        }
        if records_per_shard is not None:
            config_kwargs["records_per_shard"] = records_per_shard
        # the config and planning of LlavaBuilder, without a DatasetBuilder (no cache folder, no
        # patching of modules for streaming: neither is used here)
        config = LlavaConfig(data_files=data_files, **config_kwargs)
        procs = max(1, num_proc or 1)
        writer = _ShardWriter(features_for(format), max_bytes, content_defined_chunking, page_index)
        with atomic_dir(out) as tmp:
            (tmp / "data").mkdir()
            result = BuildResult(output_dir=out, num_rows={}, files={})
            # shards are built as soon as planning has read them; one process builds each from
            # planning's own pass (the JSON is parsed once), workers read their part again
            plan = iter_plan(config, stream=procs == 1)
            shards: list[ShardSpec] = []
            parts: dict[str, list[_Part]] = {}
            for split, planned in itertools.groupby(plan, key=operator.attrgetter("split")):
                parts[split] = _write_split(config, split, planned, writer, tmp / "data", procs, shards)
            counts: dict[Path, FileStats] = {}
            for split in input_splits(config):  # every split, also one that planning found empty
                result.files[split], result.num_rows[split], result.num_bytes[split] = _name_shards(
                    split, parts.get(split, []), tmp, counts
                )
            _collect_reports(reports, shards, tmp / REJECTED, result)
            _refuse_empty_splits(result, tmp / REJECTED)
            if mixture is not None:
                mixture.save(tmp / "mixture.json")
            _write_manifest(tmp, result, format, data_files, mixture)
            _write_card(tmp, out.name, counts)
    _log_result(result)
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
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise UsageError(
            f"output folder {str(out)!r} exists and is not a llava-hf build (no {MANIFEST}); "
            f"refusing to replace it",
            hint="choose a new --output-dir, or remove that folder first",
        )


class _Part(NamedTuple):
    """A Parquet file a shard was written to: its rows, their size in memory, the card's counts."""

    path: Path
    rows: int
    nbytes: int
    stats: FileStats


@dataclass(frozen=True)
class _ShardWriter:
    """Writes row batches to Parquet with pyarrow: a row group per batch, media bytes stored as they are."""

    features: Any
    max_bytes: int
    content_defined_chunking: bool
    page_index: bool

    def write(self, batches: Iterator[RowBatch], prefix: Path) -> list[_Part]:
        """Write ``batches`` (a row group each) to ``prefix-00000.parquet``, ``prefix-00001.parquet``, ...

        A new file starts once one holds ``max_bytes``.
        """
        schema = self.features.arrow_schema
        options = writer_options(
            schema, content_defined_chunking=self.content_defined_chunking, page_index=self.page_index
        )
        texts = text_column(schema.names)
        parts: list[_Part] = []
        pa_writer: pq.ParquetWriter | None = None
        counter = StatsCollector(texts)
        path = Path()
        written_rows = written_bytes = 0
        try:
            for batch in batches:
                table = batch.to_table(schema)
                if pa_writer is None:
                    path = Path(f"{prefix}-{len(parts):05d}.parquet")
                    pa_writer = pq.ParquetWriter(path, schema, **options)
                pa_writer.write_table(table, row_group_size=len(batch))
                counter.add(table, batch.image_sizes)
                written_rows += table.num_rows
                written_bytes += table.nbytes
                del table  # before the next batch refills the buffers it wraps
                if written_bytes >= self.max_bytes:
                    pa_writer.close()
                    parts.append(_Part(path, written_rows, written_bytes, counter.finish()))
                    pa_writer, written_rows, written_bytes = None, 0, 0
                    counter = StatsCollector(texts)
        finally:
            if pa_writer is not None:
                pa_writer.close()
                parts.append(_Part(path, written_rows, written_bytes, counter.finish()))
        return parts


def _write_split(
    config: LlavaConfig,
    split: str,
    planned: Iterable[PlannedShard],
    writer: _ShardWriter,
    data_dir: Path,
    procs: int,
    shards: list[ShardSpec],
) -> list[_Part]:
    """Write the split's shards, each as soon as planning yields it (appended to ``shards``)."""
    results: list[list[_Part]] = []
    bar = tqdm(total=0, desc=f"Building {split}", unit=" shards")
    if procs > 1:  # a split of one shard is built here: a worker process would only add its start-up
        ahead = list(itertools.islice(planned, 2))
        procs = procs if len(ahead) > 1 else 1
        planned = itertools.chain(ahead, planned)

    def tasks() -> Iterator[tuple[int, _ShardTask]]:
        for k, shard in enumerate(planned):
            shards.append(shard.spec)
            results.append([])
            bar.total += 1  # shown at the next update (planning is far ahead of the writing)
            yield k, (config, shard, writer, data_dir / f".{split}-{k:05d}")

    try:
        if procs == 1:
            batch = RowBatch()  # its media buffers serve every shard
            for k, task in tasks():
                results[k] = _write_shard(task, batch)
                bar.update(1)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            )
            # Not multiprocessing.Pool: after an error its terminate() kills workers, and one killed while
            # sending a result holds the result queue's lock forever, so the build hung instead of failing.
            # With fork, the pool forks all its workers at the first submit (a split of one shard
            # never gets here, see above).
            executor = ProcessPoolExecutor(procs, mp_context=ctx)
            try:
                futures = [executor.submit(_write_shard_indexed, item) for item in tasks()]
                for future in as_completed(futures):
                    k, parts = future.result()
                    results[k] = parts
                    bar.update(1)
            finally:  # on an error: drop the shards not started, let running ones end (at most one each)
                executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return [part for parts in results for part in parts]


_ShardTask = tuple[LlavaConfig, PlannedShard, "_ShardWriter", Path]


def _write_shard(task: _ShardTask, batch: RowBatch) -> list[_Part]:
    config, shard, writer, prefix = task
    batches = _RowGenerator(config).batches(shard.spec, shard.duplicates, items=shard.items, batch=batch)
    return writer.write(batches, prefix)


#: A worker process's batch, whose media buffers serve every shard it writes (freed when it exits).
_worker_batch: RowBatch | None = None


def _write_shard_indexed(item: tuple[int, _ShardTask]) -> tuple[int, list[_Part]]:
    global _worker_batch
    if _worker_batch is None:
        _worker_batch = RowBatch()
    try:
        return item[0], _write_shard(item[1], _worker_batch)
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too: stop now, not after the next shard
        os._exit(130)
    except LlavaHFError:
        raise
    except Exception as err:  # keep the worker's message; the traceback does not cross processes well
        spec = item[1][1].spec
        raise LlavaHFError(
            f"building shard {spec.file} from record {spec.start_index} failed: {err!r}"
        ) from err


def _name_shards(
    split: str, parts: list[_Part], root: Path, counts: dict[Path, FileStats]
) -> tuple[list[str], int, int]:
    """Rename the parts to ``data/{split}-{i:05d}-of-{n:05d}.parquet`` (``counts``: their card's counts by new path)."""
    n = len(parts)
    names: list[str] = []
    for i, part in enumerate(parts):
        name = f"data/{split}-{i:05d}-of-{n:05d}.parquet"
        os.replace(part.path, root / name)
        names.append(name)
        counts[root / name] = part.stats
    return names, sum(p.rows for p in parts), sum(p.nbytes for p in parts)


def _refuse_empty_splits(result: BuildResult, rejected: Path) -> None:
    """A split with no rows cannot be loaded (datasets refuses an empty Parquet split): say why instead."""
    empty = [split for split, n in result.num_rows.items() if n == 0]
    if not empty:
        return
    why = "it has no records"
    if result.rejected:
        counts = ", ".join(f"{code}={n}" for code, n in sorted(result.rejected.items()))
        first = json.loads(_json_lines(rejected)[0])["message"]
        why = f"every record was rejected ({counts}); the first: {first}"
    raise LlavaHFError(
        f"split {empty[0]!r} would have no rows: {why}",
        hint="run 'llava-hf validate FILE --report problems.jsonl' to see every problem",
    )


def _json_lines(path: Path) -> list[str]:
    """The lines of a JSON-lines file. Not ``str.splitlines``: a JSON string may hold U+2028, U+0085 and
    the like unescaped (json.dumps with ensure_ascii=False), which it splits on."""
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _collect_reports(reports: Path, shards: list[ShardSpec], target: Path, result: BuildResult) -> None:
    """Merge the shards' reports: rejected records into ``rejected.jsonl`` (in input order), counts."""
    lines: list[str] = []
    for shard in shards:
        path = reports / f"{shard.uid}.jsonl"
        if not path.exists():
            continue
        for line in _json_lines(path):
            entry = json.loads(line)
            kind = entry.pop("kind")
            if kind == "rejected":
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


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``llava_hf.json`` manifest of a built folder ({} when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(
            f"{path}: the llava-hf manifest is not valid JSON ({err})",
            hint="rebuild the folder with `llava-hf build`, or delete the broken manifest",
        ) from err
    return data if isinstance(data, dict) else {}


SHARD_RE = re.compile(r"^(?P<split>\w+(?:\.\w+)*)-\d{5}-of-\d{5}\.parquet$")


def split_files(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """A built folder's Parquet files per split: from its manifest, else from ``data/`` file names.

    Raises ``UsageError`` when there is none, or when the manifest names files that are missing.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    by_split: dict[str, list[Path]] = {}
    splits = manifest.get("splits")
    if isinstance(splits, dict) and splits:
        for name, entry in splits.items():
            by_split[str(name)] = [root / f for f in (entry or {}).get("files", [])]
    else:
        for path in sorted((root / "data").glob("*.parquet")):
            match = SHARD_RE.match(path.name)
            if match:
                by_split.setdefault(match["split"], []).append(path)
    by_split = {k: sorted(v) for k, v in by_split.items() if v}
    if not by_split:
        raise UsageError(
            f"{root}: no Parquet shards found (expected data/{{split}}-00000-of-0000N.parquet)",
            hint="build the folder first: llava-hf build DATA.json --output-dir OUT",
        )
    missing = [str(p) for files in by_split.values() for p in files if not p.is_file()]
    if missing:
        raise UsageError(
            f"{root}: the manifest lists shards that do not exist: {', '.join(missing[:3])}",
            hint="the build was interrupted or files were moved: rebuild the folder",
        )
    return by_split


def _write_manifest(root: Path, result: BuildResult, format: str, data_files: Any, mixture: Any) -> None:
    inputs: list[str] = []
    if mixture is not None:
        inputs = [src.json_path for src in mixture.sources]
    elif isinstance(data_files, (str, os.PathLike)):
        inputs = [os.fspath(data_files)]
    elif isinstance(data_files, Mapping):
        for files in data_files.values():
            inputs.extend([files] if isinstance(files, str) else list(files))
    elif data_files is not None:
        inputs = [os.fspath(f) for f in data_files]
    manifest = {
        "format_version": FORMAT_VERSION,
        "llava_hf_version": __version__,
        "format": format,
        "splits": {
            split: {"num_rows": result.num_rows[split], "num_bytes": result.num_bytes[split], "files": files}
            for split, files in result.files.items()
        },
        "rejected": dict(sorted(result.rejected.items())),
        "warnings": dict(sorted(result.warnings.items())),
        "inputs": [os.path.basename(p) for p in inputs],
        "mixture": "mixture.json" if mixture is not None else None,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_card(root: Path, pretty_name: str, counts: dict[Path, FileStats]) -> None:
    """The card and its preview, from the counts made while writing (the files' text is not read again)."""
    from .card import make_card, make_preview

    preview = make_preview(root)
    if preview is not None:
        (root / "preview.png").write_bytes(preview)
    card = make_card(
        root,
        pretty_name=pretty_name,
        preview_path="preview.png" if preview is not None else None,
        counted=counts,
    )
    card.save(str(root / "README.md"))


def _log_result(result: BuildResult) -> None:
    rows = ", ".join(f"{split}: {n}" for split, n in result.num_rows.items())
    logger.info("built %s (%s rows)", result.output_dir, rows)
    if result.rejected:
        logger.warning(
            "rejected %d record(s): %s (listed in %s)",
            result.num_rejected,
            ", ".join(f"{c}={n}" for c, n in sorted(result.rejected.items())),
            result.output_dir / REJECTED,
        )
