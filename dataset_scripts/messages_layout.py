"""Recipe: the `messages`/`images` layout of LLaMA-Factory and ms-swift -> a Hugging Face dataset.

Records look like LLaMA-Factory's data/mllm_demo.json::

    {"messages": [{"role": "user", "content": "<image>Who are they?"},
                  {"role": "assistant", "content": "They're Kane and Gretzka from Bayern Munich."}],
     "images": ["mllm_demo_data/1.jpg"]}

(``videos`` likewise, ``system`` messages allowed). LLaMA-Factory resolves media against its
``media_dir``, by default the dataset_dir that holds dataset_info.json: pass that as --media-dir
(the default is each file's own folder). ms-swift usually writes absolute paths, or paths under
$ROOT_IMAGE_DIR: pass --media-dir "$ROOT_IMAGE_DIR", or --allow-outside-root for absolute paths
(only for files you trust).

With --dataset-info data/dataset_info.json --dataset mllm_demo, the files come from LLaMA-Factory's
registry; entries must be in the sharegpt formatting with the standard column names (messages or
conversations, images, videos, system), since the builder reads those keys. Use --format messages
to keep TRL-style `messages` columns in the output. Each file becomes one config named after it
(or after its dataset_info entry).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import BuildPlan, add_common_options, file_stem, make_parser, run

#: dataset_info.json column -> the keys the llava-hf reader accepts for it
ACCEPTED_COLUMNS = {
    "messages": {"messages", "conversations"},
    "images": {"images", "image"},
    "videos": {"videos", "video"},
    "system": {"system"},
}

EXAMPLES = [
    "python dataset_scripts/messages_layout.py LLaMA-Factory/data/mllm_demo.json --output-dir out/demo",
    "python dataset_scripts/messages_layout.py --dataset-info LLaMA-Factory/data/dataset_info.json "
    "--dataset mllm_demo --dataset mllm_video_demo --output-dir out/demo --format messages",
    "python dataset_scripts/messages_layout.py swift_train.jsonl --allow-outside-root --output-dir out/swift "
    "--push me/swift-data --config-name train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("messages_layout.py", __doc__ or "", EXAMPLES)
    parser.add_argument("files", nargs="*", metavar="FILE", help="messages-layout .json / .jsonl files")
    parser.add_argument("--dataset-info", metavar="JSON", help="LLaMA-Factory's dataset_info.json")
    parser.add_argument(
        "--dataset", action="append", metavar="NAME", help="an entry of --dataset-info to build (repeatable)"
    )
    parser.add_argument(
        "--media-dir",
        metavar="DIR",
        help="root image and video paths resolve against (default: the folder of "
        "dataset_info.json, else each file's folder)",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept absolute media paths and paths that leave --media-dir (trusted files only)",
    )
    add_common_options(parser)
    return parser


def _from_dataset_info(info_path: Path, names: Sequence[str]) -> list[tuple[str, str]]:
    from llava_hf.errors import UsageError

    try:
        info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read {info_path}: {err}") from None
    out = []
    for name in names:
        entry = info.get(name)
        if not isinstance(entry, dict) or "file_name" not in entry:
            raise UsageError(
                f"{info_path}: no local dataset {name!r} (an entry with a file_name)",
                hint=f"entries: {', '.join(sorted(info)) or 'none'}",
            )
        if entry.get("formatting", "alpaca") != "sharegpt":
            raise UsageError(
                f"{info_path}: {name!r} uses formatting {entry.get('formatting', 'alpaca')!r}; "
                "this recipe reads the sharegpt (messages) formatting only"
            )
        for column, key in (entry.get("columns") or {}).items():
            if column in ACCEPTED_COLUMNS and key not in ACCEPTED_COLUMNS[column]:
                raise UsageError(
                    f"{info_path}: {name!r} maps the {column} column to key {key!r}; the builder reads "
                    f"{' or '.join(sorted(ACCEPTED_COLUMNS[column]))}",
                    hint=f"rename the key {key!r} in {entry['file_name']}",
                )
        out.append((name, str(info_path.parent / entry["file_name"])))
    return out


def plans(args: argparse.Namespace) -> list[BuildPlan]:
    from llava_hf.errors import UsageError

    if args.dataset and not args.dataset_info:
        raise UsageError("--dataset names an entry of --dataset-info, which is missing")
    named: list[tuple[str, str]] = []
    if args.dataset_info:
        named += _from_dataset_info(Path(args.dataset_info), args.dataset or [])
    named += [(file_stem(f), f) for f in args.files]
    if not named:
        raise UsageError(
            "nothing to build: give messages-layout FILEs, or --dataset-info with --dataset NAME"
        )
    if len({n for n, _ in named}) != len(named):
        raise UsageError(
            f"two inputs share a config name ({', '.join(n for n, _ in named)})",
            hint="build them in separate runs with --config-name",
        )
    default_root = str(Path(args.dataset_info).parent) if args.dataset_info else None
    out = []
    for name, file in named:
        if not Path(file).is_file():
            raise UsageError(f"{file} does not exist")
        root = args.media_dir or default_root or str(Path(file).parent)
        out.append(
            BuildPlan(
                name,
                (file,),
                image_folder=root,
                video_folder=root,
                allow_outside_root=args.allow_outside_root,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run(plans, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
