"""The shards of a built folder, LLaVA JSON built on the way, and re-sharding: private to :mod:`llava_hf.hub.push`.

A shard's path in the repository is ``data/{split}-{i:05d}-of-{n:05d}.parquet`` for the default config and
``{config}/{split}-...`` for any other (as LLaVA-OneVision-Data lays out its subsets).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from ..build.batches import BATCH_ROWS
from ..build.layout import MANIFEST as _MANIFEST
from ..build.layout import SHARD_RE, read_manifest, split_files
from ..build.parquet import open_writer, uses_cdc
from ..errors import UsageError
from ..utils.logging import get_logger

__all__ = [
    "SHARD_RE",
    "Shard",
    "Source",
    "build_to_temp",
    "check_local_sources",
    "config_dir",
    "folder_shards",
    "reshard_if_needed",
    "resolve_source",
]

logger = get_logger("llava_hf.hub.push")


#: ``{split}-00000-of-00001.parquet``, as the builder (and datasets' push_to_hub) names shards.
_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")

Source = str | PathLike[str] | Sequence[str | PathLike[str]]


@dataclass(frozen=True)
class Shard:
    """One Parquet file of a split: where it is on disk and where it goes in the repository."""

    split: str
    local: Path
    remote: str


def resolve_source(source: Source, stack: ExitStack, max_shard_size: int | str) -> Path:
    """A built folder as is; LLaVA JSON file(s) built into a temporary folder."""
    paths = [Path(source)] if isinstance(source, (str, PathLike)) else [Path(p) for p in source]
    if not paths:
        raise UsageError("no source given", hint="pass a built folder or LLaVA JSON file(s)")
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    check_local_sources(paths)
    for path in paths:
        if path.is_dir():
            raise UsageError(
                f"{path}: pass either one built folder or LLaVA JSON files, not both",
                hint="llava-hf push OUT/ org/name, or llava-hf push data.json org/name",
            )
        if not path.name.lower().endswith(_JSON_SUFFIXES):
            raise UsageError(
                f"{path}: not a built folder nor a LLaVA JSON file ({', '.join(_JSON_SUFFIXES)})",
                hint="build it first: llava-hf build DATA.json --output-dir OUT, then llava-hf push OUT org/name",
            )
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file", hint="check the path")
    return build_to_temp(paths, stack, max_shard_size=max_shard_size)


def check_local_sources(paths: Sequence[str | PathLike[str]]) -> None:
    """Each source of a push exists on this machine (it is never looked up on the Hub)."""
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(
                f"there is no local folder or file {os.fspath(path)!r}: nothing was sent",
                hint="check the path: the source of a push is a folder written by `llava-hf build` or "
                "LLaVA JSON file(s) on this machine",
            )


def build_to_temp(
    data_files: Sequence[Path] | None,
    stack: ExitStack,
    *,
    image_folder: str | None = None,
    video_folder: str | None = None,
    audio_folder: str | None = None,
    allow_outside_root: bool = False,
    strict: bool = False,
    max_shard_size: int | str = "500MB",
    mixture: Any = None,
    **remote: Any,
) -> Path:
    """Build LLaVA JSON (or a resolved mixture) into a temporary folder that lives as long as ``stack``.
    ``remote``: build_folder's ``allow_remote_media``, ``max_remote_bytes`` and ``remote_timeout``."""
    from .. import build_folder

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llava_hf_push_")))
    out = tmp / "build"
    what = "the mixture" if mixture is not None else ", ".join(str(p) for p in data_files or [])
    logger.info("Building %s into a temporary folder before pushing", what)
    build_folder(
        [str(p) for p in data_files] if data_files else None,
        out,
        image_folder=image_folder,
        video_folder=video_folder,
        audio_folder=audio_folder,
        allow_outside_root=allow_outside_root,
        strict=strict,
        max_shard_size=max_shard_size,
        mixture=mixture,
        **remote,
    )
    return out


