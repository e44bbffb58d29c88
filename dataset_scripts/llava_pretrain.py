"""Recipe: LLaVA-Pretrain (the 558K BLIP-captioned LAION/CC/SBU images) -> a Hugging Face dataset.

Download blip_laion_cc_sbu_558k.json and images.zip from
https://huggingface.co/datasets/liuhaotian/LLaVA-Pretrain and unzip the images; records look like::

    {"id": "004539375", "image": "00453/004539375.jpg",
     "conversations": [{"from": "human", "value": "Render a clear and concise summary of the photo.\\n<image>"},
                       {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"}]}

so the image folder is the one that holds the five-digit folders (00000/, 00453/, ...). The
``<image>`` tag stands after or before the instruction, as in the file: conversations are stored as
they are. blip_laion_cc_sbu_558k_meta.json (the source URLs and BLIP captions) is not needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import BuildPlan, Subset, add_common_options, make_parser, pick_subsets, plan_for, run

SUBSETS = (
    Subset(
        "blip_laion_cc_sbu_558k",
        ("blip_laion_cc_sbu_558k.json",),
        "558K image-caption pairs for the projector pretraining stage",
    ),
)

EXAMPLES = [
    "python dataset_scripts/llava_pretrain.py --data-dir LLaVA-Pretrain --image-folder LLaVA-Pretrain/images "
    "--output-dir out/pretrain --num-proc 8",
    "python dataset_scripts/llava_pretrain.py --data-dir LLaVA-Pretrain --image-folder LLaVA-Pretrain/images "
    "--output-dir out/pretrain --on-error skip --push me/llava-pretrain --config-name default",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("llava_pretrain.py", __doc__ or "", EXAMPLES)
    parser.add_argument(
        "--data-dir", required=True, metavar="DIR", help="folder holding blip_laion_cc_sbu_558k.json"
    )
    parser.add_argument(
        "--image-folder",
        metavar="IMAGES",
        help="folder holding 00000/ ... 00659/ (default: DIR/images if present, else DIR)",
    )
    add_common_options(parser, subsets=SUBSETS)
    return parser


def plans(args: argparse.Namespace) -> list[BuildPlan]:
    data_dir = Path(args.data_dir)
    images = args.image_folder
    if images is None:
        images = str(data_dir / "images") if (data_dir / "images").is_dir() else str(data_dir)
    return [plan_for(s, data_dir, images, None) for s in pick_subsets(SUBSETS, args.subset, data_dir)]


def main(argv: Sequence[str] | None = None) -> int:
    return run(plans, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
