"""The layout of a built folder, as ``build_folder`` writes it and ``load_dataset`` reads it.

::

    OUT/data/{split}-{i:05d}-of-{n:05d}.parquet   the rows (llava_hf.schema)
    OUT/README.md, OUT/preview.png                the dataset card and its contact sheet
    OUT/rejected.jsonl                             one line per dropped record (on_error="skip")
    OUT/mixture.json                               the resolved mixture (mixture builds)
    OUT/llava_hf.json                              manifest: format version, splits, counts

A build of several configs (``llava_hf.build.configs``) has ``OUT/{config}/`` folders instead, each with its
shards and its own manifest; :func:`config_folders` lists them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["MANIFEST", "REJECTED", "SHARD_RE", "config_folders", "read_manifest", "split_files"]

MANIFEST = "llava_hf.json"
REJECTED = "rejected.jsonl"


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


def config_folders(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """The config folders of a build of several configs, by config name ({} for a build of one)."""
    configs = read_manifest(folder).get("configs")
    if not isinstance(configs, dict):
        return {}
    return {str(name): Path(folder) / str((c or {}).get("dir", name)) for name, c in configs.items()}


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
    configs = config_folders(root)
    if not by_split and configs:
        raise UsageError(
            f"{root}: holds several configs ({', '.join(configs)}), each in its own folder",
            hint=f"give one of them, e.g. {root / next(iter(configs))}",
        )
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
