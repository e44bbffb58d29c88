"""Recipe: LLaVA-Instruct-150K and the LLaVA-1.5 mix (llava_v1_5_mix665k.json) -> a Hugging Face dataset.

Download the JSON files from https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K and the
images as LLaVA's README describes (haotian-liu/LLaVA, "Visual Instruction Tuning"), laid out as::

    IMAGES/coco/train2017/000000033471.jpg       # COCO 2017 train
    IMAGES/gqa/images/2354786.jpg
    IMAGES/ocr_vqa/images/140031996X.jpg          # many are GIFs named .jpg: read as images, kept as they are
    IMAGES/textvqa/train_images/011e7e629fb9ae7b.jpg
    IMAGES/vg/VG_100K/2356347.jpg  IMAGES/vg/VG_100K_2/1.jpg

The 665K mix names its images relative to IMAGES (``coco/train2017/...``); the 150K files name
COCO images by their bare file name, so their root is IMAGES/coco/train2017 (override with
--coco-folder). Integer and string ids mix in the 665K file (ids become strings), its ShareGPT rows
are text-only (they build with empty image lists), and every key besides id/image/conversations
(for example ``model``) is kept in the ``metadata`` column.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import BuildPlan, Subset, add_common_options, make_parser, pick_subsets, plan_for, run

COCO = "coco/train2017"

SUBSETS = (
    Subset(
        "mix665k",
        ("llava_v1_5_mix665k.json",),
        "the LLaVA-1.5 665K instruction mix (coco, gqa, ocr_vqa, textvqa, vg, text-only ShareGPT)",
    ),
    Subset("instruct150k", ("llava_instruct_150k.json",), "LLaVA-Instruct-150K", image_subdir=COCO),
    Subset("instruct80k", ("llava_instruct_80k.json",), "LLaVA-Instruct-80K", image_subdir=COCO),
    Subset("conversation58k", ("conversation_58k.json",), "multi-turn conversations", image_subdir=COCO),
    Subset("detail23k", ("detail_23k.json",), "detailed descriptions", image_subdir=COCO),
    Subset("complex_reasoning77k", ("complex_reasoning_77k.json",), "complex reasoning", image_subdir=COCO),
)

EXAMPLES = [
    "python dataset_scripts/llava_instruct.py --data-dir LLaVA-Instruct-150K --image-folder images "
    "--subset mix665k --output-dir out/llava",
    "python dataset_scripts/llava_instruct.py --data-dir LLaVA-Instruct-150K --image-folder images "
    "--output-dir out/llava --on-error skip --num-proc 8",
    "python dataset_scripts/llava_instruct.py --data-dir LLaVA-Instruct-150K --image-folder images "
    "--subset instruct150k --output-dir out/llava --push me/llava-instruct",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("llava_instruct.py", __doc__ or "", EXAMPLES)
    parser.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="folder holding the downloaded JSON files (llava_v1_5_mix665k.json, ...)",
    )
    parser.add_argument(
        "--image-folder",
        required=True,
        metavar="IMAGES",
        help="root holding coco/, gqa/, ocr_vqa/, textvqa/, vg/",
    )
    parser.add_argument(
        "--coco-folder",
        metavar="DIR",
        help="COCO train2017 images for the 150K files (default: IMAGES/coco/train2017)",
    )
    add_common_options(parser, subsets=SUBSETS)
    return parser


def plans(args: argparse.Namespace) -> list[BuildPlan]:
    data_dir = Path(args.data_dir)
    out = []
    for subset in pick_subsets(SUBSETS, args.subset, data_dir):
        plan = plan_for(subset, data_dir, args.image_folder, None)
        if subset.image_subdir == COCO and args.coco_folder:
            plan = BuildPlan(plan.config, plan.data_files, image_folder=args.coco_folder)
        out.append(plan)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run(plans, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
