"""The dataset card of a built folder or a Hub repository: YAML that `datasets` reads, stats that trainers read.

:func:`make_card` renders ``llava_hf/card/dataset_card.md`` (a Jinja template, through huggingface_hub's
:meth:`DatasetCard.from_template`) from a built output folder:

* the YAML declares ``configs`` (every config: this one and those already in ``existing``),
  ``dataset_info`` (features exactly as ``datasets`` writes them, split sizes), license,
  task categories, size category, pretty name, and a ``llava_hf`` block recording the format version
  and the llava-hf version that wrote the data;
* the body holds statistics computed from the Parquet files (columns read with pyarrow; image sizes
  from the headers of a bounded sample), a preview image and a usage snippet.

Generated parts of the body sit between ``<!-- llava-hf:begin NAME -->`` and
``<!-- llava-hf:end NAME -->`` markers. Given ``existing`` (the card already in the repository), only
those parts are replaced; everything outside them is kept as the user wrote it.

:func:`make_preview` draws a PNG contact sheet of the first images, byte-for-byte deterministic.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData
from pyarrow.parquet.core import ParquetReader

from ..build.layout import REJECTED as _REJECTED
from ..build.layout import read_manifest, split_files
from ..build.writer import leaf_index, leaf_indices, open_reader
from ..errors import UsageError
from ..media.images import quick_image_size
from ..schema import FORMAT_VERSION
from ..utils.logging import get_logger
from .stats import CardStats, FileStats, add_batch, merge_files, sample_image_sizes, text_column

__all__ = ["MARKER_BEGIN", "MARKER_END", "make_card", "make_preview"]

logger = get_logger(__name__)

#: Generated parts of a card's body sit between these markers (``NAME`` is e.g. ``stats:default``).
MARKER_BEGIN = "<!-- llava-hf:begin {name} -->"
MARKER_END = "<!-- llava-hf:end {name} -->"
_SECTION_RE = re.compile(
    r"<!-- llava-hf:begin (?P<name>[^\s>]+) -->.*?<!-- llava-hf:end (?P=name) -->", flags=re.DOTALL
)

_TEMPLATE = "dataset_card.md"


_MIXTURE = "mixture.json"
_SPLIT_ORDER = ("train", "validation", "test")
_TASKS = ("image-text-to-text", "visual-question-answering")
_VIDEO_TASK = "video-text-to-text"
#: Bytes per read when only the first rows of a row group are wanted (media pages are ~1 MB).
_READ_BUFFER = 256 << 10
_MAX_SOURCES = 30
_SIZE_BINS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


# --------------------------------------------------------------------------------------------- folder


@dataclass
class _Split:
    name: str
    files: list[Path]
    num_rows: int
    num_bytes: int
    download_size: int


@dataclass
class _Folder:
    root: Path
    manifest: dict[str, Any]
    splits: list[_Split]
    schema: pa.Schema

    @property
    def files(self) -> Iterator[Path]:
        for split in self.splits:
            yield from split.files


def _split_key(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER), name)


def _open_folder(folder: str | Path) -> _Folder:
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(
            f"{root}: not a folder; make_card needs a built output folder",
            hint="build one with `llava-hf build DATA.json --output-dir OUT`",
        )
    manifest = read_manifest(root)
    by_split = split_files(root)
    manifest_splits = manifest.get("splits")
    splits: list[_Split] = []
    schema: pa.Schema | None = None
    for name in sorted(by_split, key=_split_key):
        files = sorted(by_split[name])
        rows = 0
        nbytes = 0
        for path in files:
            meta = pq.read_metadata(path)
            rows += meta.num_rows
            nbytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if schema is None:
                schema = pq.read_schema(path)
        entry = (manifest_splits or {}).get(name) if isinstance(manifest_splits, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("num_bytes"), int):
            nbytes = entry["num_bytes"]
        splits.append(_Split(name, files, rows, nbytes, sum(p.stat().st_size for p in files)))
    assert schema is not None
    return _Folder(root, manifest, splits, schema)


def _buffered(path: Path) -> ParquetReader:
    """A reader of ``path`` whose column chunks are read page by page (a few rows of media read little)."""
    return open_reader(str(path), buffer_size=_READ_BUFFER)


# ---------------------------------------------------------------------------------------------- stats


def _collect_stats(folder: _Folder) -> CardStats:
    stats = CardStats()
    texts = text_column(folder.schema.names)
    for path in folder.files:
        with contextlib.closing(open_reader(str(path), buffer_size=0)) as reader:
            columns = leaf_indices(reader, (texts, "source"))
            for name, leaf in (
                ("images", "path"),
                ("videos", "path"),
                ("video_info", "duration"),
                ("audios", "path"),
                ("audio_info", "duration"),
            ):
                index = leaf_index(reader, name, leaf)
                if index is not None:
                    columns.append(index)
            groups = range(reader.num_row_groups)
            for batch in reader.iter_batches(4096, row_groups=groups, column_indices=sorted(columns)):
                add_batch(stats, batch, texts)
    if stats.images:
        _sample_image_sizes(folder, stats)
    return stats


def _sample_image_sizes(folder: _Folder, stats: CardStats) -> None:
    """Width × height of a sample of images (see :func:`sample_image_sizes`), read from their headers."""
    with contextlib.ExitStack() as readers:
        groups: list[tuple[ParquetReader, int]] = []
        for path in folder.files:
            reader = readers.enter_context(contextlib.closing(_buffered(path)))
            meta = reader.metadata
            groups.extend((reader, i) for i in range(meta.num_row_groups) if meta.row_group(i).num_rows)
        sample_image_sizes(stats, groups, _first_sizes)


def _first_sizes(group: tuple[ParquetReader, int], k: int) -> Iterator[tuple[int, int] | None]:
    """The sizes of the first ``k`` images of a row group (None: Pillow cannot open it); only the
    pages that hold them are read (a buffered reader)."""
    reader, index = group
    leaf = leaf_index(reader, "images", "bytes")
    if leaf is None:
        return
    taken = 0
    for chunk in reader.iter_batches(k, row_groups=[index], column_indices=[leaf]):
        for value in pc.list_flatten(chunk.column(0)).field("bytes")[: k - taken]:
            taken += 1
            yield _header_size(value.as_py())
        if taken >= k:
            return


def _header_size(data: bytes | None) -> tuple[int, int] | None:
    """The size Pillow reads from an image's header (as a build's image check does), or None."""
    from PIL import Image, UnidentifiedImageError

    if data is None:
        return None
    size = quick_image_size(data)
    if size is not None:
        return size
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ formatting


def _fmt_int(n: int | float) -> str:
    return f"{int(n):,}"


def _fmt_num(x: float) -> str:
    return f"{x:,.1f}" if abs(x - round(x)) > 1e-9 else f"{round(float(x)):,}"


def _fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _fmt_share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _escape(text: str) -> str:
    """Make a value safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _distribution(label: str, values: np.ndarray, fmt: Any = _fmt_num) -> dict[str, str] | None:
    if values.size == 0:
        return None
    p25, p50, p75, p95 = np.percentile(values, [25, 50, 75, 95])
    return {
        "label": label,
        "min": fmt(values.min()),
        "p25": fmt(p25),
        "p50": fmt(p50),
        "p75": fmt(p75),
        "p95": fmt(p95),
        "max": fmt(values.max()),
        "mean": fmt(round(float(values.mean()), 1)),
    }


