"""What every dataset shares: samples before atomisation, and the dataset base class.

A dataset item is ``(AtomSet, label)``; ``label`` is an ``int`` class index for multi-class tasks
and a float32 multi-hot vector for multi-label ones. Datasets are torch-``Dataset`` compatible
(``__len__`` / ``__getitem__``) without importing torch, and deterministic given a seed.

Before atomisation a sample is a *source* that :func:`atomizer.data.apply_modality` can turn
into any modality:

- :class:`~atomizer.simulate.BandRasters` (alias :data:`RasterSample`): multispectral planes,
  one per band on the band's native grid (BigEarthNet, EuroSAT);
- :class:`HyperspectralSample`: a ``(H, W, C)`` cube with its band table (Indian Pines, earthlib),
  from which any sensor can be simulated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atomizer.atoms.atomset import AtomSet
from atomizer.data.samples import HyperspectralSample, RasterSample, SampleSource
from atomizer.data.transforms import apply_modality
from atomizer.errors import DatasetError
from atomizer.simulate.api import SimulatorCache
from atomizer.training.seed import Stream, stream_rng

__all__ = [  # the sample types live in atomizer.data.samples; importable from here as before
    "SPLITS",
    "AtomDataset",
    "HyperspectralSample",
    "RasterSample",
    "SampleSource",
    "check_split",
    "multi_hot",
    "require_dir",
]

Task = Literal["multiclass", "multilabel"]
Label = int | np.ndarray
#: Split names used by every dataset, in order.
SPLITS = ("train", "validation", "test")

def check_split(split: str | None, *, allow_none: bool = True) -> str | None:
    """``split`` if it is one of :data:`SPLITS` (or ``None``), else a :class:`DatasetError`."""
    if split is None and allow_none:
        return None
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is an existing folder, else one clear :class:`DatasetError`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{what} not found at {p}: no such folder; check the path")
    if not p.is_dir():
        raise DatasetError(f"{what} at {p} is a file, not a folder; give the dataset's folder")
    return p


def multi_hot(indices: Sequence[int], n_classes: int) -> np.ndarray:
    """A float32 vector of ``n_classes`` with ones at ``indices``."""
    out = np.zeros(n_classes, dtype=np.float32)
    out[list(indices)] = 1.0
    return out


class AtomDataset(ABC):
    """Base of the datasets: ``dataset[i] -> (AtomSet, label)``.

    Subclasses implement :meth:`source` (the sample before atomisation), :meth:`label` and
    ``__len__``. With a ``modality`` the AtomSet is :func:`~atomizer.data.apply_modality` of the
    source; without one it is the source's own atoms. Random crops draw from a generator seeded by
    ``(seed, epoch, index)``, so an item is the same whichever worker loads it; call
    :meth:`set_epoch` to get new crops each epoch.
    """

    task: Task = "multiclass"
    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        modality: Any = None,
        crop: Literal["center", "random"] = "center",
        seed: int = 0,
        host: Any = None,
    ) -> None:
        if crop not in ("center", "random"):
            raise DatasetError(f"crop must be 'center' or 'random', not {crop!r}")
        self.modality = modality
        self.crop = crop
        self.seed = int(seed)
        self.epoch = 0
        self.host = host
        self.simulators = SimulatorCache()

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """Random crops depend on the epoch (and the seed and the index), nothing else."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return stream_rng(self.seed, Stream.SAMPLE_CROP, self.epoch, index)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def source(self, index: int) -> SampleSource:
        """The sample before atomisation (what :func:`apply_modality` takes)."""

    @abstractmethod
    def label(self, index: int) -> Label:
        """The label of item ``index`` (class index, or multi-hot vector)."""

    def labels(self) -> np.ndarray:
        """All labels: ``(N,)`` int64 class indices or ``(N, n_classes)`` float32 multi-hot."""
        items = [self.label(i) for i in range(len(self))]
        if self.task == "multilabel":
            return np.stack(items) if items else np.zeros((0, self.n_classes), np.float32)
        return np.asarray(items, dtype=np.int64)

    def atoms(self, index: int) -> AtomSet:
        """The AtomSet of item ``index`` in this dataset's modality."""
        source = self.source(index)
        if self.modality is None:
            return source if isinstance(source, AtomSet) else source.to_atoms()
        return apply_modality(
            source,
            self.modality,
            rng=self.rng(index) if self.crop == "random" else None,
            cache=self.simulators,
            host=self.host,
        )

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return index % n

    def __getitem__(self, index: int) -> tuple[AtomSet, Label]:
        index = self._check_index(int(index))
        return self.atoms(index), self.label(index)
