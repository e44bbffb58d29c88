"""The dataset card of a built folder or a Hub repository: YAML that `datasets` reads, stats that trainers read.

:func:`make_card` renders ``llava_hf/card/dataset_card.md`` (a Jinja template, through huggingface_hub's
:meth:`DatasetCard.from_template`) from a built output folder:

* the YAML declares ``configs`` (every config: this one and those already in ``existing``),
  ``dataset_info`` (features exactly as ``datasets`` writes them, split sizes), license,
  task categories, size category, pretty name, and a ``llava_hf`` block recording the format version
  and the llava-hf version that wrote the data;
* the body holds statistics computed from the Parquet files (columns read with pyarrow; image sizes
  from the headers of a bounded sample), a preview image and a usage snippet.

Generated parts of the body sit between ``<!-- llava-hf:begin NAME -->`` and
``<!-- llava-hf:end NAME -->`` markers. Given ``existing`` (the card already in the repository), only
those parts are replaced; everything outside them is kept as the user wrote it.

:func:`make_preview` draws a PNG contact sheet of the first images, byte-for-byte deterministic.

Modules: ``folder`` reads a built folder (splits, stats, rejected counts, mixture), ``stats`` holds the
statistics, ``body`` formats what the body shows, ``template`` renders and merges the card, ``preview``
draws the contact sheet.
"""

from __future__ import annotations

from .preview import make_preview
from .template import MARKER_BEGIN, MARKER_END, make_card

__all__ = ["MARKER_BEGIN", "MARKER_END", "make_card", "make_preview"]