def _seconds(x: float) -> str:
    return f"{x:.1f} s"


def _size_category(n: int) -> str:
    for bound, label in _SIZE_BINS:
        if n < bound:
            return label
    return "n>1T"


# ------------------------------------------------------------------------------------------- template


def _template_text() -> str:
    """The Jinja template of the card, ``dataset_card.md`` beside this module (package data)."""
    from importlib import resources

    return resources.files(__name__).joinpath(_TEMPLATE).read_text(encoding="utf-8")


def _columns(features: Any) -> list[tuple[str, str]]:
    described = {
        "id": "string",
        "images": "list of `Image()` (original bytes + relative path)",
        "videos": "list of `Video()` (original bytes + relative path)",
        "video_info": "list of `{duration, fps, num_frames, width, height, codec}`, one per video",
        "audios": "list of `Audio()` (original bytes + relative path)",
        "audio_info": "list of `{duration, sample_rate, channels, codec}`, one per audio file",
        "conversations": "list of `{from, value}` (LLaVA turns: human / gpt / system)",
        "messages": "list of `{role, content: [{type, text}]}`",
        "source": "string: the input file or mixture source of the row",
        "metadata": "`Json()`: every other key of the source record",
    }
    return [(name, described.get(name, f"`{type(feat).__name__}`")) for name, feat in features.items()]


