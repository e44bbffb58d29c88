"""JSON → records: LLaVA-format files read into one normalized record model, incrementally.

:mod:`~llava_hf.records.reader` reads items; :mod:`~llava_hf.records.normalize` makes records of them.

Supported files: ``.json`` (a top-level array), ``.jsonl``, both also gzip-compressed (``.json.gz``,
``.jsonl.gz``), from local paths or fsspec URLs. A JSON array is parsed one element at a time with
the standard library's C scanner, so peak memory holds one record plus a read buffer, whatever the
size of the file. In ``.jsonl`` a bad line is a problem of that record, not of the file.

Input shapes, all normalized to :class:`Record`:

* ``image``/``images``, ``video``/``videos`` and ``audio``/``audios`` (LLaMA-Factory's) as a string, a
  list of strings, or absent; a video may also be the list of its frames' image paths
  (``"videos": [["f1.jpg", "f2.jpg"]]``, LLaMA-Factory, ms-swift, Qwen2-VL), kept as a tuple in ``Record.videos``;
* ``id`` as a string, an integer (kept as its decimal string) or absent (then ``<file stem>-<index>``, see ``id_stems``);
* ``conversations`` with ``from`` in human/gpt/system (``user``/``assistant`` accepted as aliases) and
  ``value``; or the ``messages`` layout with ``role``/``content`` (content a string, or a list of
  ``{"type": "text"|"image"|"video"|"audio"}`` parts), detected per record;
* the peer trainers' layouts (LLaMA-Factory's sharegpt/openai/v1 parts, ms-swift's query/response/history),
  mapped by :mod:`~llava_hf.records.layouts`, their shape kept in ``extra["_llava_hf_layout"]`` so
  export gives them back as they came;
* every other key kept in :attr:`Record.extra`, losslessly;
* what Python's json reads but a record cannot keep replaces the item with a problem at its place
  (line, column, byte, field): ``NaN``/``Infinity`` and numbers out of range (``invalid_number``),
  lone UTF-16 surrogate escapes (``invalid_text``), nesting too deep to read (``invalid_json``), so
  ``validate`` and ``build`` judge them alike (see :mod:`llava_hf.jsontext`);
* an item that is itself a list is a pack of samples (Qwen's ``tools/pack_data.py``): each sample is
  read as its own record, with ``extra["_llava_hf_pack"] = [item index, position]`` so export can
  pack them again.
"""

from .layouts import EXPORT_LAYOUTS, LAYOUT_KEY, LAYOUTS
from .normalize import (
    Record,
    Turn,
    distinct_names,
    file_stem,
    id_stems,
    iter_records,
    iter_videos,
    normalize,
    record_id,
    records_from_items,
    video_values,
)
from .reader import (
    PACK_KEY,
    RawItem,
    RawProblem,
    count_records,
    file_kind,
    is_pack,
    iter_items,
    scan_offsets,
)

__all__ = [
    "EXPORT_LAYOUTS",
    "LAYOUTS",
    "LAYOUT_KEY",
    "PACK_KEY",
    "RawItem",
    "RawProblem",
    "Record",
    "Turn",
    "count_records",
    "distinct_names",
    "file_kind",
    "file_stem",
    "id_stems",
    "is_pack",
    "iter_items",
    "iter_records",
    "iter_videos",
    "normalize",
    "record_id",
    "records_from_items",
    "scan_offsets",
    "video_values",
]
