"""What a build writes beside its Parquet files: the manifest (``llava_hf.json``) and the card (``README.md``,
``preview.png``), from what the build counted."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..schema import FORMAT_VERSION
from .layout import MANIFEST
from .stats import FileStats

__all__ = ["input_paths", "one_media_root", "write_card", "write_manifest"]


def one_media_root(data_files: Any, *folders: str | None) -> bool:
    """Whether every media path of the inputs resolves against one folder (the JSON files' own folder
    for a kind without its own root): export then keeps one media tree (Qwen-VL reads one data_path)."""
    roots = {f for f in folders if f is not None}
    if None in folders:
        roots |= {os.path.dirname(os.path.abspath(f)) for f in input_paths(data_files)}
    if any("://" in r for r in roots):
        return False
    return len({os.path.realpath(r) for r in roots}) == 1


def input_paths(data_files: Any) -> list[str]:
    if isinstance(data_files, (str, os.PathLike)):
        return [os.fspath(data_files)]
    if isinstance(data_files, Mapping):
        return [
            os.fspath(f)
            for files in data_files.values()
            for f in ([files] if isinstance(files, str) else files)
        ]
    return [os.fspath(f) for f in data_files or ()]


def write_manifest(
    root: Path,
    result: Any,  # a BuildResult
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
        inputs = input_paths(data_files)
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


def write_card(
    root: Path,
    pretty_name: str,
    counts: dict[Path, FileStats],
    load_path: str | None = None,
    *,
    data_urls: Mapping[str, str] | None = None,
) -> None:
    """The card and its preview, from the counts made while writing (the files' text is not read again).
    ``load_path``: what the card's snippet passes to ``load_dataset`` (default: the output folder);
    ``data_urls``: where the data files are, when not in ``root`` (see :func:`~llava_hf.card.make_card`)."""
    from ..card import make_card, make_preview

    preview = make_preview(root, data_urls=data_urls)
    if preview is not None:
        (root / "preview.png").write_bytes(preview)
    card = make_card(
        root,
        pretty_name=pretty_name,
        preview_path="preview.png" if preview is not None else None,
        counted=counts,
        repo_id=load_path,
        data_urls=data_urls,
    )
    card.save(str(root / "README.md"))