# ------------------------------------------------------------------------------------------ YAML merge


def _merge_configs(
    existing: list[dict[str, Any]], config_name: str, data_files: dict[str, str]
) -> list[dict[str, Any]]:
    entry_files = [{"split": split, "path": glob} for split, glob in data_files.items()]
    merged: list[dict[str, Any]] = []
    found = False
    for entry in existing:
        if isinstance(entry, dict) and entry.get("config_name") == config_name:
            new_entry = {k: v for k, v in entry.items() if k not in ("data_files", "data_dir")}
            new_entry["data_files"] = entry_files
            merged.append(new_entry)
            found = True
        else:
            merged.append(entry)
    if not found:
        merged.append({"config_name": config_name, "data_files": entry_files})
    return merged


def _dataset_info_entries(card_data: DatasetCardData) -> dict[str, dict[str, Any]]:
    info = card_data.get("dataset_info")
    if isinstance(info, dict):
        return {info.get("config_name", "default"): info}
    if isinstance(info, list):
        return {e.get("config_name", "default"): e for e in info if isinstance(e, dict)}
    return {}


def _llava_version(folder: _Folder) -> str:
    from .. import __version__

    return str(folder.manifest.get("llava_hf_version") or __version__)


# ----------------------------------------------------------------------------------------- body merge


def _sections(text: str) -> list[re.Match[str]]:
    return list(_SECTION_RE.finditer(text))


def _merge_body(existing: str, generated: str) -> str:
    """``existing`` with each generated section replaced (or inserted after the previous one)."""
    text = existing
    anchor: str | None = None
    for section in _sections(generated):
        name, block = section["name"], section.group(0)
        current = {m["name"]: m for m in _sections(text)}
        if name in current:
            m = current[name]
            text = text[: m.start()] + block + text[m.end() :]
        elif anchor is not None and anchor in current:
            end = current[anchor].end()
            text = text[:end] + "\n\n" + block + text[end:]
        elif current:
            start = min(m.start() for m in current.values())
            text = text[:start] + block + "\n\n" + text[start:]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        anchor = name
    return text


# ------------------------------------------------------------------------------------------- public


