"""The reference passes of ``bench_validate.py``, each run as its own small script (a fresh process).

``python _validate_passes.py exists FILE IMAGE_FOLDER``: what training scripts check before they start
(Qwen-VL's ``check_image``): ``json.load``, ``os.path.exists`` per image reference, and the count of
``<image>`` tags of each record against its images.

``python _validate_passes.py pillow1|pillow2 FILE IMAGE_FOLDER``: ``json.load``, then every distinct
image file decoded once with Pillow (``Image.open(path).load()``, in first-use order), in 1 or 2
processes.

Each prints one JSON line of counts. Only the standard library is imported up front, so the start-up
cost is the interpreter's, as for a user's own script.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _image_list(item: dict[str, Any]) -> list[str]:
    image = item.get("image")
    return [] if image is None else [image] if isinstance(image, str) else list(image)


def existence_pass(json_file: str, image_folder: str) -> dict[str, int]:
    """``json.load``, ``os.path.exists`` per image, ``<image>`` tags per record against its images."""
    with open(json_file) as f:
        data = json.load(f)
    references = missing = mismatched = 0
    for item in data:
        images = _image_list(item)
        for path in images:
            references += 1
            if not os.path.exists(os.path.join(image_folder, path)):
                missing += 1
        tags = sum(turn["value"].count("<image>") for turn in item["conversations"])
        if tags != len(images):
            mismatched += 1
    return {"records": len(data), "images": references, "missing": missing, "tag_mismatches": mismatched}


def _decode(paths: list[str]) -> int:
    from PIL import Image

    failed = 0
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
        except Exception:  # counted: the benchmark fails the run on any
            failed += 1
    return failed


def pillow_pass(json_file: str, image_folder: str, processes: int) -> dict[str, int]:
    """``json.load``, then every distinct image file decoded once with Pillow (in first-use order)."""
    with open(json_file) as f:
        data = json.load(f)
    records = len(data)
    paths = list(dict.fromkeys(os.path.join(image_folder, p) for item in data for p in _image_list(item)))
    del data
    if processes <= 1:
        failed = _decode(paths)
    else:
        from concurrent.futures import ProcessPoolExecutor

        step = 2_000
        with ProcessPoolExecutor(max_workers=processes) as pool:
            failed = sum(pool.map(_decode, [paths[a : a + step] for a in range(0, len(paths), step)]))
    return {"records": records, "files": len(paths), "failed": failed}


def main() -> None:
    kind, json_file, image_folder = sys.argv[1:4]
    if kind == "exists":
        out = existence_pass(json_file, image_folder)
    elif kind in ("pillow1", "pillow2"):
        out = pillow_pass(json_file, image_folder, 2 if kind == "pillow2" else 1)
    else:
        raise SystemExit(f"unknown pass {kind!r}; use exists, pillow1 or pillow2")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