def folder_shards(folder: Path, config_name: str) -> list[Shard]:
    """The folder's shards, per split, with their path in the repository."""
    by_split = split_files(folder)
    data_dir = config_dir(config_name)
    return [
        Shard(split, path, f"{data_dir}/{split}-{i:05d}-of-{len(files):05d}.parquet")
        for split, files in by_split.items()
        for i, path in enumerate(files)
    ]


def config_dir(config_name: str) -> str:
    return "data" if config_name == "default" else config_name


# ------------------------------------------------------------------------------------------ re-sharding


def reshard_if_needed(
    folder: Path, shards: list[Shard], max_bytes: int, config_name: str, stack: ExitStack
) -> tuple[Path, list[Shard]]:
    """Rewrite a split only if one of its shards is larger than ``max_bytes`` (row boundaries kept).

    The output is deterministic (same rows, same bytes), so re-pushing re-sharded data uploads nothing.
    """
    too_big = sorted({s.split for s in shards if s.local.stat().st_size > max_bytes})
    if not too_big:
        return folder, shards
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llava_hf_reshard_")))
    out = tmp / folder.name
    (out / "data").mkdir(parents=True)
    for extra in folder.iterdir():  # rejected.jsonl, mixture.json, ...: the card reads them
        if extra.is_file() and extra.name not in {"README.md", "preview.png", _MANIFEST}:
            shutil.copy2(extra, out / extra.name)
    manifest = read_manifest(folder)
    new_splits: dict[str, list[str]] = {}
    for split in dict.fromkeys(s.split for s in shards):
        files = [s.local for s in shards if s.split == split]
        if split not in too_big:
            new_splits[split] = []
            for i, path in enumerate(files):
                name = f"{split}-{i:05d}-of-{len(files):05d}.parquet"
                _link_or_copy(path, out / "data" / name)
                new_splits[split].append(f"data/{name}")
            continue
        logger.info("Re-sharding split %r: a shard is larger than %d bytes", split, max_bytes)
        written = _write_split(files, out / "data", split, max_bytes)
        new_splits[split] = []
        for i, part in enumerate(written):
            name = f"{split}-{i:05d}-of-{len(written):05d}.parquet"
            part.rename(out / "data" / name)
            new_splits[split].append(f"data/{name}")
    manifest = dict(manifest)
    old = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
    manifest["splits"] = {
        split: {**dict((old or {}).get(split) or {}), "files": files} for split, files in new_splits.items()
    }
    (out / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out, folder_shards(out, config_name)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_split(files: list[Path], out: Path, split: str, max_bytes: int) -> list[Path]:
    """Copy the rows of ``files`` in order into new files of at most ``max_bytes`` (Arrow size) each.

    A file holds at least one row; row groups hold ``BATCH_ROWS`` rows, as the builder writes them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(files[0])  # keeps the `huggingface` features metadata
    first = pq.ParquetFile(files[0]).metadata
    cdc = uses_cdc(first)  # the options the build chose
    page_index = first.num_row_groups > 0 and first.row_group(0).column(0).has_offset_index
    written: list[Path] = []
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    file_bytes = 0

    def flush() -> None:
        nonlocal writer
        if not pending:
            return
        if writer is None:
            written.append(out / f".part-{split}-{len(written):05d}.parquet")
            writer = open_writer(written[-1], schema, content_defined_chunking=cdc, page_index=page_index)
        writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=BATCH_ROWS)
        pending.clear()

    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            for i in range(batch.num_rows):
                row = batch.slice(i, 1)
                if file_bytes > 0 and file_bytes + row.nbytes > max_bytes:
                    flush()
                    if writer is not None:
                        writer.close()
                        writer = None
                    file_bytes = 0
                pending.append(row)
                file_bytes += row.nbytes
                if len(pending) >= BATCH_ROWS:
                    flush()
    flush()
    if writer is not None:
        writer.close()
    return written