def make_card(
    folder: str | Path,
    *,
    config_name: str = "default",
    data_files: dict[str, str] | None = None,
    license: str | None = None,
    pretty_name: str | None = None,
    existing: str | None = None,
    preview_path: str | None = "preview.png",
    repo_id: str | None = None,
    counted: Mapping[Path, FileStats] | None = None,
) -> DatasetCard:
    """The dataset card of a built output folder, merged into ``existing`` (the card already published).

    Args:
        folder: a built output folder (``data/{split}-NNNNN-of-NNNNN.parquet``, optional ``llava_hf.json``,
            ``rejected.jsonl``, ``mixture.json``).
        config_name: the config these files are published as.
        data_files: split → glob of this config's files in the repository; defaults to ``data/{split}-*``.
        license: a Hub license id (``apache-2.0``, ``cc-by-4.0``, ...); defaults to ``existing``'s.
        pretty_name: the card's title; defaults to ``existing``'s, else the folder name.
        existing: the text of the card already in the repository. Its YAML (other configs and their
            ``dataset_info``, any other key) and every part of its body outside the
            ``<!-- llava-hf:begin NAME -->``/``<!-- llava-hf:end NAME -->`` markers are kept.
        preview_path: where the preview PNG (:func:`make_preview`) is, relative to the card; ``None``
            for no preview.
        repo_id: what the usage snippet passes to ``load_dataset``: a Hub repository (``org/name``), or a
            folder; defaults to ``folder`` (the output it becomes, for a build in progress).
        counted: what a build counted of each Parquet file while writing it, by path (the same
            numbers as reading the files back); None reads them from the files.

    Returns:
        A :class:`huggingface_hub.DatasetCard`; ``card.save(folder / "README.md")`` writes it.
    """
    import datasets

    built = _open_folder(folder)
    if not re.fullmatch(r"[\w\-.]+", config_name):
        raise UsageError(
            f"config_name={config_name!r} is not valid: use letters, digits, '-', '_' or '.'",
            hint="for example config_name='coco_caption'",
        )
    split_names = [s.name for s in built.splits]
    if data_files is None:
        data_files = {name: f"data/{name}-*" for name in split_names}
    unknown = sorted(set(data_files) - set(split_names))
    if unknown:
        raise UsageError(
            f"data_files names splits {unknown} that {built.root} does not hold (it has {split_names})",
            hint="pass one glob per split of the built folder",
        )

    features = datasets.Features.from_arrow_schema(built.schema)
    stats = merge_files([counted[p] for p in built.files]) if counted is not None else _collect_stats(built)
    fmt = str(built.manifest.get("format") or ("messages" if "messages" in features else "conversations"))

    old_card = _parse_existing(existing) if existing else None
    old_data: dict[str, Any] = copy.deepcopy(old_card.data.to_dict()) if old_card is not None else {}
    card_data = DatasetCardData(**old_data)
    old_configs = card_data.get("configs") or []
    if not isinstance(old_configs, list):
        raise UsageError(
            f"the existing card's `configs:` is a {type(old_configs).__name__}, not a list of "
            "{config_name, data_files} entries",
            hint="fix the YAML header of the repository's README.md (see "
            "https://huggingface.co/docs/hub/datasets-manual-configuration), then push again",
        )

    # dataset_info: this config's entry replaced, the others kept (datasets' own merge).
    info = datasets.DatasetInfo(
        features=features,
        splits=datasets.SplitDict(
            {
                s.name: datasets.SplitInfo(name=s.name, num_bytes=s.num_bytes, num_examples=s.num_rows)
                for s in built.splits
            }
        ),
        download_size=sum(s.download_size for s in built.splits),
        dataset_size=sum(s.num_bytes for s in built.splits),
    )
    datasets.info.DatasetInfosDict({config_name: info}).to_dataset_card_data(card_data)
    card_data["configs"] = _merge_configs(old_configs, config_name, data_files)

    # llava_hf block: what wrote each config's data.
    llava = dict(card_data.get("llava_hf") or {})
    format_version = str(built.manifest.get("format_version") or FORMAT_VERSION)
    version = _llava_version(built)
    per_config = dict(llava.get("configs") or {})
    per_config[config_name] = {
        "format": fmt,
        "format_version": format_version,
        "llava_hf_version": version,
        "num_rows": sum(s.num_rows for s in built.splits),
        "images": stats.images,
        "videos": stats.videos,
    }
    if stats.audios:  # cards of data without audio stay as they were
        per_config[config_name]["audios"] = stats.audios
    llava.update({"format_version": format_version, "llava_hf_version": version, "configs": per_config})
    card_data["llava_hf"] = llava

    has_videos = any(int((c or {}).get("videos") or 0) > 0 for c in per_config.values())
    old_tasks = card_data.get("task_categories") or []
    old_tasks = [old_tasks] if isinstance(old_tasks, str) else list(old_tasks)
    if _VIDEO_TASK in old_tasks and any(
        c.get("config_name") not in per_config for c in card_data["configs"] if isinstance(c, dict)
    ):
        has_videos = True  # a config we know nothing about declared videos: keep its category
    tasks = [*_TASKS, *([_VIDEO_TASK] if has_videos else [])]
    card_data.task_categories = tasks + [t for t in old_tasks if t not in (*_TASKS, _VIDEO_TASK)]

    all_infos = _dataset_info_entries(card_data)
    total_rows = sum(
        int(split.get("num_examples") or 0)
        for entry in all_infos.values()
        for split in entry.get("splits") or []
        if isinstance(split, dict)
    )
    card_data.size_categories = _size_category(total_rows)
    if license is not None:
        card_data.license = license
    title = pretty_name or card_data.get("pretty_name") or built.root.resolve().name
    card_data.pretty_name = title

    context = _body_context(built, stats, features, card_data, config_name, preview_path, repo_id)
    card = DatasetCard.from_template(
        card_data, template_str=_template_text(), title=title, config_name=config_name, **context
    )
    body = _merge_body(old_card.text, card.text) if old_card is not None else card.text
    order = list(old_data) + [k for k in card_data.to_dict() if k not in old_data]
    return DatasetCard(f"---\n{card_data.to_yaml(original_order=order)}\n---\n{body.rstrip(chr(10))}\n")


