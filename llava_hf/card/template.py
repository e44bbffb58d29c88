"""The card itself: ``dataset_card.md`` rendered with huggingface_hub's :meth:`DatasetCard.from_template`,
its YAML merged into the existing card's (this config's entries replaced, the others kept) and its
generated body sections merged into the existing body (text outside the markers kept)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from ..build.stats import FileStats, merge_files
from ..errors import UsageError
from ..schema import FORMAT_VERSION
from .body import _body_context
from .folder import _collect_stats, _llava_version, _open_folder

#: Generated parts of a card's body sit between these markers (``NAME`` is e.g. ``stats:default``).
MARKER_BEGIN = "<!-- llava-hf:begin {name} -->"
MARKER_END = "<!-- llava-hf:end {name} -->"
_SECTION_RE = re.compile(
    r"<!-- llava-hf:begin (?P<name>[^\s>]+) -->.*?<!-- llava-hf:end (?P=name) -->", flags=re.DOTALL
)

_TEMPLATE = "dataset_card.md"

_TASKS = ("image-text-to-text", "visual-question-answering")
_VIDEO_TASK = "video-text-to-text"
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


def _size_category(n: int) -> str:
    for bound, label in _SIZE_BINS:
        if n < bound:
            return label
    return "n>1T"


def _template_text() -> str:
    """The Jinja template of the card, ``dataset_card.md`` beside this module (package data)."""
    from importlib import resources

    return resources.files(__package__ or "llava_hf.card").joinpath(_TEMPLATE).read_text(encoding="utf-8")


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
    data_urls: Mapping[str, str] | None = None,
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
        data_urls: the URL (fsspec) of each data file ``folder``'s manifest names, by its path relative to
            ``folder``, when they are not in it (a build into a URL, whose workers wrote them there).

    Returns:
        A :class:`huggingface_hub.DatasetCard`; ``card.save(folder / "README.md")`` writes it.
    """
    import datasets

    built = _open_folder(folder, data_urls)
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
    if stats.frame_videos:
        per_config[config_name]["frame_videos"] = stats.frame_videos
        per_config[config_name]["video_frames"] = stats.frames
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

    context = _body_context(built, stats, features, all_infos, config_name, preview_path, repo_id)
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
