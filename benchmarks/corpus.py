"""Generate a realistic LLaVA corpus for the benchmarks.

``make_corpus(root, n_samples)`` writes ``root/data.json`` (a LLaVA JSON array) and ``root/images/`` with
LLaVA-665K-like subfolders (``coco/train2017``, ``gqa/images``, ``ocr_vqa/images``, ``textvqa/train_images``,
``vg/VG_100K``). Records: ~10% text-only, ~65% one image, ~15% two, ~10% three; 1 to 4 question/answer
pairs; a few integer ids, as in real files. Every image is a distinct photo-like JPEG (smooth shapes plus
sensor-like noise) at a COCO-like size (640x480, 480x640, 640x427, 500x375), quality 78-90: 60-130 KB
each, so 20,000 samples are about 2 GB.

``make_big_json(path, target_bytes)`` writes a text-heavy LLaVA JSON array of about ``target_bytes``
(the reader's memory benchmark), streaming it out record by record.

Usage: ``python benchmarks/corpus.py --out DIR [--samples N] [--small]`` prints the corpus' statistics.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SUBFOLDERS = ("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K")
SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))
NOISE_TILE = 960
WORDS = (
    "the a of in on with and to is what where which how many color left right top bottom person people "
    "car bus train dog cat table chair window street sign text book cover title author red blue green "
    "white black yellow wooden large small two three near behind front holding wearing standing sitting "
    "image picture photo shows there are it this that can be seen visible background foreground describe "
    "detail scene object objects building sky tree grass water road playing looking walking man woman child"
).split()

_NOISE_BANK: list[np.ndarray] = []


def _noise(seed: int) -> np.ndarray:
    if not _NOISE_BANK:
        for i in range(8):
            rng = np.random.default_rng(1000 + i)
            _NOISE_BANK.append(rng.integers(-16, 17, (NOISE_TILE, NOISE_TILE, 1), dtype=np.int16))
    return _NOISE_BANK[seed % len(_NOISE_BANK)]


def photo_jpeg(seed: int, size: tuple[int, int] = (640, 480), quality: int = 85) -> bytes:
    """A distinct photo-like JPEG: smooth colour fields, mid-scale structure and sensor-like noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC
    )
    mid = Image.fromarray(rng.integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR
    )
    arr = (np.asarray(low, dtype=np.int16) * 3 + np.asarray(mid, dtype=np.int16) * 2) // 5
    y, x = int(rng.integers(0, NOISE_TILE - h)), int(rng.integers(0, NOISE_TILE - w))
    arr += _noise(seed)[y : y + h, x : x + w]
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _sentence(rng: np.random.Generator, lo: int, hi: int) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(lo, hi)))
    return " ".join(words).capitalize()


def _record(i: int, rng: np.random.Generator, image_paths: list[str], answer_words: tuple[int, int]) -> dict:
    turns = int(rng.choice([1, 1, 2, 3, 4]))
    conversations = []
    for t in range(turns):
        question = _sentence(rng, 5, 16) + "?"
        if t == 0 and image_paths:
            question = "<image>\n" * len(image_paths) + question
        conversations.append({"from": "human", "value": question})
        conversations.append({"from": "gpt", "value": _sentence(rng, *answer_words) + "."})
    record: dict[str, Any] = {"id": i if i % 97 == 0 else f"{i:012d}"}
    if len(image_paths) == 1:
        record["image"] = image_paths[0]
    elif image_paths:
        record["image"] = image_paths
    record["conversations"] = conversations
    return record


def plan(n_samples: int, seed: int = 0) -> tuple[list[dict], list[tuple[str, int, tuple[int, int], int]]]:
    """The records, and the images to draw: (relative path, seed, size, quality)."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    images: list[tuple[str, int, tuple[int, int], int]] = []
    for i in range(n_samples):
        n_images = int(rng.choice([0, 1, 2, 3], p=[0.10, 0.65, 0.15, 0.10]))
        paths = []
        for _ in range(n_images):
            k = len(images)
            folder = SUBFOLDERS[k % len(SUBFOLDERS)]
            path = f"{folder}/{k:012d}.jpg"
            images.append((path, seed * 10_000_000 + k, SIZES[k % len(SIZES)], 78 + (k * 7) % 13))
            paths.append(path)
        records.append(_record(i, rng, paths, (8, 40)))
    return records, images


def _draw(args: tuple[str, str, int, tuple[int, int], int]) -> int:
    root, path, seed, size, quality = args
    data = photo_jpeg(seed, size, quality)
    target = Path(root) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)


def make_corpus(root: Path, n_samples: int, *, seed: int = 0, workers: int | None = None) -> dict[str, Any]:
    """Write the corpus under ``root`` (reused when the same one is already there). Returns its stats."""
    stamp = root / "corpus-stats.json"
    if stamp.exists():
        stats = json.loads(stamp.read_text())
        if stats.get("samples") == n_samples and stats.get("seed") == seed:
            return dict(stats)
    records, images = plan(n_samples, seed)
    image_root = root / "images"
    image_root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(image_root), p, s, size, q) for p, s, size, q in images]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        image_bytes = sum(pool.map(_draw, jobs, chunksize=64))
    (root / "data.json").write_text(json.dumps(records, indent=1))
    kinds = Counter(
        len(r.get("image", [])) if isinstance(r.get("image"), list) else int("image" in r) for r in records
    )
    stats = {
        "samples": n_samples,
        "seed": seed,
        "images": len(images),
        "image_bytes": image_bytes,
        "json_bytes": (root / "data.json").stat().st_size,
        "images_per_sample": {str(k): v for k, v in sorted(kinds.items())},
        "turn_pairs_mean": float(np.mean([len(r["conversations"]) // 2 for r in records])),
    }
    stamp.write_text(json.dumps(stats, indent=1))
    return stats


def _big_records(seed: int) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    i = 0
    while True:
        n_images = int(rng.choice([0, 1, 2], p=[0.2, 0.7, 0.1]))
        paths = [f"{SUBFOLDERS[(i + k) % len(SUBFOLDERS)]}/{i:012d}_{k}.jpg" for k in range(n_images)]
        yield _record(i, rng, paths, (30, 120))
        i += 1


def make_big_json(path: Path, target_bytes: int, *, seed: int = 0) -> dict[str, Any]:
    """A LLaVA JSON array of about ``target_bytes`` (reused when present). Returns {records, bytes}."""
    stamp = path.with_suffix(".stats.json")
    if path.exists() and stamp.exists():
        stats = json.loads(stamp.read_text())
        if stats.get("target_bytes") == target_bytes and stats.get("seed") == seed:
            return dict(stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    written, count = 0, 0
    with open(path, "w") as f:
        f.write("[\n")
        for record in _big_records(seed):
            text = ("" if count == 0 else ",\n") + json.dumps(record, indent=1)
            f.write(text)
            written += len(text)
            count += 1
            if written >= target_bytes:
                break
        f.write("\n]\n")
    stats = {"records": count, "bytes": path.stat().st_size, "target_bytes": target_bytes, "seed": seed}
    stamp.write_text(json.dumps(stats))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=None, help="default 20000 (200 with --small)")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    n = args.samples or (200 if args.small else 20_000)
    stats = make_corpus(args.out, n)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