def _parse_existing(existing: str) -> DatasetCard:
    import yaml

    try:
        return DatasetCard(existing, ignore_metadata_errors=True)
    except (yaml.YAMLError, ValueError) as e:
        raise UsageError(
            f"the existing card's YAML header cannot be read: {e}",
            hint="fix the YAML between the leading '---' lines of the repository's README.md, then push again",
        ) from e


def _body_context(
    built: _Folder,
    stats: CardStats,
    features: Any,
    card_data: DatasetCardData,
    config_name: str,
    preview_path: str | None,
    repo_id: str | None,
) -> dict[str, Any]:
    config_rows = []
    for name, entry in _dataset_info_entries(card_data).items():
        for split in entry.get("splits") or []:
            if isinstance(split, dict):
                config_rows.append(
                    {
                        "config": _escape(str(name)),
                        "split": _escape(str(split.get("name"))),
                        "rows": _fmt_int(int(split.get("num_examples") or 0)),
                        "size": _fmt_bytes(int(split.get("num_bytes") or 0)),
                    }
                )
    n = stats.samples
    overview = [
        ("samples", _fmt_int(n)),
        ("splits", ", ".join(f"{s.name} ({_fmt_int(s.num_rows)})" for s in built.splits)),
        ("images", _fmt_int(stats.images)),
        ("rows with images", f"{_fmt_int(stats.rows_with_images)} ({_fmt_share(stats.rows_with_images, n)})"),
        ("rows with several images", _fmt_int(stats.multi_image_rows)),
        ("videos", _fmt_int(stats.videos)),
        ("rows with videos", f"{_fmt_int(stats.rows_with_videos)} ({_fmt_share(stats.rows_with_videos, n)})"),
        ("text-only rows", f"{_fmt_int(stats.text_only)} ({_fmt_share(stats.text_only, n)})"),
        ("Parquet size", _fmt_bytes(sum(s.download_size for s in built.splits))),
    ]
    audio_durations = np.concatenate(stats.audio_durations) if stats.audio_durations else np.zeros(0)
    if stats.audios:  # after the video rows: cards of data without audio stay as they were
        total = float(audio_durations.sum())
        overview[7:7] = [
            ("audio files", _fmt_int(stats.audios)),
            (
                "rows with audio",
                f"{_fmt_int(stats.rows_with_audios)} ({_fmt_share(stats.rows_with_audios, n)})",
            ),
            ("total audio duration", f"{total / 3600:.2f} h" if total >= 3600 else _seconds(total)),
        ]
    durations = np.concatenate(stats.durations) if stats.durations else np.zeros(0)
    if durations.size:
        total = float(durations.sum())
        overview.append(
            ("total video duration", f"{total / 3600:.2f} h" if total >= 3600 else _seconds(total))
        )
    distributions = []
    turns = np.concatenate(stats.turns) if stats.turns else np.zeros(0)
    chars = np.concatenate(stats.chars) if stats.chars else np.zeros(0)
    widths = np.array([w for w, _ in stats.sizes], dtype=np.int64)
    heights = np.array([h for _, h in stats.sizes], dtype=np.int64)
    for d in (
        _distribution("turns per sample", turns),
        _distribution("text characters per sample", chars),
        _distribution("image width (px)", widths),
        _distribution("image height (px)", heights),
        _distribution("video duration", durations, _seconds),
        _distribution("audio duration", audio_durations, _seconds),
    ):
        if d is not None:
            distributions.append(d)
    image_note = ""
    if stats.images and len(stats.sizes) + stats.unreadable_images < stats.images:
        image_note = (
            f"Image sizes from the headers of a sample of {_fmt_int(len(stats.sizes))} of "
            f"{_fmt_int(stats.images)} images."
        )
    if stats.unreadable_images:
        image_note += f" {_fmt_int(stats.unreadable_images)} sampled images could not be read by Pillow."
    rejected = _rejected(built)
    mixture_text, mixture_file = _mixture(built)
    sources = stats.sources.most_common(_MAX_SOURCES)
    show_sources = len(stats.sources) > 1 or bool(mixture_text)
    split = "train" if any(s.name == "train" for s in built.splits) else built.splits[0].name
    return {
        "columns": _columns(features),
        "config_rows": config_rows,
        "preview": preview_path if (preview_path and stats.images) else None,
        "overview": overview,
        "distributions": distributions,
        "image_note": image_note.strip(),
        "rejected": sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])),
        "rejected_total": _fmt_int(sum(rejected.values())),
        "sources": [(_escape(k), _fmt_int(v)) for k, v in sources] if show_sources else [],
        "sources_note": f"top {_MAX_SOURCES} of {len(stats.sources)}"
        if len(stats.sources) > _MAX_SOURCES
        else "",
        "mixture": mixture_text,
        "mixture_file": mixture_file,
        "load_path": repo_id or _folder_name(built.root),
        "load_config": f', "{config_name}"' if config_name != "default" else "",
        "split": split,
        "has_videos": stats.videos > 0,
        "has_audios": stats.audios > 0,
        "format": "messages" if "messages" in features else "conversations",
    }


