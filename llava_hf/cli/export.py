"""``llava-hf export``: a built folder or Hub dataset → LLaVA JSON + media folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_command

EXAMPLES = [
    "llava-hf export out/ --output-dir llava_json/          # a folder written by 'llava-hf build'",
    "llava-hf export org/my-llava-data --revision v1.0 --output-dir v1/   # a Hub dataset at a tag",
    "llava-hf export out/ --split train --output-dir train_only/",
    "llava-hf export org/my-llava-data --config coco --output-dir coco/   # one config of several",
    "llava-hf export out/ --output-dir qwen/ --media-root media   # images and videos under qwen/media/",
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        subparsers,
        "export",
        help="write a llava-hf dataset back as LLaVA JSON + image/video folders",
        description="""
        Export a llava-hf dataset (a folder written by 'llava-hf build', or anything
        datasets.load_dataset takes, such as a Hub repository) back to LLaVA's format:
        DIR/{split}.json plus every image, video and audio file at its original relative path under
        DIR/images/, DIR/videos/ and DIR/audios/, byte for byte. Train with it as LLaVA, Qwen-VL or
        LLaMA-Factory read it: --image-folder DIR/images --video-folder DIR/videos. With --media-root
        NAME, images, videos and audio all go under DIR/NAME/ at their original relative paths (one root, as Qwen-VL's
        data_path and LLaMA-Factory's media_dir read a file that mixes them).
        """,
        examples=EXAMPLES,
    )
    parser.add_argument("source", metavar="SOURCE", help="a built folder or a dataset id / path")
    parser.add_argument("--output-dir", "-o", required=True, metavar="DIR", help="the folder to write")
    parser.add_argument("--split", default=None, help="export only this split")
    parser.add_argument("--config", default=None, help="the config to export (datasets with several)")
    parser.add_argument("--revision", default=None, help="a Hub branch, tag or commit")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another llava-hf run is writing to DIR, wait for it to end (default: fail at once)",
    )
    parser.add_argument(
        "--media-root",
        default=None,
        metavar="NAME",
        help="write images, videos and audio under one folder DIR/NAME ('.' for DIR itself) at their original "
        "relative paths, instead of DIR/images and DIR/videos",
    )
    parser.add_argument(
        "--layout",
        default=None,
        choices=("llava", "sharegpt", "messages", "swift"),
        help="write the records in this layout (default: the one each record came in; a peer trainer's "
        "layout puts the media beside the JSON and, for LLaMA-Factory, writes DIR/dataset_info.json)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_llava

    result = export_llava(
        args.source,
        args.output_dir,
        split=args.split,
        revision=args.revision,
        config=args.config,
        wait=args.wait,
        media_root=args.media_root,
        layout=args.layout,
    )
    for split, n in result.records.items():
        print(f"Wrote {args.output_dir}/{split}.json: {n} record(s)")
    if result.media_root is not None:
        print(f"Wrote {result.media_files} media file(s) under {result.media_root} (one root for every kind)")
    else:
        audios = f" and {args.output_dir}/audios" if (Path(args.output_dir) / "audios").is_dir() else ""
        print(
            f"Wrote {result.media_files} media file(s) under {args.output_dir}/images and "
            f"{args.output_dir}/videos{audios}"
        )
    if result.renamed:
        print(
            f"  {len(result.renamed)} unsafe or clashing media path(s) were written elsewhere (see the JSON)"
        )
    return 0
