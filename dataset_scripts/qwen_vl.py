"""Recipe: data in the Qwen-VL finetune layout (QwenLM qwen-vl-finetune) -> a Hugging Face dataset.

Qwen registers each dataset as ``{"annotation_path": ..., "data_path": ...}``: a .json or .jsonl of
records whose ``image``/``images`` or ``video``/``videos`` is a string or a list, resolved against
``data_path`` (one root for images and videos). Grounding answers stay plain text, as Qwen trains
on them (``{"bbox_2d": [135, 114, 1016, 672]}``, ``<|object_ref_start|>house<|object_ref_end|>
<|box_start|>(135,114),(1016,672)<|box_end|>``, ``<ref>..</ref><box>..</box>``).

* An empty ``data_path`` means the annotations hold absolute paths (Qwen then resolves against the
  current directory). llava-hf refuses media outside the given root unless you pass
  --allow-outside-root: only for annotation files you trust, since the media are published.
* Packed files written by Qwen's ``tools/pack_data.py`` (``*_pack.json``: each item of the top-level
  list is itself a list of samples) are read sample by sample; each row records its pack in
  ``metadata["_llava_hf_pack"] = [item index, position]``, and ``llava-hf export`` packs them again.
* ``dataset_name%50`` (Qwen's sampling rate) is a mixture: write a mixture YAML with
  ``sampling_strategy: "random:50%"`` and build it with ``llava-hf build --mixture MIX.yaml --seed N``.

Each annotation file becomes one config, named after the file (or --config-name for a single file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import BuildPlan, add_common_options, file_stem, make_parser, run

EXAMPLES = [
    "python dataset_scripts/qwen_vl.py demo/single_images.json --data-path demo --output-dir out/qwen",
    "python dataset_scripts/qwen_vl.py annotations.jsonl --data-path /data/my_dataset/images "
    "--output-dir out/qwen --on-error skip",
    "python dataset_scripts/qwen_vl.py cambrian_737k_pack.json --data-path '' --allow-outside-root "
    "--output-dir out/qwen   # absolute paths, packed file",
    "python dataset_scripts/qwen_vl.py video.json --data-path demo/videos --output-dir out/qwen "
    "--push me/my-qwen-data --config-name video",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("qwen_vl.py", __doc__ or "", EXAMPLES)
    parser.add_argument(
        "annotations",
        nargs="+",
        metavar="ANNOTATION",
        help="annotation file(s) (Qwen's annotation_path): .json, .jsonl, packed *_pack.json",
    )
    parser.add_argument(
        "--data-path",
        default="",
        metavar="DIR",
        help="Qwen's data_path: the root images and videos resolve against. Empty (the "
        "default) means the current directory, as in Qwen; absolute media paths then "
        "need --allow-outside-root",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept absolute media paths and paths that leave --data-path (trusted files only)",
    )
    add_common_options(parser)
    return parser


def plans(args: argparse.Namespace) -> list[BuildPlan]:
    from llava_hf.errors import UsageError

    root = args.data_path or "."
    names = [file_stem(a) for a in args.annotations]
    if len(set(names)) != len(names):
        raise UsageError(
            f"two annotation files have the same name ({', '.join(names)}): each file becomes a config "
            "named after it",
            hint="build them in separate runs with --config-name",
        )
    for a in args.annotations:
        if not Path(a).is_file():
            raise UsageError(f"annotation file {a} does not exist")
    return [
        BuildPlan(
            name, (a,), image_folder=root, video_folder=root, allow_outside_root=args.allow_outside_root
        )
        for name, a in zip(names, args.annotations)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run(plans, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
