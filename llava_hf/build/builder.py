"""``LlavaBuilder``: LLaVA-format JSON + media folders → a Hugging Face dataset.

A thin :class:`datasets.ArrowBasedBuilder`, like datasets' own packaged builders: its
``_generate_tables`` is llava-hf's one table-producing core (:class:`~llava_hf.build.rows.ShardRows`),
over the original shards that planning finds (:mod:`llava_hf.build.plan`). The usual API works::

    builder = LlavaBuilder(data_files={"train": "train.json"}, image_folder="images/")
    builder.download_and_prepare(file_format="parquet", num_proc=2)
    ds = builder.as_dataset(split="train")
    stream = builder.as_streaming_dataset(split="train")   # straight from the JSON and media

Every row has the one schema of :mod:`llava_hf.schema`; every validation rule and the ``on_error``
policy run inside generation. ``file_format="parquet"`` writes each original shard to a file of its
own with the one shard writer, so the files are byte-identical to ``build_folder``'s for the same
input and options (see :mod:`llava_hf.datasets_adapter`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets

from ..datasets_adapter import ShardedArrowBuilder, table_key
from ..errors import InputFileError
from ..schema import features_for
from .batches import BATCH_ROWS
from .config import LlavaConfig, ShardSpec
from .parquet import HARD_LIMIT_FACTOR, ShardWriter, parse_shard_size
from .plan import plan_splits
from .rows import ShardRows

__all__ = ["LlavaBuilder"]

Duplicates = frozenset[tuple[str, int, int]]


class LlavaBuilder(ShardedArrowBuilder):
    """Builds LLaVA-format JSON/JSONL (+ image and video folders) into the llava-hf schema."""

    BUILDER_CONFIG_CLASS = LlavaConfig
    DEFAULT_WRITER_BATCH_SIZE = BATCH_ROWS  # rows per Arrow record batch / Parquet row group
    config: LlavaConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except FileNotFoundError as err:  # datasets resolves data_files before the config sees them
            files = kwargs.get("data_files")
            raise InputFileError(f"{err}", file=str(files), hint="check the path of the input file") from None

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="LLaVA-format vision-language conversations built by llava-hf.",
            features=features_for(self.config.format),
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards, "duplicates": duplicates})
            for split, (shards, duplicates) in self.plan().items()
        ]

    def plan(self) -> dict[str, tuple[list[ShardSpec], Duplicates]]:
        """Per split: its original shards, and the records that reuse an id (see :func:`plan_splits`)."""
        return plan_splits(self.config)

    def _generate_shards(self, shards: list[ShardSpec], duplicates: Duplicates) -> Iterator[dict[str, Any]]:
        for shard in shards:
            yield {"file": shard.file, "start_index": shard.start_index, "stop_index": shard.stop_index}

    def _generate_tables(self, shards: list[ShardSpec], duplicates: Duplicates) -> Iterator[tuple[Any, Any]]:
        schema = self.info.features.arrow_schema
        for shard_idx, shard in enumerate(shards):
            batches = ShardRows(self.config).batches(shard, duplicates, release=True)
            for batch_idx, batch in enumerate(batches):
                yield table_key(shard_idx, batch_idx), batch.to_table(schema)

    def generate_rows(
        self, shard: ShardSpec, duplicates: Duplicates = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """The rows of one original shard, in order, after every rule and the ``on_error`` policy."""
        return ShardRows(self.config).rows(shard, duplicates)

    def parquet_shard_writer(self, max_shard_size: int | str | None) -> ShardWriter:
        """The writer of ``download_and_prepare(file_format="parquet")``: ``build_folder``'s options."""
        config = self.config
        limit = config.max_shard_size or parse_shard_size(max_shard_size or "500MB")
        return ShardWriter(
            self.info.features.arrow_schema,
            max_bytes=HARD_LIMIT_FACTOR * limit,
            content_defined_chunking=config.content_defined_chunking,
            page_index=config.page_index,
        )

    def shard_batches(self, shard: ShardSpec, gen_kwargs: dict[str, Any]) -> Iterator[Any]:
        """The row batches of one original shard (``gen_kwargs``: its split's)."""
        return ShardRows(self.config).batches(shard, gen_kwargs["duplicates"])
