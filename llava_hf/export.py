"""``export_llava``: a llava-hf dataset → LLaVA JSON + media folders, without loss.

``DIR/{split}.json`` holds the records in LLaVA's format (``image``/``video``/``audio`` a string when
one, a list when several, absent when none; every key of ``metadata`` restored; samples of a Qwen pack
packed again), and every media file is written at its original relative path under ``DIR/images/``,
``DIR/videos/`` or ``DIR/audios/``, byte for byte (a video given as its frames comes back as the list of
its frames, each written under ``DIR/videos/``). JSON → build → export gives back the same records (ids as strings).
A media path that is an ``http(s)://`` URL (built with ``allow_remote_media``) is written back as that URL,
and no file is written for it (its bytes stay in the dataset).

With ``media_root`` (``--media-root``), images, videos and audio share one folder instead, ``DIR/<media_root>/``
(``"."``: beside the JSON), each at its original relative path: the layout of loaders that read every
kind against one root (Qwen-VL's ``data_path``, LLaMA-Factory's ``media_dir``), where the split into
``images/`` and ``videos/`` breaks a file that mixes both.

Paths stored in a dataset are not trusted: one that is absolute or leaves its folder is written under
``_outside/`` instead, and two different files stored under one path (sources of a mixture) keep the
first at that path and the next under ``_conflicts/<sha256>/``; the JSON names where each file went.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .hub.retries import RETRY_STATUSES, is_connection_error, status_of
from .jsontext import at_full_depth
from .media.remote import is_remote_media
from .records import EXPORT_LAYOUTS, LAYOUT_KEY, PACK_KEY
from .records.dataset_info_export import ENTRY_KEY, restore_record
from .records.layouts import LayoutError, render
from .utils.logging import get_logger, tqdm
from .utils.output import atomic_dir, refuse_foreign_output

__all__ = ["ExportResult", "export_llava"]

logger = get_logger(__name__)


@dataclass
class ExportResult:
    output_dir: Path
    records: dict[str, int] = field(default_factory=dict)
    media_files: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # stored path -> where it was written
    media_root: Path | None = None  # the one media folder, when export_llava(media_root=...) was given


def export_llava(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    split: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    config: str | None = None,
    wait: bool = False,
    media_root: str | None = None,
    layout: str | None = None,
) -> ExportResult:
    """Export a built folder (or anything ``datasets.load_dataset`` takes) to LLaVA JSON + media.

    ``config`` picks one config of a dataset that has several (``llava-hf push --config-name``).
    ``wait``: wait for another run writing to ``output_dir`` instead of failing.
    ``media_root``: a folder inside ``output_dir`` (``"media"``, or ``"."`` for ``output_dir`` itself)
    where images, videos and audio are all written at their original relative paths, instead of
    ``images/``, ``videos/`` and ``audios/``; the JSON's paths are relative to it.
    ``layout``: write every record in this layout (one of ``EXPORT_LAYOUTS``) instead of the one it
    came in (recorded at build time; ``llava`` for LLaVA's own). A record in a LLaMA-Factory layout
    gets an entry in ``DIR/dataset_info.json``; a dataset with peer layouts gets its media beside the
    JSON (``media_root="."``) unless ``media_root`` is given, where those trainers look for them; so does a
    built folder whose inputs had one media root and a split that mixes kinds (Qwen-VL: one data_path).
    """
    if layout is not None and layout not in EXPORT_LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}", hint=f"use one of {', '.join(EXPORT_LAYOUTS)}")
    root = _media_root(media_root)
    out = Path(output_dir)
    # replacing the folder would delete what is in it (often the original JSON and media)
    refuse_foreign_output(out)
    from .build.layout import config_folders

    configs = config_folders(source) if config is None and os.path.isdir(source) else {}
    if configs:  # a build of several configs: each config's file, named as its input was
        streams: dict[str, Any] = {}
        for name, folder in configs.items():
            loaded = _load(os.fspath(source), name, split=split, revision=revision, token=token)
            streams.update({_config_stem(name, folder, s, loaded, streams): st for s, st in loaded.items()})
    else:
        streams = _load(os.fspath(source), config, split=split, revision=revision, token=token)
    if root is None and media_root is None and (_peer_layout(streams, layout) or _mixed_one_root(source)):
        root = "."
    result = ExportResult(out, media_root=None if root is None else out / root)
    with atomic_dir(out, wait=wait) as tmp:
        # with media beside the JSON, a media path must not take a split file's name
        reserved = {f"{name}.json" for name in streams} | {"dataset_info.json"} if root == "." else set()
        media = _MediaWriter(tmp, root, reserved)
        written: dict[str, set[str]] = {}
        for name, stream in streams.items():
            with open(tmp / f"{name}.json", "w", encoding="utf-8") as f:
                seen = written.setdefault(name, set())
                result.records[name] = _write_json_array(f, _records(stream, media, name, layout, seen))
        info = _dataset_info(written, root)
        if info:
            with open(tmp / "dataset_info.json", "w", encoding="utf-8") as f:
                json.dump(info, f, ensure_ascii=False, indent=2)
                f.write("\n")
        result.media_files = media.count
        result.renamed = media.renamed
    if result.renamed:
        logger.warning(
            "%d media path(s) were unsafe or clashed and were written elsewhere: %s",
            len(result.renamed),
            ", ".join(f"{a} -> {b}" for a, b in list(result.renamed.items())[:5]),
        )
    return result


def _load(
    source: str, config: str | None, *, split: str | None, revision: str | None, token: str | bool | None
) -> dict[str, Any]:
    import datasets

    local = os.path.exists(source) or "://" in source
    if not local:
        _check_hub_source(source, revision, token)
    try:
        loaded = datasets.load_dataset(
            source, config, split=split, streaming=True, revision=revision, token=token
        )
    except ConnectionError as err:  # offline mode without a cached copy, or the Hub stopped answering
        from .hub.retries import is_offline, offline_setting

        if not local and is_offline():
            where, hint = offline_setting()
            raise UsageError(
                f"there is no local folder {source!r}, and offline mode is on ({where}): the Hub dataset "
                f"{source!r} was looked for only in the datasets cache, which has no copy",
                hint=hint,
            ) from None
        raise UsageError(
            f"cannot export {source!r}: the Hub did not answer ({' '.join(str(err).split())})",
            hint="check the connection (HF_ENDPOINT) and run it again",
        ) from None
    except FileNotFoundError as err:
        raise UsageError(
            f"cannot export {source!r}: {err}", hint="give a built folder or a Hub dataset id"
        ) from None
    except ValueError as err:  # e.g. a dataset with several configs, or an unknown split
        raise UsageError(
            f"cannot export {source!r}: {' '.join(str(err).split())}",
            hint="export a dataset with one config (a folder written by 'llava-hf build'), "
            "and a split it has",
        ) from None
    streams = {split: loaded} if split is not None else dict(loaded)
    out: dict[str, Any] = {}
    for name, stream in streams.items():
        features = stream.features
        if (
            features is None
            or "id" not in features
            or ("conversations" not in features and "messages" not in features)
        ):
            raise UsageError(
                f"{source!r} ({name}) does not have the llava-hf schema (id, conversations or messages, "
                f"images, videos)",
                hint="build it with 'llava-hf build'",
            )
        for column, kind in (("images", "Image"), ("videos", "Video"), ("audios", "Audio")):
            if column in features:
                feature = getattr(datasets, kind)(decode=False)
                stream = stream.cast_column(column, datasets.List(feature))
        if "video_frames" in features:
            frame = datasets.List(datasets.List(datasets.Image(decode=False)))
            stream = stream.cast_column("video_frames", frame)
        if isinstance(features.get("metadata"), datasets.Json):
            # the stored text, read by json below: datasets' decoder (pandas' ujson) reads floats
            # inexactly (0.123456789012345 -> 0.12345678901234501, 5e-324 -> 0.0)
            stream = stream.cast_column("metadata", datasets.Json(decode=False))
        out[str(name)] = stream
    return out


def _config_stem(name: str, folder: Path, split: str, loaded: dict[str, Any], taken: dict[str, Any]) -> str:
    """The name of a config's exported file: its input's (a config of one split), else ``{config}-{split}``."""
    from .build.layout import read_manifest

    inputs = read_manifest(folder).get("inputs") or []
    stem = os.path.splitext(str(inputs[0]))[0] if len(inputs) == 1 and len(loaded) == 1 else ""
    if not stem or stem in taken or stem == "dataset_info":
        stem = name if len(loaded) == 1 else f"{name}-{split}"
    return stem


def _check_hub_source(source: str, revision: str | None, token: str | bool | None) -> None:
    """A SOURCE that is not on this machine: a typo'd path fails at once, a Hub id is asked about once.

    ``datasets.load_dataset`` would look any name up on the Hub, retrying a failed connection for
    half a minute, and end with an error that never says the local folder is missing.
    """
    from .hub.retries import is_offline, looks_like_repo_id

    if not looks_like_repo_id(source):
        raise UsageError(
            f"there is no local folder {source!r}",
            hint="check the path (a folder written by `llava-hf build`), or give a Hub dataset as namespace/name",
        )
    if is_offline():  # datasets reads its cache; a miss is explained where it is raised
        return
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:  # one request, no retries: a Hub that does not answer now is reported now
        HfApi(token=token).dataset_info(source, revision=revision)
    except RepositoryNotFoundError:
        raise UsageError(
            f"there is no local folder {source!r}, and no dataset {source!r} on the Hub "
            f"({constants.ENDPOINT}) that this token can read",
            hint="check the path or the name; a private dataset needs a token (`hf auth login` or HF_TOKEN)",
        ) from None
    except RevisionNotFoundError:
        raise UsageError(
            f"the Hub dataset {source!r} has no revision {revision!r}",
            hint="give a branch, tag or commit it has (see its 'Files and versions' page)",
        ) from None
    except HfHubHTTPError as err:
        if status_of(err) in RETRY_STATUSES:
            raise _no_answer(source, f"HTTP {status_of(err)}") from None
        # gated, or refused for another reason: datasets' own message explains it
    except Exception as err:
        if not is_connection_error(err):
            raise
        raise _no_answer(source, f"{type(err).__name__}: {err}") from None


def _no_answer(source: str, why: str) -> UsageError:
    from huggingface_hub import constants

    return UsageError(
        f"there is no local folder {source!r}, and the Hub ({constants.ENDPOINT}) did not answer about a "
        f"dataset {source!r} ({why})",
        hint="check the path; for the Hub dataset, check the connection (HF_ENDPOINT) and run it again",
    )


def _media_root(media_root: str | None) -> str | None:
    """``media_root`` normalized, if it names a folder inside the output folder."""
    if media_root is None:
        return None
    norm = _safe_relpath(media_root) if media_root not in ("", ".") else "."
    if norm is None:
        raise UsageError(
            f"media root {media_root!r} is not a folder inside the output folder",
            hint="give a relative name such as --media-root media (or '.' to put the media beside the JSON)",
        )
    return norm


class _MediaWriter:
    """Writes each media file once, at its relative path; refuses paths that would leave the folder.

    Without a ``media_root`` each kind has its folder (``images/``, ``videos/``, ``audios/``); with one, every kind
    shares it, so one path names one file whatever its kind.
    """

    def __init__(self, root: Path, media_root: str | None = None, reserved: set[str] | None = None) -> None:
        self.root = root
        self.media_root = media_root
        self.reserved = reserved or set()  # first path components media may not take (the split files)
        self.written: dict[str, str] = {}  # final relative path (under its folder) -> sha256
        self.renamed: dict[str, str] = {}
        self.count = 0

    def _folder(self, kind: str) -> str:
        return kind if self.media_root is None else self.media_root

    def write(self, kind: str, item: dict[str, Any]) -> str:
        data: bytes = item["bytes"]
        stored = item.get("path") or ""
        if is_remote_media(stored):  # fetched from its URL at build time: the record names it again
            return stored
        digest = hashlib.sha256(data).hexdigest()
        rel = _safe_relpath(stored)
        if rel is None:
            ext = posixpath.splitext(stored)[1][:10]
            rel = f"_outside/{digest[:16]}{ext}"
        folder = self._folder(kind)
        key = f"{folder}/{rel}"
        if (key in self.written and self.written[key] != digest) or rel.split("/", 1)[0] in self.reserved:
            rel = f"_conflicts/{digest[:16]}/{rel}"
            key = f"{folder}/{rel}"
        if rel != stored:
            self.renamed[stored] = rel
        if key not in self.written:
            target = self.root / folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self.written[key] = digest
            self.count += 1
        return rel


def _safe_relpath(path: str) -> str | None:
    """``path`` normalized, if it is relative and stays inside its folder; else None."""
    if not path or "://" in path or path.startswith(("/", "\\", "~")) or os.path.isabs(path):
        return None
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm.startswith("../") or norm == ".." or norm == ".":
        return None
    return norm


def _mixed_one_root(source: Any) -> bool:
    """Whether a built folder had one media root and a split that mixes media kinds: its export keeps
    one tree (the media beside the JSON, at their relative paths), as Qwen-VL resolves every path
    against one ``data_path``."""
    if not os.path.isdir(source):
        return False
    from .build.layout import read_manifest

    manifest = read_manifest(source)
    splits = manifest.get("splits") or {}
    return manifest.get("one_media_root") is True and any(
        len(split.get("media_kinds") or ()) > 1 for split in splits.values() if isinstance(split, dict)
    )


def _peer_layout(streams: dict[str, Any], layout: str | None) -> bool:
    """Whether the export is in a peer trainer's layout (asked for, or the first row's own)."""
    if layout is not None:
        return layout != "llava"
    for stream in streams.values():
        for row in stream.take(1):
            stored = row.get("metadata")
            metadata = at_full_depth(json.loads, stored) if isinstance(stored, str) else (stored or {})
            shape = metadata.get(LAYOUT_KEY) if isinstance(metadata, dict) else None
            return isinstance(shape, dict) and shape.get("layout", "llava") != "llava"
    return False


#: LLaMA-Factory's dataset_info.json entry for each layout of its own
_LF_ENTRIES: dict[str, dict[str, Any]] = {
    "sharegpt": {"formatting": "sharegpt", "columns": {"messages": "conversations"}},
    "messages": {
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "observation_tag": "observation",
            "function_tag": "function_call",
            "system_tag": "system",
        },
    },
}


#: marks, in the layouts a split was written in, a dataset_info.json entry's own (its JSON follows)
_ENTRY_MARK = "entry:"


def _dataset_info(written: dict[str, set[str]], root: str | None) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json``: one entry per split written in one of its layouts; a split
    built from an entry of a dataset_info.json gets that entry back, under its name, naming the split's file."""
    info: dict[str, Any] = {}
    for name, layouts in written.items():
        kinds = layouts - {"images", "videos", "audios"}
        if len(kinds) == 1 and next(iter(kinds)).startswith(_ENTRY_MARK):
            given = json.loads(next(iter(kinds))[len(_ENTRY_MARK) :])
            entry_name = given.pop("name")
            info[entry_name] = {"file_name": f"{name}.json", **given}
            if root not in (None, "."):
                info[entry_name]["media_dir"] = root
            continue
        if len(kinds) != 1 or next(iter(kinds)) not in _LF_ENTRIES:
            continue
        entry = json.loads(json.dumps(_LF_ENTRIES[next(iter(kinds))]))
        entry = {"file_name": f"{name}.json", **entry}
        for column in ("images", "videos", "audios"):
            if column in layouts:
                entry["columns"][column] = column
        if root not in (None, "."):
            entry["media_dir"] = root
        info[name] = entry
    return info


