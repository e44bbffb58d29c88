"""What to build: :class:`LlavaConfig` (validated when created) and :class:`ShardSpec`, one original shard."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from ..errors import InputFileError, UsageError
from ..media.files import MediaRoots
from ..media.remote import DEFAULT_MAX_REMOTE_BYTES, DEFAULT_REMOTE_TIMEOUT
from ..problems import OnError
from ..schema import OutputFormat

__all__ = ["DEFAULT_RECORDS_PER_SHARD", "LlavaConfig", "ShardSpec"]

#: Records per original shard when a big file is split: a unit of work of ``datasets``' jobs and of a
#: ``DataLoader``'s workers, small enough that they share evenly. (``build_folder`` cuts its shards by
#: size instead: one shard is one output file.)
DEFAULT_RECORDS_PER_SHARD = 2048


@dataclass
class LlavaConfig(datasets.BuilderConfig):
    """Options of :class:`LlavaBuilder` (validated when created).

    Args:
        data_files: a path, a list of paths, or a dict ``split -> path(s)`` of LLaVA JSON/JSONL files.
        image_folder / video_folder / audio_folder: roots that relative media paths resolve against (default: the
            folder of each JSON file).
        on_error: ``"raise"`` (stop at the first bad record) or ``"skip"`` (drop it, counted by code).
        strict: a record with media but no tag is an error instead of getting its tags prepended.
        task: ``"sft"`` or ``"pretrain"`` (captioning and pre-training records: the answer alone, with
            its media tags, no human turn needed).
        allow_outside_root: accept absolute media paths and paths that leave their root.
        allow_remote_media: fetch media given as http(s) URLs (at most ``max_remote_bytes`` each, within
            ``remote_timeout`` seconds) instead of refusing them as ``remote_media``.
        deep: decode every image fully and the first frames of every video while building.
        format: ``"conversations"`` (LLaVA turns) or ``"messages"`` (typed parts, as TRL reads them).
        records_per_shard: at most this many records (JSON items) per original shard.
        max_shard_size: bytes; an original shard also ends before the record that would take its
            estimated output past this size: its records' JSON text plus the sizes of the media files
            they name (``os.stat``; a missing file counts 0). None: records_per_shard alone decides.
        mixture: a resolved :class:`llava_hf.mixture.Mixture`; replaces ``data_files`` (one split, ``train``).
        report_dir: a folder where each shard writes its dropped records and warnings (JSON lines).
        content_defined_chunking / page_index: Parquet options of ``download_and_prepare(file_format=
            "parquet")``, as ``build_folder`` takes them (datasets' own ``to_parquet`` turns both on).
    """

    image_folder: str | None = None
    video_folder: str | None = None
    audio_folder: str | None = None
    on_error: OnError = "raise"
    strict: bool = False
    task: str = "sft"
    allow_outside_root: bool = False
    allow_remote_media: bool = False
    max_remote_bytes: int = DEFAULT_MAX_REMOTE_BYTES
    remote_timeout: float = DEFAULT_REMOTE_TIMEOUT
    deep: bool = False
    format: OutputFormat = "conversations"
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD
    max_shard_size: int | None = None
    mixture: Any = None
    report_dir: str | None = None
    content_defined_chunking: bool = False
    page_index: bool = False
    #: LLaMA-Factory dataset_info.json entries by file (``dataset=``): their columns and tags map each record
    dataset_entries: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        files: Any = self.__dict__.get("data_files")
        if files is not None and not isinstance(
            files, (datasets.data_files.DataFilesDict, datasets.data_files.DataFilesPatternsDict)
        ):
            try:
                self.data_files = datasets.data_files.DataFilesDict.from_patterns(
                    datasets.data_files.sanitize_patterns(files), base_path=os.getcwd()
                )
            except FileNotFoundError as err:
                raise InputFileError(
                    f"{err}", file=str(files), hint="check the path of the input file"
                ) from None
        super().__post_init__()
        if self.on_error not in ("raise", "skip"):
            raise UsageError(f"on_error={self.on_error!r} is not 'raise' or 'skip'")
        if self.task not in ("sft", "pretrain"):
            raise UsageError(f"task={self.task!r} is not 'sft' or 'pretrain'")
        if self.format not in ("conversations", "messages"):
            raise UsageError(f"format={self.format!r} is not 'conversations' or 'messages'")
        if not isinstance(self.records_per_shard, int) or self.records_per_shard < 1:
            raise UsageError(
                f"records_per_shard={self.records_per_shard!r} is not a positive integer",
                hint="for example records_per_shard=2048 (the default)",
            )
        if self.max_shard_size is not None and (
            not isinstance(self.max_shard_size, int) or self.max_shard_size < 1
        ):
            raise UsageError(
                f"max_shard_size={self.max_shard_size!r} is not a positive number of bytes",
                hint="for example max_shard_size=500_000_000",
            )
        self.media_roots()  # checks max_remote_bytes and remote_timeout
        for name in ("image_folder", "video_folder", "audio_folder"):
            folder = getattr(self, name)
            if folder is not None:
                folder = os.fspath(folder)
                setattr(self, name, folder)
                if "://" not in folder and not os.path.isdir(folder):
                    raise UsageError(f"{name}={folder!r}: that folder does not exist", hint=f"check {name}=")
        if self.data_files is None and self.mixture is None:
            raise UsageError(
                "no input: pass data_files (a LLaVA JSON/JSONL file, a list, or a dict split -> files) "
                "or a mixture"
            )

    def media_roots(
        self,
        image_folder: str | None = None,
        video_folder: str | None = None,
        audio_folder: str | None = None,
    ) -> MediaRoots:
        """The media roots of a shard with these folders, with this config's media options."""
        return MediaRoots(
            image_folder,
            video_folder,
            self.allow_outside_root,
            audio_folder=audio_folder,
            allow_remote_media=self.allow_remote_media,
            max_remote_bytes=self.max_remote_bytes,
            remote_timeout=self.remote_timeout,
        )


@dataclass(frozen=True)
class ShardSpec:
    """One original shard: a byte range (``start_offset``) or record range of one input file."""

    file: str
    source: str
    start_index: int = 0
    stop_index: int | None = None
    start_offset: int = 0
    image_folder: str | None = None
    video_folder: str | None = None
    audio_folder: str | None = None
    selection: Sequence[int] | None = None  # mixture: sample positions to take (sorted, repeats allowed)
    start_sample: int = 0  # sample position of the shard's first record in its file (packs hold several)
    id_stem: str | None = None  # generated ids are f"{id_stem}-{index}" (records.id_stems)

    @property
    def file_key(self) -> str:
        """Names the (source, file) pair: shards of one file share it."""
        import hashlib

        return hashlib.sha1(f"{self.source}\0{self.file}".encode()).hexdigest()[:10]

    @property
    def uid(self) -> str:
        """Names the shard (its report file)."""
        return f"{self.file_key}-{self.start_index:010d}"
