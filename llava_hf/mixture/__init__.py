"""Reproducible mixtures: a YAML list of LLaVA JSON files with sampling strategies, resolved with a seed.

The YAML has LLaVA-NeXT's shape (``llava/train/train.py`` reads the same file)::

    datasets:
      - json_path: llava_v1_5_mix665k.json     # relative paths resolve against the YAML's folder
        image_folder: images/                  # optional; else the build's --image-folder
        video_folder: videos/                  # optional
        audio_folder: audios/                  # optional
        sampling_strategy: "random:25%"        # optional, default "all"
        name: mix665k                          # optional, default: the file's stem (made unique)
        repeat: 2                              # optional up-sampling factor (> 0, may be fractional)

Strategies: ``all | first:N | end:N | random:N | first:P% | end:P% | random:P%`` (N an integer,
P a number in (0, 100], decimals allowed). A percentage of ``n`` records selects
``ceil(P * n / 100)`` records, exactly as LLaVA-NeXT computes it, so a YAML moved over from
LLaVA-NeXT selects the same number of rows. ``N`` larger than the file is clipped to the file (with a
warning), also as in LLaVA-NeXT.

Unlike LLaVA-NeXT and Qwen-VL (unseeded ``random.shuffle`` / ``random.sample`` on every rank), the
selection is a pure function of the YAML, the record counts and the seed: every source draws from its
own generator ``random.Random(f"{seed}:{name}")`` (string seeds are hashed with SHA-512, not
``hash()``, so they agree across processes and machines), and the sampler only uses
``Random.random()``, the one method whose sequence Python guarantees across versions.

Rows come out in YAML order of the sources; inside a source, in ascending record index (so the
builder streams each file once); a record picked ``k`` times appears ``k`` times, adjacent.
``repeat: r`` gives every selected record ``floor(r)`` copies, plus one more copy for
``ceil(r * selected) - floor(r) * selected`` of them drawn at random without replacement.

The resolved selection is saved as ``mixture.json`` (:meth:`Mixture.save`), which
:meth:`Mixture.from_file` reads back into an equal :class:`Mixture`.
"""

from __future__ import annotations

from .sampling import iter_selected, load_mixture, resolve
from .saved import MIXTURE_FORMAT_VERSION, Mixture, MixtureSource
from .spec import MixtureSpec, SourceSpec, Strategy, parse_mixture, parse_strategy, spec_from_dict

__all__ = [
    "MIXTURE_FORMAT_VERSION",
    "Mixture",
    "MixtureSource",
    "MixtureSpec",
    "SourceSpec",
    "Strategy",
    "iter_selected",
    "load_mixture",
    "parse_mixture",
    "parse_strategy",
    "resolve",
    "spec_from_dict",
]
