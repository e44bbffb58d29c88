"""The build on Ray Data: each planned original shard is one read task of a :class:`ray.data.Datasource`.

Two datasources share the planning of :mod:`llava_hf.build.plan` and the one core
(:class:`~llava_hf.build.rows.ShardRows`):

- :class:`LlavaDatasource` (``llava_hf.ray.read_llava``): a task yields the shard's rows as Arrow tables of
  the one schema (media bytes and relative paths), for a user's own Ray pipeline.
- :func:`run_shards` (``build_folder(engine="ray")``): a task writes its shard with
  :func:`~llava_hf.build.write.write_shard` into the build's working folder, and returns what the local
  build's worker returns (its files, their counts, its rejected records); the driver names the files,
  merges the counts, and writes the card and manifest as the local build does, so the folder is the same.

A task returns a bad record's error as a value: the driver raises it as the local build does, without
Ray's traceback. A worker that dies is retried by Ray Data (its tasks retry system failures); a retried
shard writes the same file names again, so no row is lost or written twice. This module imports ray:
only ``engine="ray"`` and :mod:`llava_hf.ray` import it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
from collections.abc import Iterable, Iterator, Set
from typing import Any

import pyarrow as pa

from ..errors import LlavaHFError, MissingDependencyError, UsageError
from ..schema import features_for
from ..utils.logging import get_logger
from ..utils.meter import ReadMeter
from .batches import RowBatch
from .config import LlavaConfig, ShardSpec
from .plan import input_splits, iter_plan
from .rows import ShardRows
from .write import ShardResult, ShardTask, write_shard

try:
    import ray
    import ray.data
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata
except ImportError as err:  # pragma: no cover - the [ray] extra is installed in CI
    raise MissingDependencyError("ray[data]", "ray", "the Ray engine (--engine ray, llava_hf.ray)") from err

__all__ = ["LlavaDatasource", "ray_session", "run_shards"]

logger = get_logger(__name__)


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the time of a build: the running one, the cluster at ``address`` (or ``RAY_ADDRESS``), or a
    local Ray with ``num_cpus`` CPUs started here and shut down at the end."""
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address is None:
        options.update(address="local", num_cpus=num_cpus)
    else:
        options["address"] = address
    ray.init(**options)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the build has its own
        yield
    finally:
        ray.shutdown()


def run_shards(items: Iterable[tuple[int, ShardTask]]) -> Iterator[ShardResult]:
    """Write each shard as a Ray Data task; yield each one's result as it completes (a
    :data:`~llava_hf.build.write.ShardRunner`)."""
    # the largest shards first: the small ones fill in at the end, so no worker is left with a big one
    tasks = sorted(items, key=lambda item: -item[1][1].input_bytes)
    if not tasks:
        return
    # Ray Data reserves a share of the cluster for each operator of a pipeline (half of it by default), and
    # one operator alone then started its tasks one at a time until the first ended: this pipeline has one
    # operator and nothing downstream to reserve for, so every free CPU takes a shard at once.
    context = ray.data.DataContext.get_current()
    reserving = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        dataset = ray.data.read_datasource(_ShardWrites(tasks), override_num_blocks=len(tasks))
        for row in dataset.iter_rows():
            outcome = pickle.loads(row["outcome"])
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome
    finally:
        context.op_resource_reservation_enabled = reserving


class _ShardWrites(Datasource):
    """One read task per shard; each writes its shard and yields one row: the pickled result or error."""

    def __init__(self, tasks: list[tuple[int, ShardTask]]) -> None:
        self.tasks = tasks

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_name(self) -> str:
        return "WriteLlavaShards"

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        meta = BlockMetadata(num_rows=1, size_bytes=None, exec_stats=None, input_files=None)
        return [ReadTask(functools.partial(_write_one, item), meta) for item in self.tasks]


#: A worker's batch, whose media buffers serve every shard it writes (as the local build's workers keep theirs).
_worker_batch: RowBatch | None = None


def _write_one(item: tuple[int, ShardTask]) -> list[pa.Table]:
    global _worker_batch
    if _worker_batch is None:
        _worker_batch = RowBatch()
    k, task = item
    outcome: Any
    try:
        outcome = (k, *write_shard(task, _worker_batch))
    except LlavaHFError as err:
        outcome = err
    except Exception as err:  # keep the worker's message, as the local build's workers do
        spec = task[1].spec
        outcome = LlavaHFError(f"building shard {spec.file} from record {spec.start_index} failed: {err!r}")
    return [pa.table({"outcome": pa.array([pickle.dumps(outcome)], pa.binary())})]


class LlavaDatasource(Datasource):
    """The records of one ``split`` of those ``config`` names, as a :class:`ray.data.Datasource`: one read
    task per planned original shard, yielding Arrow tables of the one schema (media bytes and relative paths)."""

    def __init__(self, config: LlavaConfig, *, split: str = "train") -> None:
        splits = list(input_splits(config))
        if split not in splits:
            raise UsageError(
                f"no split {split!r} in the inputs (they have: {', '.join(splits)})",
                hint=f"pass split= one of {', '.join(repr(s) for s in splits)}",
            )
        self.config = config
        self.planned = [
            (shard.spec, frozenset(shard.duplicates), shard.input_bytes)
            for shard in iter_plan(config, meter=ReadMeter())
            if shard.split == split
        ]

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(size for _, _, size in self.planned) or None

    def get_name(self) -> str:
        return "ReadLlava"

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        tasks = []
        for spec, duplicates, size in self.planned:
            meta = BlockMetadata(
                num_rows=None, size_bytes=size or None, exec_stats=None, input_files=(spec.file,)
            )
            tasks.append(ReadTask(functools.partial(_read_shard, self.config, spec, duplicates), meta))
        return tasks


def _read_shard(
    config: LlavaConfig, spec: ShardSpec, duplicates: Set[tuple[str, int, int]]
) -> Iterator[pa.Table]:
    schema = features_for(config.format).arrow_schema
    rows = ShardRows(config)
    for batch in rows.batches(spec, duplicates, release=True):
        yield batch.to_table(schema)
    if rows.rejected:
        logger.warning(
            "%s: %d record(s) rejected from record %d on", spec.file, rows.rejected, spec.start_index
        )
