"""The body of the card: the tables and distributions the template shows, formatted for Markdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..build.stats import CardStats
from .folder import _Folder, _folder_name, _mixture, _rejected

_MAX_SOURCES = 30


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


def _columns(features: Any) -> list[tuple[str, str]]:
    described = {
        "id": "string",
        "images": "list of `Image()` (original bytes + relative path)",
        "videos": "list of `Video()` (original bytes + relative path)",
        "video_frames": "list of lists of `Image()`: a video given as its frames (`videos[i]` null), one per video",
        "video_info": "list of `{duration, fps, num_frames, width, height, codec}`, one per video",
        "audios": "list of `Audio()` (original bytes + relative path)",
        "audio_info": "list of `{duration, sample_rate, channels, codec}`, one per audio file",
        "conversations": "list of `{from, value}` (LLaVA turns: human / gpt / system)",
        "messages": "list of `{role, content: [{type, text}]}`",
        "source": "string: the input file or mixture source of the row",
        "metadata": "`Json()`: every other key of the source record",
    }
    return [(name, described.get(name, f"`{type(feat).__name__}`")) for name, feat in features.items()]


def _body_context(
    built: _Folder,
    stats: CardStats,
    features: Any,
    infos: dict[str, dict[str, Any]],
    config_name: str,
    preview_path: str | None,
    repo_id: str | None,
) -> dict[str, Any]:
    config_rows = []
    for name, entry in infos.items():
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
    if stats.frame_videos:  # after the video rows: cards of data without frame videos stay as they were
        overview.insert(
            overview.index(("videos", _fmt_int(stats.videos))) + 1,
            ("videos given as frames", f"{_fmt_int(stats.frame_videos)} ({_fmt_int(stats.frames)} frames)"),
        )
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
