"""Recipe: the public sets the Qwen-VL finetune docs point to -> Hugging Face datasets.

One sub-command per set; each subset becomes one config. Download the repository named below
(``hf download REPO --repo-type dataset --local-dir DIR``), unpack its image archives where the
set's README says, and pass that folder as --data-dir.

llava-next  lmms-lab/LLaVA-NeXT-Data, raw format: llava_next_raw_format/llava_next_raw_format_processed.json
            (738,590 records {"id", "conversations", "data_source", "image": "coco/train2017/..."}; ids
            such as "VG_100K/2317533" hold slashes); images from llava_next_raw_format_images_*.tar.gz
            extracted into llava_next_raw_format/ (coco/, vg/, ocr_vqa/, gqa/, synthdog-en/, dvqa/,
            chartqa/, docvqa/, ai2d/, ...; PNGs and JPEGs).
allava      FreedomIntelligence/ALLaVA-4V: allava_laion/ALLaVA-{Caption,Instruct}-LAION-4V.json,
            allava_vflan/ALLaVA-{Caption,Instruct}-VFLAN-4V.json ("image": "allava_laion/images/100277305.jpeg";
            LAION records also keep "original_caption" and "url" in metadata), and the text-only
            allava_text/Evol-Instruct-GPT4-Turbo-143K.json (its key is "idx", not "id": kept in
            metadata; ids are generated from the file name and index). Image paths are relative to the
            repository root.
cambrian    nyu-visionx/Cambrian-10M: jsons/Cambrian7M_withsystemprompt.jsonl, jsons/Cambrian10M.jsonl,
            jsons/gpt4v_77k.jsonl, jsons/gpt4o_60k.jsonl, jsons/data_engine_161k.jsonl; records carry
            their origin in a "source" key (kept in metadata; the `source` column is the subset);
            image paths ("coco/train2017/...", "ai2d/...") are relative to the repository root after
            extracting its tar archives there; text-only rows have no "image".
visualwebinstruct
            TIGER-Lab/VisualWebInstruct: mixed_conversation.jsonl, whose "image" is a list (or null for
            the text QA pairs); images.zip unzipped to imgs/ (visualwebinstruct/, coco/, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import BuildPlan, Subset, add_common_options, make_parser, pick_subsets, plan_for, run

#: sub-command -> (Hub repository, subsets, image root relative to --data-dir)
SETS: dict[str, tuple[str, tuple[Subset, ...], str]] = {
    "llava-next": (
        "lmms-lab/LLaVA-NeXT-Data",
        (
            Subset(
                "llava_next_raw",
                ("llava_next_raw_format/llava_next_raw_format_processed.json",),
                "the LLaVA-NeXT instruction data in LLaVA's raw format",
            ),
        ),
        "llava_next_raw_format",
    ),
    "allava": (
        "FreedomIntelligence/ALLaVA-4V",
        (
            Subset(
                "caption_laion",
                ("allava_laion/ALLaVA-Caption-LAION-4V.json",),
                "GPT-4V captions of LAION images",
            ),
            Subset(
                "instruct_laion", ("allava_laion/ALLaVA-Instruct-LAION-4V.json",), "GPT-4V QA on LAION images"
            ),
            Subset(
                "caption_vflan",
                ("allava_vflan/ALLaVA-Caption-VFLAN-4V.json",),
                "GPT-4V captions of Vision-FLAN",
            ),
            Subset(
                "instruct_vflan", ("allava_vflan/ALLaVA-Instruct-VFLAN-4V.json",), "GPT-4V QA on Vision-FLAN"
            ),
            Subset("evol_instruct_text", ("allava_text/Evol-Instruct-GPT4-Turbo-143K.json",), "text-only"),
        ),
        ".",
    ),
    "cambrian": (
        "nyu-visionx/Cambrian-10M",
        (
            Subset(
                "cambrian7m", ("jsons/Cambrian7M_withsystemprompt.jsonl",), "curated 7M, with system prompts"
            ),
            Subset("cambrian10m", ("jsons/Cambrian10M.jsonl",), "the full 10M pool"),
            Subset("gpt4v_77k", ("jsons/gpt4v_77k.jsonl",), "GPT-4V distilled"),
            Subset("gpt4o_60k", ("jsons/gpt4o_60k.jsonl",), "GPT-4o creative chat"),
            Subset("data_engine_161k", ("jsons/data_engine_161k.jsonl",), "science data engine"),
        ),
        ".",
    ),
    "visualwebinstruct": (
        "TIGER-Lab/VisualWebInstruct",
        (Subset("mixed_conversation", ("mixed_conversation.jsonl",), "visual and text QA, conversations"),),
        "imgs",
    ),
}

EXAMPLES = [
    "python dataset_scripts/public_sets.py allava --data-dir ALLaVA-4V --output-dir out/allava "
    "--subset caption_laion --subset instruct_laion",
    "python dataset_scripts/public_sets.py cambrian --data-dir Cambrian-10M --output-dir out/cambrian "
    "--subset cambrian7m --on-error skip --num-proc 16",
    "python dataset_scripts/public_sets.py llava-next --data-dir LLaVA-NeXT-Data --output-dir out/next",
    "python dataset_scripts/public_sets.py visualwebinstruct --data-dir VisualWebInstruct "
    "--output-dir out/vwi --push me/visualwebinstruct",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("public_sets.py", __doc__ or "", EXAMPLES)
    sub = parser.add_subparsers(dest="set", metavar="SET", required=True)
    for name, (repo, subsets, images) in SETS.items():
        p = sub.add_parser(
            name,
            help=f"{repo} ({', '.join(s.name for s in subsets)})",
            description=f"Build {repo} from the downloaded repository.",
            epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES if f" {name} " in e),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--data-dir", required=True, metavar="DIR", help=f"the downloaded {repo} repository")
        p.add_argument(
            "--image-folder",
            metavar="IMAGES",
            help=f"root the image paths resolve against (default: DIR/{images})"
            if images != "."
            else "root the image paths resolve against (default: DIR)",
        )
        add_common_options(p, subsets=subsets)
    return parser


def plans(args: argparse.Namespace) -> list[BuildPlan]:
    _, subsets, images = SETS[args.set]
    data_dir = Path(args.data_dir)
    image_folder = args.image_folder or str(data_dir / images)
    return [plan_for(s, data_dir, image_folder, None) for s in pick_subsets(subsets, args.subset, data_dir)]


def main(argv: Sequence[str] | None = None) -> int:
    return run(plans, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
