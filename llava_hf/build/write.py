"""Writing a split's planned shards: in this process, in ``num_proc`` worker processes, or (see
:mod:`llava_hf.build.ray_engine`) as Ray tasks. Each shard is written by :func:`write_shard` with the one core
(:class:`~llava_hf.build.rows.ShardRows`) and the one writer (:class:`~llava_hf.build.parquet.ShardWriter`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import LlavaHFError
from ..utils.logging import Progress
from ..utils.meter import ReadMeter
from ..utils.parallel import process_pool
from .batches import RowBatch
from .config import LlavaConfig, ShardSpec
from .parquet import ShardPart, ShardWriter
from .plan import PlannedShard
from .rows import ShardRows

__all__ = ["ShardResult", "ShardRunner", "ShardTask", "SplitTask", "write_shard", "write_split"]

#: One shard to write: the config, the planned shard, the writer, the prefix of its files' names, and the
#: fsspec file system that prefix is on (None: a local path).
ShardTask = tuple[LlavaConfig, PlannedShard, ShardWriter, str, Any]
#: A written shard: its index in the split, its files, and how many records it rejected.
ShardResult = tuple[int, list[ShardPart], int]
#: Writes the shards it is given elsewhere (Ray), yielding each one's result as it completes.
ShardRunner = Callable[[Iterable[tuple[int, ShardTask]]], Iterator[ShardResult]]


@dataclass(frozen=True)
class SplitTask:
    """What writing one split needs besides its shards."""

    config: LlavaConfig
    split: str
    writer: ShardWriter
    data_dir: str  # where the shards' files go: a local folder, or a path on ``fs``
    procs: int
    progress: Progress
    meter: ReadMeter  # how far planning has read: the position of a build that streams planning's pass
    runner: ShardRunner | None = None  # another engine's (Ray); None: this process or ``procs`` workers
    fs: Any = None  # the fsspec file system of ``data_dir`` (an output on a URL); None: local


def write_split(task: SplitTask, planned: Iterable[PlannedShard], shards: list[ShardSpec]) -> list[ShardPart]:
    """Write the split's shards, each as soon as planning yields it (appended to ``shards``).

    The progress bar moves in bytes of the input files: while one process streams planning's own
    pass, to where that pass has read; otherwise by each shard's share of its input once written.
    It counts the records of each shard, kept and rejected, as the summary does.
    """
    config, split, procs, progress, meter = task.config, task.split, task.procs, task.progress, task.meter
    results: list[list[ShardPart]] = []
    base = meter.position  # of the files before this split's
    done = 0  # input bytes of the shards written (when the position is not planning's)
    # a split of one shard is built here: a worker process would only add its start-up
    if procs > 1 and task.runner is None:
        ahead = list(itertools.islice(planned, 2))
        procs = procs if len(ahead) > 1 else 1
        planned = itertools.chain(ahead, planned)

    def tasks() -> Iterator[tuple[int, ShardTask]]:
        for k, shard in enumerate(planned):
            shards.append(shard.spec)
            results.append([])
            yield k, (config, shard, task.writer, f"{task.data_dir}/.{split}-{k:05d}", task.fs)

    if task.runner is not None:
        sizes: dict[int, int] = {}

        def sized() -> Iterator[tuple[int, ShardTask]]:
            for k, shard_task in tasks():
                sizes[k] = shard_task[1].input_bytes
                yield k, shard_task

        for k, parts, rejected in task.runner(sized()):
            results[k] = parts
            done += sizes[k]
            progress.update(done, records=sum(part.rows for part in parts) + rejected)
        return [part for parts in results for part in parts]

    if procs == 1:
        batch = RowBatch()  # its media buffers serve every shard
        for k, shard_task in tasks():
            streamed = shard_task[1].items is not None

            def written(rows: int, streamed: bool = streamed) -> None:
                progress.update(meter.position - base if streamed else None, records=rows)

            results[k], rejected = write_shard(shard_task, batch, written)
            done += shard_task[1].input_bytes
            progress.update(None if streamed else done, records=rejected)
        return [part for parts in results for part in parts]

    from concurrent.futures import Future, as_completed

    # Not multiprocessing.Pool: after an error its terminate() kills workers, and one killed while
    # sending a result holds the result queue's lock forever, so the build hung instead of failing.
    # With fork, the pool forks all its workers at the first submit (a split of one shard
    # never gets here, see above).
    executor = process_pool(procs)
    pending: dict[Future[ShardResult], int] = {}  # -> the shard's input bytes

    def collect(futures: Iterable[Future[ShardResult]]) -> None:
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


def write_shard(
    task: ShardTask, batch: RowBatch, written: Callable[[int], None] | None = None
) -> tuple[list[ShardPart], int]:
    """Write one shard; return its files and how many records it rejected. ``written(rows)`` after each batch."""
    config, shard, writer, prefix, fs = task
    generator = ShardRows(config)
    batches = generator.batches(shard.spec, shard.duplicates, items=shard.items, batch=batch)
    if written is not None:
        batches = _counted(batches, written)
    return writer.write(batches, lambda i: f"{prefix}-{i:05d}.parquet", fs=fs), generator.rejected


def _counted(batches: Iterator[RowBatch], written: Callable[[int], None]) -> Iterator[RowBatch]:
    for batch in batches:
        rows = len(batch)
        yield batch
        written(rows)  # once the writer took it


#: A worker process's batch, whose media buffers serve every shard it writes (freed when it exits).
_worker_batch: RowBatch | None = None


def _write_shard_indexed(item: tuple[int, ShardTask]) -> ShardResult:
    global _worker_batch
    if _worker_batch is None:
        _worker_batch = RowBatch()
    try:
        return (item[0], *write_shard(item[1], _worker_batch))
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too: stop now, not after the next shard
        os._exit(130)
    except LlavaHFError:
        raise
    except Exception as err:  # keep the worker's message; the traceback does not cross processes well
        spec = item[1][1].spec
        raise LlavaHFError(
            f"building shard {spec.file} from record {spec.start_index} failed: {err!r}"
        ) from err
