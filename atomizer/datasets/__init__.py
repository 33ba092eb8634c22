"""Your own data: labelled STAC items become sharded atom datasets (``atomizer dataset build``).

- :class:`DatasetSpec`, :func:`load_dataset_spec`: the dataset spec (YAML).
- :func:`build_dataset`: items + labels -> ``DIR/shards/*.atoms``, ``manifest.json``,
  ``stats.json``, ``errors.jsonl``, on Dask.
- :class:`AtomsDataset`, :func:`open_dataset`: a built folder's chips as ``(AtomSet, label)``,
  with :meth:`AtomsDataset.row` giving each chip's manifest row.
"""

from atomizer._lazy import lazy_exports

_EXPORTS = {
    "DatasetSpec": "spec",
    "load_dataset_spec": "spec",
    "build_dataset": "build",
    "BuildResult": "build",
    "AtomsDataset": "dataset",
    "open_dataset": "dataset",
    "read_manifest": "manifest",
    "Manifest": "manifest",
    "ShardFile": "shards",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
