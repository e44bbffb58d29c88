"""``LlavaBuilder``: LLaVA-format JSON + media folders → a Hugging Face dataset.

It is a standard :class:`datasets.GeneratorBasedBuilder`, so the usual API works::

    builder = LlavaBuilder(data_files={"train": "train.json"}, image_folder="images/")
    builder.download_and_prepare(file_format="parquet", num_proc=2)
    ds = builder.as_dataset(split="train")
    stream = builder.as_streaming_dataset(split="train")   # straight from the JSON and media

Every row has the one schema of :mod:`llava_hf.schema`. The reader and every validation rule run
inside generation, with the ``on_error`` policy: ``"raise"`` stops at the first bad record with its
full message; ``"skip"`` drops it, counts it by code, logs the counts, and (when ``report_dir`` is set)
writes one line per dropped record so that :func:`llava_hf.build_folder` can list them.

Big inputs are split into *original shards* (byte ranges of a JSON array or JSONL file found by one
quick scan, or record ranges of a gzip file), so ``num_proc`` scales with cores and a torch
``DataLoader``'s workers each stream their own part. A shard holds at most ``records_per_shard`` records
and (with ``max_shard_size``, as :func:`llava_hf.build_folder` plans its files) ends before the record
that would take an estimate of its output bytes past that size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
from datasets.builder import Key

from ..errors import InputFileError, LlavaHFError
from ..jsontext import at_full_depth
from ..schema import features_for
from .batches import BATCH_ROWS, metadata_json
from .config import LlavaConfig, ShardSpec
from .plan import plan_splits
from .rows import ShardRows
from .writer import arrow_stream_to_parquet

__all__ = ["LlavaBuilder"]


class LlavaBuilder(datasets.GeneratorBasedBuilder):
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
            features=_KeepBytesFeatures(features_for(self.config.format)),
        )

    # ------------------------------------------------------------------------------------ planning

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards, "duplicates": duplicates})
            for split, (shards, duplicates) in self.plan().items()
        ]

    def plan(self) -> dict[str, tuple[list[ShardSpec], frozenset[tuple[str, int, int]]]]:
        """Per split: its original shards, and the records that reuse an id (see :func:`plan_splits`)."""
        return plan_splits(self.config)

    def _generate_shards(
        self, shards: list[ShardSpec], duplicates: frozenset[Any]
    ) -> Iterator[dict[str, Any]]:
        for shard in shards:
            yield {"file": shard.file, "start_index": shard.start_index, "stop_index": shard.stop_index}

    def _prepare_split_single(self, **kwargs: Any) -> Iterator[Any]:
        # datasets' Parquet writer embeds media with Image/Video.embed_storage, which keeps only the
        # basename of every local path ('1.jpg' for 'coco/train2017/1.jpg'). Our rows hold the bytes
        # already, so Parquet shards are written as Arrow (no embedding), then rewritten as Parquet
        # with the options datasets' own Parquet writer defaults to (CDC and page index).
        parquet = kwargs.get("file_format") == "parquet"
        if parquet:
            kwargs["file_format"] = "arrow"
        # datasets wraps every error of generation in DatasetGenerationError, whose cause does not
        # survive the trip from a worker process (num_proc): raise our own error (picklable) instead.
        try:
            for job_id, done, content in super()._prepare_split_single(**kwargs):
                if done and parquet:
                    fpath = kwargs["fpath"]
                    for shard_id in range(content[3]):  # (examples, bytes, features, num_shards, ...)
                        arrow_stream_to_parquet(
                            self._fs,
                            fpath.replace("SSSSS", f"{shard_id:05d}").replace("JJJJJ", f"{job_id:05d}"),
                            content_defined_chunking=True,
                            page_index=True,
                        )
                yield job_id, done, content
        except datasets.exceptions.DatasetGenerationError as err:
            cause: BaseException | None = err.__cause__
            while cause is not None and not isinstance(cause, LlavaHFError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None

    # ---------------------------------------------------------------------------------- generation

    def _get_examples_iterable_for_split(self, split_generator: datasets.SplitGenerator) -> Any:
        # Streaming yields Arrow tables, as datasets' own Parquet and Arrow builders do: rows are decoded
        # from them and never encoded again. An IterableDataset encodes rows of an example iterable
        # with plain Features after select_columns, rename_column and the like, and Image.encode_example
        # takes a file of the current directory named like the record's relative path over the bytes.
        from datasets.iterable_dataset import ArrowExamplesIterable

        return ArrowExamplesIterable(self._generate_tables, split_generator.gen_kwargs)

    def _generate_tables(
        self, shards: list[ShardSpec], duplicates: frozenset[tuple[str, int, int]]
    ) -> Iterator[tuple[Key, Any]]:
        schema = self.info.features.arrow_schema
        for shard_idx, shard in enumerate(shards):
            batches = ShardRows(self.config).batches(shard, duplicates, release=True)
            for batch_idx, batch in enumerate(batches):
                yield Key(shard_idx, batch_idx), batch.to_table(schema)

    def _generate_examples(
        self, shards: list[ShardSpec], duplicates: frozenset[tuple[str, int, int]]
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        for shard_idx, shard in enumerate(shards):
            for row_idx, row in enumerate(self.generate_rows(shard, duplicates)):
                yield Key(shard_idx, row_idx), row

    def generate_rows(
        self, shard: ShardSpec, duplicates: frozenset[tuple[str, int, int]] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """The rows of one original shard, in order, after every rule and the ``on_error`` policy."""
        return ShardRows(self.config).rows(shard, duplicates)


class _KeepBytesFeatures(datasets.Features):
    """The schema's features, except that a media value given with its bytes keeps them, and that
    ``metadata`` is written as exactly as :func:`~llava_hf.build.batches.metadata_json` writes it.

    ``Image``/``Video.encode_example`` drop the bytes of a ``{"bytes", "path"}`` value whenever
    ``path`` names an existing file relative to the *current directory*; with a record's relative path
    (``coco/train2017/1.jpg``) the row would then point at whatever file the current directory holds
    instead of holding the bytes read from ``image_folder``.
    """

    def __reduce__(self) -> Any:  # datasets copies features by pickling: keep this class
        return _KeepBytesFeatures, (dict(self),)

    def encode_example(self, example: Any) -> Any:
        metadata = example.get("metadata")
        if isinstance(metadata, dict):  # as exactly as a build writes it (datasets' Json rounds floats)
            example = {**example, "metadata": None}
        encoded = super().encode_example(example)
        if isinstance(metadata, dict):
            encoded["metadata"] = at_full_depth(metadata_json, metadata)
        for column in ("images", "videos", "audios"):
            for item, stored in zip(example.get(column) or [], encoded.get(column) or []):
                if isinstance(item, dict) and item.get("bytes") is not None and isinstance(stored, dict):
                    stored["bytes"] = item["bytes"]
        return encoded
