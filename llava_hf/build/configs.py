"""Several entries of LLaMA-Factory's ``dataset_info.json`` built as several configs of one folder.

Laid out as ``datasets``' ``push_to_hub(config_name=...)`` writes configs::

    OUT/{name}/{split}-{i:05d}-of-{n:05d}.parquet   each entry's rows, a config named like the entry
    OUT/{name}/llava_hf.json                         that config's manifest (its files relative to it)
    OUT/{name}/preview.png                           its contact sheet (when it has images)
    OUT/README.md                                    card: YAML ``configs:`` lists each config and its files
    OUT/rejected.jsonl                               dropped records, each line naming its config
    OUT/llava_hf.json                                manifest: ``configs`` (name -> folder, splits, entry)

``load_dataset(OUT, name)`` reads one config. Each entry is built by :func:`~llava_hf.build.folder.build_folder`
(one name keeps its layout: ``OUT/data/``, config ``default``); the whole folder is written in a working
folder and renamed at the end, as a single build is.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..records.dataset_info import read_dataset_info
from ..schema import FORMAT_VERSION
from ..utils.output import atomic_dir
from ..utils.publish import Staging
from .folder import BuildResult, _build, _check_output_dir
from .layout import MANIFEST, REJECTED

__all__ = ["build_configs", "options_of"]

_CONFIG_RE = re.compile(r"[A-Za-z0-9][\w\-.]*")
#: the options of build_folder that each config of a several-names build takes
_OPTIONS = (
    *("image_folder", "video_folder", "audio_folder", "num_proc", "on_error", "strict", "task"),
    *("allow_outside_root", "deep", "max_shard_size", "format", "records_per_shard"),
    *("content_defined_chunking", "page_index", "wait"),
    *("allow_remote_media", "max_remote_bytes", "remote_timeout", "engine", "ray_address"),
)


def options_of(arguments: dict[str, Any]) -> dict[str, Any]:
    """The options of :func:`build_folder` among ``arguments`` (its locals) that each config takes."""
    if arguments.get("mixture") is not None:
        raise UsageError("dataset= and mixture= cannot be given together", hint="give one of them")
    return {k: v for k, v in arguments.items() if k in _OPTIONS}


def build_configs(
    info: str | os.PathLike[str],
    names: Sequence[str],
    output_dir: str | os.PathLike[str],
    *,
    wait: bool = False,
    load_path: str | None = None,
    staging: Staging | None = None,
    **kwargs: Any,
) -> BuildResult:
    """Build the entries ``names`` of the ``dataset_info.json`` at ``info`` into ``output_dir``, one config
    each (see the module docstring); ``kwargs`` are :func:`build_folder`'s options. ``load_path`` and
    ``staging``: an output on a URL (the card's ``load_dataset`` path; where the shards go).

    The result counts rows per ``"{config}/{split}"``; ``configs`` holds each config's own result.

    Raises:
        UsageError: a name given twice, or one that cannot name a config.
    """
    entries = read_dataset_info(info, list(names))
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise UsageError(f"--dataset {entry.name!r} is given twice", hint="name each entry once")
        seen.add(entry.name)
        if not _CONFIG_RE.fullmatch(entry.name) or entry.name in ("data", "default"):
            raise UsageError(
                f"entry {entry.name!r} cannot name a config: use letters, digits, '-', '_' or '.' "
                "(not 'data' or 'default')",
                hint="rename the entry in the dataset_info.json",
            )
    out = Path(output_dir)
    _check_output_dir(out)
    result = BuildResult(output_dir=out, num_rows={}, files={})
    with contextlib.ExitStack() as stack:
        if kwargs.get("engine") == "ray":  # one Ray for every config's build
            from .ray_engine import ray_session

            num_cpus = max(1, kwargs.get("num_proc") or 1)
            stack.enter_context(ray_session(kwargs.get("ray_address"), num_cpus=num_cpus))
        tmp = stack.enter_context(atomic_dir(out, wait=wait))
        work = tmp.parent / "configs"  # in llava-hf's working folder, removed with it
        configs: dict[str, Any] = {}
        rejected: list[str] = []
        for entry in entries:
            # a URL output: the config's shards go under the output's prefix, and move once, when it is published
            sub = (
                None
                if staging is None
                else replace(staging, prefix=f"{staging.prefix}/.configs/{entry.name}", moves={})
            )
            built = _build(
                os.fspath(info),
                work / entry.name,
                dataset=entry.name,
                mixture=None,
                wait=False,
                load_path=load_path,
                staging=sub,
                **kwargs,
            )
            given = {"file_name": os.path.basename(entry.file), **entry.given}
            moves = None if staging is None or sub is None else (staging, sub)  # (mypy: both or neither)
            configs[entry.name] = _move_config(work / entry.name, tmp / entry.name, given, rejected, moves)
            built.output_dir = out / entry.name
            built.files = {s: [f"{entry.name}/{Path(f).name}" for f in fs] for s, fs in built.files.items()}
            result.configs[entry.name] = built
            for split, n in built.num_rows.items():
                result.num_rows[f"{entry.name}/{split}"] = n
                result.files[f"{entry.name}/{split}"] = built.files[split]
                result.num_bytes[f"{entry.name}/{split}"] = built.num_bytes[split]
            result.rejected.update(built.rejected)
            result.warnings.update(built.warnings)
        if rejected:
            (tmp / REJECTED).write_text("\n".join(rejected) + "\n", encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "llava_hf_version": __version__,
            "format": kwargs.get("format", "conversations"),
            "configs": configs,
            "rejected": dict(sorted(result.rejected.items())),
            "warnings": dict(sorted(result.warnings.items())),
            "inputs": [os.path.basename(info)],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _write_card(tmp, out, list(configs), load_path, staging)
    return result


def _move_config(
    built: Path,
    target: Path,
    given: dict[str, Any],
    rejected: list[str],
    moves: tuple[Staging, Staging] | None,
) -> dict[str, Any]:
    """Move one config's shards from its build folder to ``target``; its manifest there names them
    relative to ``target``; its rejected records are added to ``rejected`` with the config's name.
    ``moves``: the shards are on a URL (the output's staging, the config's): they move when it is published."""
    target.mkdir()
    name = target.name
    manifest = json.loads((built / MANIFEST).read_text(encoding="utf-8"))
    for split in manifest["splits"].values():
        moved = []
        for file in split["files"]:
            if moves is None:
                os.replace(built / file, target / Path(file).name)
            else:
                staging, config = moves
                at = posixpath.relpath(f"{config.prefix}/{config.moves[file]}", staging.prefix)
                staging.moves[f"{name}/{Path(file).name}"] = at
            moved.append(Path(file).name)
        split["files"] = moved
    manifest["config"] = name
    manifest["entry"] = given
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if (built / REJECTED).is_file():
        for line in (built / REJECTED).read_text(encoding="utf-8").split("\n"):
            if line:
                rejected.append(json.dumps({"config": name, **json.loads(line)}, ensure_ascii=False))
    shutil.rmtree(built)  # llava-hf's own build, in its working folder
    return {
        "dir": name,
        "entry": given,
        "splits": {
            split: {**entry, "files": [f"{name}/{f}" for f in entry["files"]]}
            for split, entry in manifest["splits"].items()
        },
        "rejected": manifest.get("rejected", {}),
    }


def _write_card(
    root: Path, out: Path, names: list[str], load_path: str | None, staging: Staging | None
) -> None:
    """One card listing every config (each one's statistics and preview); ``load_path``: the card's
    ``load_dataset`` path (default: ``out``); ``staging``: the configs' shards are on a URL."""
    from ..card import make_card, make_preview

    card = None
    for name in names:
        folder = root / name
        data = None if staging is None else staging.urls(name)
        preview = make_preview(folder, data_urls=data)
        if preview is not None:
            (folder / "preview.png").write_bytes(preview)
        splits = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["splits"]
        card = make_card(
            folder,
            config_name=name,
            data_files={split: f"{name}/{split}-*" for split in splits},
            pretty_name=out.name,
            existing=None if card is None else str(card),
            preview_path=f"{name}/preview.png" if preview is not None else None,
            repo_id=load_path or str(out),
            data_urls=data,
        )
    assert card is not None
    card.save(str(root / "README.md"))
