"""Videos given as the list of their frames (``"videos": [["f1.jpg", "f2.jpg", ...]]``).

LLaMA-Factory, ms-swift and Qwen2-VL read a video as its frame images. llava-hf stores each frame as an
image (``video_frames``, see :mod:`llava_hf.schema`); here are the facts stored beside such a video
(:func:`frames_info`) and its decoding into the same ``(T, H, W, 3)`` ``uint8`` array as a video file's
(:func:`decode_frames`).

Which frames: with ``num_frames=N``, the frames at ``numpy.linspace(0, n - 1, N, dtype=int)`` of the
``n`` frames (all of them when ``n <= N``), as for a video file. With ``fps=F``: the frames carry no
times (their rate is not in the data), so every frame is taken, as LLaMA-Factory and Qwen2-VL's
``qwen_vl_utils`` take a frame list, thinned by the same linspace rule to at most ``max_frames``;
their timestamps are None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["FRAMES_CODEC", "decode_frames", "frames_info"]

#: ``video_info.codec`` of a video given as its frames
FRAMES_CODEC = "frames"


def frames_info(count: int, size: tuple[int, int]) -> dict[str, Any]:
    """The ``video_info`` of a video given as ``count`` frames whose first is ``size`` (width, height):
    no duration or frame rate (the data does not give them)."""
    width, height = size
    return {
        "duration": None,
        "fps": None,
        "num_frames": count,
        "width": width,
        "height": height,
        "codec": FRAMES_CODEC,
    }


def sampled_frames(n: int, sampling: Any) -> list[int]:
    """The positions of the frames ``sampling`` (a :class:`~llava_hf.media.video.VideoSampling`) takes
    from ``n`` frames without times (see the module)."""
    count = sampling.num_frames if sampling.fps is None else sampling.max_frames
    if count is None or n <= count:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, count, dtype=int)]


def decode_frames(
    values: Sequence[Any], sampling: Any, token_per_repo_id: Any = None
) -> tuple[np.ndarray, list[int]]:
    """The frames ``sampling`` (a :class:`~llava_hf.media.video.VideoSampling`) picks from a frame video,
    as one ``(T, H, W, 3)`` ``uint8`` RGB array, and their positions.

    ``values``: the stored frames (``{"bytes", "path"}``, or PIL images). Each sampled frame is decoded
    by datasets' ``Image().decode_example`` (EXIF orientation applied) and converted to RGB; a frame whose
    size differs from the first sampled one is resized to it (bilinear), as a video file's frames are
    scaled when its stream changes size. Raises what Pillow raises for a frame that does not decode.
    """
    import datasets
    from PIL import Image

    feature = datasets.Image()
    picks = sampled_frames(len(values), sampling)
    out: np.ndarray | None = None
    for k, position in enumerate(picks):
        value = values[position]
        if not isinstance(value, Image.Image):
            if not isinstance(value, Mapping) or (value.get("bytes") is None and not value.get("path")):
                raise ValueError(f"frame {position} has neither bytes nor a path")
            value = feature.decode_example(dict(value), token_per_repo_id=token_per_repo_id)
        rgb = value.convert("RGB")
        if out is None:
            out = np.empty((len(picks), rgb.height, rgb.width, 3), dtype=np.uint8)
        if rgb.size != (out.shape[2], out.shape[1]):
            rgb = rgb.resize((out.shape[2], out.shape[1]), Image.Resampling.BILINEAR)
        out[k] = np.asarray(rgb)
    if out is None:
        out = np.empty((0, 0, 0, 3), dtype=np.uint8)
    return out, picks
