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

import functools
import itertools
import json
import operator
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import LlavaHFError, UsageError
from ..jsontext import safe_text
from ..problems import OnError
from ..records.dataset_info import by_file, read_dataset_info
from ..schema import FORMAT_VERSION, OutputFormat, features_for
from ..utils.logging import Progress, get_logger
from ..utils.meter import ReadMeter, file_size
from ..utils.output import atomic_dir, refuse_foreign_output
from ..utils.parallel import process_pool
from .batches import RowBatch
from .config import LlavaConfig, ShardSpec
from .layout import MANIFEST, REJECTED, SHARD_RE, read_manifest, split_files
from .parquet import HARD_LIMIT_FACTOR, ShardPart, ShardWriter, parse_shard_size
from .plan import PlannedShard, input_splits, iter_plan
from .rows import ShardRows
from .stats import FileStats, StatsCollector, text_column

__all__ = ["SHARD_RE", "BuildResult", "build_folder", "read_manifest", "split_files"]

logger = get_logger(__name__)


@dataclass
class BuildResult:
    """What a build wrote: rows per split, the files, and every rejected record counted by code."""

    output_dir: Path
    num_rows: dict[str, int]
    files: dict[str, list[str]]
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    num_bytes: dict[str, int] = field(default_factory=dict)
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
    (:func:`~llava_hf.build.configs.build_configs`).

    Raises:
        RecordError: a bad record with ``on_error="raise"`` (the output folder is not created).
        UsageError, InputFileError: bad options or inputs.
    """
    max_bytes = parse_shard_size(max_shard_size)
    entries = None
    if dataset is not None:
        if not isinstance(data_files, (str, os.PathLike)):
            raise UsageError("dataset= needs data_files to be one dataset_info.json", hint="give its path")
        names = [dataset] if isinstance(dataset, str) else list(dataset)
        if len(names) > 1:
            from .configs import build_configs, options_of

            return build_configs(data_files, names, output_dir, **options_of(locals()))
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
    with atomic_dir(out, wait=wait) as tmp:
        # the shards' reports go beside the output, in llava-hf's working folder: a killed build
        # leaves them there, and the next build into the same folder removes them
        reports = tmp.parent / "reports"
        reports.mkdir()
        config.report_dir = str(reports)
        (tmp / "data").mkdir()
        result = BuildResult(output_dir=out, num_rows={}, files={})
        # shards are built as soon as planning has read them; one process builds each from
        # planning's own pass (the JSON is parsed once), workers read their part again
        meter = ReadMeter()
        plan = iter_plan(config, stream=procs == 1, meter=meter)
        shards: list[ShardSpec] = []
        parts: dict[str, list[ShardPart]] = {}
        inputs = input_splits(config)
        for split, planned in itertools.groupby(plan, key=operator.attrgetter("split")):
            sizes = [file_size(spec.file) for spec in inputs[split]]
            total = None if None in sizes else sum(size or 0 for size in sizes)
            with Progress(f"Building {split}", total) as progress:
                split_task = _SplitTask(config, split, writer, tmp / "data", procs, progress, meter)
                parts[split] = _write_split(split_task, planned, shards)
                progress.finish()
        counts: dict[Path, FileStats] = {}
        for split in inputs:  # every split, also one that planning found empty
            result.files[split], result.num_rows[split], result.num_bytes[split] = _name_shards(
                split, parts.get(split, []), tmp, counts
            )
        _collect_reports(reports, shards, tmp / REJECTED, result)
        _refuse_empty_splits(result, tmp / REJECTED)
        if mixture is not None:
            mixture.save(tmp / "mixture.json")
        one_root = mixture is None and _one_media_root(data_files, image_folder, video_folder, audio_folder)
        _write_manifest(tmp, result, format, data_files, mixture, (one_root, counts))
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
    refuse_foreign_output(out, manifest=MANIFEST)


@dataclass(frozen=True)
class _SplitTask:
    """What writing one split needs besides its shards."""

    config: LlavaConfig
    split: str
    writer: ShardWriter
    data_dir: Path
    procs: int
    progress: Progress
    meter: ReadMeter  # how far planning has read: the position of a build that streams planning's pass


def _write_split(
    task: _SplitTask, planned: Iterable[PlannedShard], shards: list[ShardSpec]
) -> list[ShardPart]:
    """Write the split's shards, each as soon as planning yields it (appended to ``shards``).

    The progress bar moves in bytes of the input files: while one process streams planning's own
    pass, to where that pass has read; otherwise by each shard's share of its input once written.
    It counts the records of each shard, kept and rejected, as the summary does.
    """
    config, split, procs, progress, meter = task.config, task.split, task.procs, task.progress, task.meter
    results: list[list[ShardPart]] = []
    base = meter.position  # of the files before this split's
    done = 0  # input bytes of the shards written (when the position is not planning's)
    if procs > 1:  # a split of one shard is built here: a worker process would only add its start-up
        ahead = list(itertools.islice(planned, 2))
        procs = procs if len(ahead) > 1 else 1
        planned = itertools.chain(ahead, planned)

    def tasks() -> Iterator[tuple[int, _ShardTask]]:
        for k, shard in enumerate(planned):
            shards.append(shard.spec)
            results.append([])
            yield k, (config, shard, task.writer, task.data_dir / f".{split}-{k:05d}")

    if procs == 1:
        batch = RowBatch()  # its media buffers serve every shard
        for k, shard_task in tasks():
            streamed = shard_task[1].items is not None

            def written(rows: int, streamed: bool = streamed) -> None:
                progress.update(meter.position - base if streamed else None, records=rows)

            results[k], rejected = _write_shard(shard_task, batch, written)
            done += shard_task[1].input_bytes
            progress.update(None if streamed else done, records=rejected)
        return [part for parts in results for part in parts]

    from concurrent.futures import Future, as_completed

    # Not multiprocessing.Pool: after an error its terminate() kills workers, and one killed while
    # sending a result holds the result queue's lock forever, so the build hung instead of failing.
    # With fork, the pool forks all its workers at the first submit (a split of one shard
    # never gets here, see above).
    executor = process_pool(procs)
    pending: dict[Future[tuple[int, list[ShardPart], int]], int] = {}  # -> the shard's input bytes

    def collect(futures: Iterable[Future[tuple[int, list[ShardPart], int]]]) -> None:
        nonlocal done
        for future in futures:
            k, parts, rejected = future.result()
            results[k] = parts
            done += pending.pop(future)
            progress.update(done, records=sum(part.rows for part in parts) + rejected)

    try:
        for item in tasks():
            pending[executor.submit(_write_shard_indexed, item)] = item[1][1].input_bytes
            collect([future for future in pending if future.done()])  # progress while planning reads on
        collect(as_completed(list(pending)))
    finally:  # on an error: drop the shards not started, let running ones end (at most one each)
        executor.shutdown(wait=True, cancel_futures=True)
    return [part for parts in results for part in parts]


_ShardTask = tuple[LlavaConfig, PlannedShard, "ShardWriter", Path]


def _write_shard(
    task: _ShardTask, batch: RowBatch, written: Callable[[int], None] | None = None
) -> tuple[list[ShardPart], int]:
    """Write one shard; return its files and how many records it rejected. ``written(rows)`` after each batch."""
    config, shard, writer, prefix = task
    generator = ShardRows(config)
    batches = generator.batches(shard.spec, shard.duplicates, items=shard.items, batch=batch)
    if written is not None:
        batches = _counted(batches, written)
    return writer.write(batches, lambda i: f"{prefix}-{i:05d}.parquet"), generator.rejected


def _counted(batches: Iterator[RowBatch], written: Callable[[int], None]) -> Iterator[RowBatch]:
    for batch in batches:
        rows = len(batch)
        yield batch
        written(rows)  # once the writer took it


#: A worker process's batch, whose media buffers serve every shard it writes (freed when it exits).
_worker_batch: RowBatch | None = None


def _write_shard_indexed(item: tuple[int, _ShardTask]) -> tuple[int, list[ShardPart], int]:
    global _worker_batch
    if _worker_batch is None:
        _worker_batch = RowBatch()
    try:
        return (item[0], *_write_shard(item[1], _worker_batch))
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
    split: str, parts: list[ShardPart], root: Path, counts: dict[Path, FileStats]
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


def _one_media_root(data_files: Any, *folders: str | None) -> bool:
    """Whether every media path of the inputs resolves against one folder (the JSON files' own folder
    for a kind without its own root): export then keeps one media tree (Qwen-VL reads one data_path)."""
    roots = {f for f in folders if f is not None}
    if None in folders:
        roots |= {os.path.dirname(os.path.abspath(f)) for f in _input_paths(data_files)}
    if any("://" in r for r in roots):
        return False
    return len({os.path.realpath(r) for r in roots}) == 1


def _input_paths(data_files: Any) -> list[str]:
    if isinstance(data_files, (str, os.PathLike)):
        return [os.fspath(data_files)]
    if isinstance(data_files, Mapping):
        return [
            os.fspath(f)
            for files in data_files.values()
            for f in ([files] if isinstance(files, str) else files)
        ]
    return [os.fspath(f) for f in data_files or ()]


def _write_manifest(
    root: Path,
    result: BuildResult,
    format: str,
    data_files: Any,
    mixture: Any,
    media: tuple[bool, dict[Path, FileStats]],
) -> None:
    """``media``: whether the inputs had one media root, and the files' counts (each split's media kinds)."""
    one_root, counts = media
    inputs: list[str] = []
    if mixture is not None:
        inputs = [src.json_path for src in mixture.sources]
    else:
        inputs = _input_paths(data_files)
    manifest = {
        "format_version": FORMAT_VERSION,
        "llava_hf_version": __version__,
        "format": format,
        "splits": {
            split: {
                "num_rows": result.num_rows[split],
                "num_bytes": result.num_bytes[split],
                "files": files,
                "media_kinds": [
                    kind
                    for kind in ("images", "videos", "audios")
                    if any(getattr(counts[root / f].stats, kind) for f in files if root / f in counts)
                ],
            }
            for split, files in result.files.items()
        },
        "one_media_root": one_root,
        "rejected": dict(sorted(result.rejected.items())),
        "warnings": dict(sorted(result.warnings.items())),
        "inputs": [os.path.basename(p) for p in inputs],
        "mixture": "mixture.json" if mixture is not None else None,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_card(root: Path, pretty_name: str, counts: dict[Path, FileStats]) -> None:
    """The card and its preview, from the counts made while writing (the files' text is not read again)."""
    from ..card import make_card, make_preview

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