def _records(
    stream: Any, media: _MediaWriter, split: str, layout: str | None = None, seen: set[str] | None = None
) -> Iterator[Any]:
    """Records of a split, in order; consecutive samples of one pack become one list again."""
    pack: list[dict[str, Any]] = []
    pack_key: tuple[str, int] | None = None
    for row in tqdm(stream, desc=f"Exporting {split}", unit=" rows"):
        record, pack_info = _to_llava(row, media, layout, seen)
        key = (row.get("source") or "", pack_info[0]) if pack_info is not None else None
        if pack and key != pack_key:
            yield pack
            pack = []
        if key is not None:
            pack.append(record)
            pack_key = key
        else:
            yield record
    if pack:
        yield pack


def _to_llava(
    row: dict[str, Any], media: _MediaWriter, layout: str | None = None, seen: set[str] | None = None
) -> tuple[dict[str, Any], list[int] | None]:
    if "messages" in row and "conversations" not in row:
        from .chat import from_messages

        conversations = from_messages(
            {
                "id": row["id"],
                "messages": row["messages"],
                "images": row["images"],
                "videos": row["videos"],
                "audios": row.get("audios") or [],
            }
        )["conversations"]
    else:
        conversations = row["conversations"]
    paths: dict[str, list[Any]] = {
        kind: [media.write(kind, item) for item in row.get(kind) or []]  # no audios before audio was media
        for kind in ("images", "audios")
    }
    frames = row.get("video_frames") or []  # none before videos could be given as frames
    paths["videos"] = [
        media.write("videos", item)
        if item is not None
        else [media.write("videos", frame) for frame in (frames[i] if i < len(frames) else ())]
        for i, item in enumerate(row.get("videos") or [])
    ]
    stored = row.get("metadata")
    metadata = at_full_depth(json.loads, stored) if isinstance(stored, str) else dict(stored or {})
    pack = metadata.pop(PACK_KEY, None)
    shape = metadata.pop(LAYOUT_KEY, None)
    fixes = (shape or {}).get("chat") or {}  # turns the messages do not give back (a messages build)
    turns = [(t["from"], t["value"]) for t in conversations]
    for i, fix in fixes.items():
        turns[int(i)] = (fix.get("from", turns[int(i)][0]), fix.get("value", turns[int(i)][1]))
    try:
        record = render(row["id"], paths, turns, metadata, shape, layout)
    except LayoutError as err:
        raise UsageError(
            str(err), hint="export it with another --layout (llava, sharegpt or messages)"
        ) from None
    entry = (shape or {}).get(ENTRY_KEY) if layout is None else None
    if isinstance(entry, dict):  # a dataset_info.json entry's record: back in the entry's own shape
        record = restore_record(record, entry)
        if seen is not None:
            seen.add(_ENTRY_MARK + json.dumps({k: v for k, v in entry.items() if k != "fix"}))
    elif seen is not None:
        seen.add(layout or (shape or {}).get("layout", "llava"))
    if seen is not None:
        seen.update(k for k in ("images", "videos", "audios") if k in record)
    return record, pack


def _write_json_array(f: IO[str], records: Iterator[Any]) -> int:
    """Write records as a JSON array, one record at a time (memory stays bounded)."""
    n = 0
    f.write("[")
    for record in records:
        f.write(",\n" if n else "\n")
        f.write(at_full_depth(functools.partial(json.dumps, ensure_ascii=False), record))
        n += 1
    f.write("\n]\n" if n else "]\n")
    return n
