"""Building: LLaVA JSON + media → Parquet shards of the one schema.

The path through this package, in order:

- :mod:`~llava_hf.build.config`: :class:`LlavaConfig` (what to build) and :class:`ShardSpec` (one original shard);
- :mod:`~llava_hf.build.plan`: planning's one pass over the JSON: shard boundaries and duplicate ids;
- :mod:`~llava_hf.build.rows`: the one table-producing core: a planned shard → Arrow tables of the schema;
- :mod:`~llava_hf.build.batches`: the row batches the core fills (media bytes read once into buffers);
- :mod:`~llava_hf.build.parquet`: the one Parquet writer and its options;
- :mod:`~llava_hf.build.layout`: the output folder's names (manifest, shards, rejected records);
- :mod:`~llava_hf.build.folder`: :func:`build_folder`, a whole output folder;
- :mod:`~llava_hf.build.builder`: :class:`LlavaBuilder`, the same core as a ``datasets`` builder.
"""

from .builder import LlavaBuilder
from .config import LlavaConfig, ShardSpec
from .folder import BuildResult, build_folder
from .layout import SHARD_RE, read_manifest, split_files

__all__ = [
    "SHARD_RE",
    "BuildResult",
    "LlavaBuilder",
    "LlavaConfig",
    "ShardSpec",
    "build_folder",
    "read_manifest",
    "split_files",
]