def _folder_name(root: Path) -> str:
    """The folder as ``load_dataset`` will see it (a build writes it in a working folder, renamed at the end)."""
    from ..utils.output import final_path

    return final_path(root).as_posix()


def _rejected(built: _Folder) -> dict[str, int]:
    counts = built.manifest.get("rejected")
    if isinstance(counts, dict):
        return {str(k): int(v) for k, v in counts.items() if int(v)}
    path = built.root / _REJECTED
    found: Counter[str] = Counter()
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        found[str(json.loads(line).get("code", "unknown"))] += 1
                    except (ValueError, AttributeError):
                        found["unknown"] += 1
    return dict(found)


def _mixture(built: _Folder) -> tuple[str, str]:
    """The mixture summary table (:meth:`llava_hf.mixture.Mixture.to_markdown`) and the manifest's name."""
    from ..errors import LlavaHFError
    from ..mixture import Mixture

    name = built.manifest.get("mixture") or _MIXTURE
    path = built.root / str(name)
    if not path.is_file():
        return "", ""
    try:
        return Mixture.from_file(path).to_markdown(), path.name
    except LlavaHFError as e:
        logger.warning("the card does not summarize the mixture: %s", e)
        return "", ""


def _add_thumbs(thumbs: list[Any], column: pa.Array, max_images: int, thumb: int, path: Path) -> None:
    """Append a thumbnail of the first image of each row of an ``images`` column, up to ``max_images``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    for row in column:
        if len(thumbs) >= max_images:
            return
        items = row.values if row.is_valid else None
        if items is None or len(items) == 0:
            continue
        data = items.field("bytes")[0].as_py()
        if not data:
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (thumb, thumb))
                small = ImageOps.exif_transpose(im).convert("RGB")
                small.thumbnail((thumb, thumb), Image.Resampling.BICUBIC)
                thumbs.append(small)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            logger.debug("preview: skipping an unreadable image in %s: %s", path, e)


def make_preview(folder: str | Path, *, max_images: int = 8, thumb: int = 128) -> bytes | None:
    """A PNG contact sheet of the first image of the first rows, or ``None`` when there are no images.

    The bytes depend only on the data and the arguments, so re-running on unchanged data gives the same
    file (and an unchanged re-push uploads nothing).
    """
    from PIL import Image

    if max_images < 1 or thumb < 8:
        raise UsageError(
            f"make_preview needs max_images >= 1 and thumb >= 8 (got max_images={max_images}, thumb={thumb})"
        )
    built = _open_folder(folder)
    thumbs: list[Image.Image] = []
    for path in built.files:
        with contextlib.closing(_buffered(path)) as reader:
            leaf = leaf_index(reader, "images", "bytes")
            if leaf is not None:
                groups = range(reader.num_row_groups)
                for batch in reader.iter_batches(max_images, row_groups=groups, column_indices=[leaf]):
                    _add_thumbs(thumbs, batch.column(0), max_images, thumb, path)
                    if len(thumbs) >= max_images:
                        break
        if len(thumbs) >= max_images:
            break
    if not thumbs:
        return None
    pad = 4
    cols = min(len(thumbs), 4)
    rows = math.ceil(len(thumbs) / cols)
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, rows * (thumb + pad) + pad), (245, 245, 245))
    for i, im in enumerate(thumbs):
        x = pad + (i % cols) * (thumb + pad) + (thumb - im.width) // 2
        y = pad + (i // cols) * (thumb + pad) + (thumb - im.height) // 2
        sheet.paste(im, (x, y))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False, compress_level=9)
    return out.getvalue()
