"""Cheap image check per image: Pillow's ``open`` + ``verify`` against ``quick_image_ok``, bytes in memory.

``llava-hf build`` checks that every image opens: the cheap check of ``llava_hf.media.files.check_image``
is ``PIL.Image.open(BytesIO(data))`` + ``verify()`` (Pillow's Python header parser, after a copy of the
bytes). ``llava_hf.media.images.quick_image_ok`` walks the same headers without Pillow and answers
``True`` only when Pillow would accept the file (else the caller asks Pillow). One process reads N
corpus JPEGs into memory, then times, interleaved over R rounds: (a) Pillow's open + verify, exactly
as ``check_image`` calls it; (b) ``quick_image_ok(bytes)``; (c) ``quick_image_ok`` on ``memoryview``
slices of one buffer holding every image (how the builder passes them, no copy); (d)
``check_image(path, data=bytes)`` as it stands (the shortcut first, once wired in). Per-image
microseconds are medians over the rounds of wall time, with CPU time and the speed-up against (a);
"accepted" is the fraction of images each said yes to (for (b) and (c), the rest would go to Pillow).

Usage: ``python benchmarks/bench_image_check.py [--small] [--images N] [--rounds R]``
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, corpus_location, machine_facts, print_facts, print_table

FULL_SAMPLES = 20_000
SMALL_SAMPLES = 200
FULL_IMAGES = 5_000


def _image_paths(corpus: Path, limit: int) -> list[Path]:
    paths: list[Path] = []
    for record in json.loads((corpus / "data.json").read_text()):
        image = record.get("image")
        for p in [] if image is None else [image] if isinstance(image, str) else image:
            paths.append(corpus / "images" / p)
    return paths[:limit]


def _timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one pass, and how many images it accepted."""
    t0, c0 = time.perf_counter(), time.process_time()
    accepted = run()
    return time.perf_counter() - t0, time.process_time() - c0, accepted


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=None, help=f"corpus size (default {FULL_SAMPLES})")
    parser.add_argument("--images", type=int, default=None, help=f"images checked (default {FULL_IMAGES})")
    parser.add_argument("--rounds", type=int, default=None, help="passes per contender (default 5; 3 small)")
    args = parser.parse_args()
    _, samples, corpus = corpus_location(args, FULL_SAMPLES, SMALL_SAMPLES)
    rounds = args.rounds or (3 if args.small else 5)

    from corpus import make_corpus

    make_corpus(corpus, samples)
    from PIL import Image

    from llava_hf.media.files import check_image
    from llava_hf.media.images import quick_image_ok

    paths = _image_paths(corpus, args.images or (SMALL_SAMPLES if args.small else FULL_IMAGES))
    datas = [p.read_bytes() for p in paths]
    names = [str(p) for p in paths]
    buffer = bytearray(b"".join(datas))
    spans, offset = [], 0
    for data in datas:
        spans.append((offset, offset + len(data)))
        offset += len(data)
    view = memoryview(buffer)

    def pillow() -> int:
        accepted = 0
        for data in datas:
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.verify()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                continue
            accepted += 1
        return accepted

    def checked() -> int:
        return sum(check_image(name, data=data) is None for name, data in zip(names, datas))

    def quick_bytes() -> int:
        return sum(quick_image_ok(data) for data in datas)

    def quick_views() -> int:
        return sum(quick_image_ok(view[a:b]) for a, b in spans)

    contenders: dict[str, Callable[[], int]] = {
        "(a) Pillow: open + verify": pillow,
        "(b) quick_image_ok(bytes)": quick_bytes,
        "(c) quick_image_ok(memoryview slice)": quick_views,
        "(d) check_image(path, data=bytes)": checked,
    }
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    accepted: dict[str, int] = {}
    for run in contenders.values():  # warm-up: imports, Pillow's plugin registry
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            w, c, ok = _timed(run)
            wall[name].append(w)
            cpu[name].append(c)
            accepted[name] = ok
    view.release()

    n = len(datas)
    base = statistics.median(wall[next(iter(contenders))])
    print_facts(
        "Cheap image check",
        machine_facts(),
        [
            f"{n:,} corpus JPEGs ({sum(map(len, datas)) / 1e6:.0f} MB) held in memory; {rounds} passes per "
            "contender, interleaved; medians",
        ],
    )
    rows: list[list[Any]] = []
    for name in contenders:
        us = [w / n * 1e6 for w in wall[name]]
        rows.append(
            [
                name,
                f"{statistics.median(us):.1f}",
                f"{min(us):.1f}-{max(us):.1f}",
                f"{statistics.median(cpu[name]) / n * 1e6:.1f}",
                f"{base / statistics.median(wall[name]):.1f}x",
                f"{accepted[name] / n:.1%}",
            ]
        )
    print_table(["contender", "us/image", "range", "CPU us/image", "speed-up vs (a)", "accepted"], rows)


if __name__ == "__main__":
    main()
