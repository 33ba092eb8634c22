"""Reading a built dataset folder: chips as AtomSets with their manifest rows.

:class:`AtomsDataset` is an :class:`~atomizer.data.base.AtomDataset` (``dataset[i] -> (AtomSet,
label)``) over one split; every chip keeps its own sensor, so one dataset may mix sensors, and a
modality (band subset, coarser GSD, crop) applies as for every other dataset. Shards are opened
lazily, per process (safe under DataLoader workers and DDP), and read memory-mapped: a chip read
touches only its slices.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from atomizer.atoms.atomset import AtomSet
from atomizer.data.base import AtomDataset, Label, check_split, multi_hot
from atomizer.datasets.manifest import Manifest, read_manifest
from atomizer.datasets.shards import ShardFile

#: Shards kept open per process (least recently used closed first): memory stays flat in the
#: dataset's size.
MAX_OPEN_SHARDS = 8


class AtomsDataset(AtomDataset):
    """Chips of a dataset folder built by ``atomizer dataset build`` (``split=None``: every chip)."""

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        modality: Any = None,
        crop: Literal["center", "random"] = "center",
        seed: int = 0,
        host: Any = None,
    ) -> None:
        super().__init__(modality=modality, crop=crop, seed=seed, host=host)
        self.manifest: Manifest = read_manifest(root)
        self.split = check_split(split)
        self.rows = [r for r in self.manifest.chips if split is None or r.get("split") == split]
        self.class_names = tuple(self.manifest.classes)
        self.task = self.manifest.task  # type: ignore[assignment]
        self._index = {c: i for i, c in enumerate(self.class_names)}
        self._open: OrderedDict[str, ShardFile] = OrderedDict()
        self._pid = os.getpid()
        for spec in self.manifest.sensors.values():  # chips resolve without the user's YAML
            self.simulators.remember(spec)

    @property
    def sensors(self) -> dict[str, Any]:
        """The sensor specs the chips come from (embedded in the manifest)."""
        return self.manifest.sensors

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> dict[str, Any]:
        """The manifest row of chip ``index`` (shard, offset, label, split, item id, sensor...)."""
        return self.rows[self._check_index(int(index))]

    def _shard(self, name: str) -> ShardFile:
        if os.getpid() != self._pid:  # a forked worker opens its own memory maps
            self._open, self._pid = OrderedDict(), os.getpid()
        shard = self._open.get(name)
        if shard is None:
            shard = self._open[name] = ShardFile(self.manifest.shard_path(name))
            while len(self._open) > MAX_OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(name)
        return shard

    def source(self, index: int) -> AtomSet:
        row = self.row(index)
        return self._shard(row["shard"]).chip(int(row["offset"]))

    def atoms(self, index: int) -> AtomSet:
        """Chip ``index`` in this dataset's modality. A modality without a band list keeps each
        chip's own sensor and bands (one dataset may mix sensors); GSD and crop still apply."""
        source = self.source(index)
        modality = self.modality
        if modality is None:
            return source
        if modality.bands is None and modality.sensor != source.scene.sensor_id:
            modality = modality.model_copy(update={"sensor": source.scene.sensor_id, "name": modality.label})
        from atomizer.data.transforms import apply_modality

        return apply_modality(source, modality, rng=self.rng(index) if self.crop == "random" else None,
                              cache=self.simulators, host=self.host)

    def label(self, index: int) -> Label:
        value = self.row(index)["label"]
        if self.task == "multilabel":
            return multi_hot([self._index[v] for v in value], len(self.class_names))
        return int(self._index[str(value)])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state


def open_dataset(root: str | Path, *, split: str | None = None) -> AtomsDataset:
    """A built dataset folder, every chip (or one split) as ``(AtomSet, label)``."""
    return AtomsDataset(root, split=split)
