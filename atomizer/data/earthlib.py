"""The earthlib spectral library: pixel-level land-cover classification, any sensor by simulation.

earthlib (MIT, https://github.com/earth-chris/earthlib) ships an ENVI library of 7,261 labelled
reflectance spectra (180 channels, 400-2450 nm at 10 nm, with the 1360-1450 and 1800-1950 nm water
bands removed) and a CSV of per-spectrum metadata (``LEVEL_1`` pervious / impervious, ``LEVEL_2``
bare / built / burned / npv / vegetation, ``LEVEL_3`` finer material). The CSV rows follow the
library's order (matched by position: a few names differ between the two files).

Each item is one spectrum as a small synthetic "pure pixel": ``size_px x size_px`` identical pixels
(1 x 1 by default). With a modality the spectra of every item are simulated once, up front.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.data.base import AtomDataset, HyperspectralSample, check_split
from atomizer.data.envi import SpectralLibrary, read_envi_library
from atomizer.data.modality import Modality
from atomizer.data.splits import DEFAULT_FRACTIONS, stratified_split
from atomizer.errors import DatasetError
from atomizer.sensors.spec import Band
from atomizer.simulate.api import atoms_from_planes

LIBRARIES = {
    "spectra": ("spectra.sli", "spectra.csv"),
    "optimized": ("optimized.sli", "optimized.csv"),
}
LEVELS = ("LEVEL_1", "LEVEL_2", "LEVEL_3")
SOURCE_ID = "earthlib"
#: Nominal pixel size of raw library atoms (a spectrum is a point measurement with no GSD).
LIBRARY_PIXEL_GSD_M = 1.0


def earthlib_data_dir() -> Path:
    """earthlib's bundled data folder, located without importing earthlib (which needs pandas)."""
    spec = importlib.util.find_spec("earthlib")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "the earthlib spectral library is not installed; pip install 'atomizer[data]' "
            "(or pass root= a folder with spectra.sli, spectra.sli.hdr and spectra.csv)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_metadata(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"earthlib metadata not found at {path}: no such file")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class EarthlibSpectra(AtomDataset):
    """earthlib spectra of one split: ``dataset[i] -> (AtomSet, class index)``.

    :param split: ``train`` / ``validation`` / ``test`` (stratified by class, from ``seed``) or
        ``None`` for every spectrum.
    :param level: the metadata column of the classes (``LEVEL_2`` by default).
    :param modality: the sensor to simulate (default: the raw 180 channels).
    :param size_px: side of the synthetic pure-pixel patch when the modality has no ``size_px``.
    """

    task = "multiclass"

    def __init__(
        self,
        split: str | None = None,
        *,
        modality: Modality | None = None,
        level: str = "LEVEL_2",
        library: str = "spectra",
        root: str | Path | None = None,
        size_px: int = 1,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        seed: int = 0,
        host: Any = None,
        skip_unsupported: bool | None = None,
    ) -> None:
        super().__init__(modality=modality, seed=seed, host=host)
        self.split = check_split(split)
        if level not in LEVELS:
            raise DatasetError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        if library not in LIBRARIES:
            raise DatasetError(f"unknown library {library!r}; use one of {', '.join(LIBRARIES)}")
        if size_px < 1:
            raise DatasetError("size_px must be at least 1")
        folder = Path(root).expanduser() if root is not None else earthlib_data_dir()
        if not folder.is_dir():
            raise DatasetError(f"earthlib data not found at {folder}: no such folder")
        sli, meta = LIBRARIES[library]
        self.library: SpectralLibrary = read_envi_library(folder / sli)
        rows = read_metadata(folder / meta)
        if len(rows) != len(self.library):
            raise DatasetError(
                f"{folder / meta} has {len(rows)} rows but the library has {len(self.library)} "
                "spectra; they must describe the same spectra in the same order"
            )
        names = [r.get(level, "") for r in rows]
        self.class_names = tuple(sorted(set(names)))
        all_labels = np.array([self.class_names.index(n) for n in names], dtype=np.int64)
        if self.split is None:
            self.indices = np.arange(len(rows))
        else:
            self.indices = stratified_split(all_labels, fractions, seed=seed)[self.split]
        self._labels = all_labels[self.indices]
        self.table = self.library.table(SOURCE_ID)
        self.size_px = int(modality.size_px if modality and modality.size_px else size_px)
        if modality is None:
            self.simulator = None
            gsd = LIBRARY_PIXEL_GSD_M
            self.bands: tuple[Band, ...] = tuple(
                Band(name=n, center_wavelength_nm=float(c), fwhm_nm=float(f), gsd_m=gsd)
                for n, c, f in zip(self.table.names, self.table.center_nm, self.table.fwhm_nm)
            )
            self.values = self.library.spectra[self.indices]
        else:
            target = self.simulators.sensor(modality.sensor, host)
            bands = modality.band_names(target) if modality.bands is not None else None
            skip = (modality.bands is None) if skip_unsupported is None else skip_unsupported
            self.simulator = self.simulators.get(
                self.table, target, bands=bands, gsd_m=modality.gsd_m, skip_unsupported=skip
            )
            self.bands = self.simulator.bands
            self.values = self.simulator.spectra(self.library.spectra[self.indices])
        finest = min(b.gsd_m for b in self.bands)
        footprint = self.size_px * finest
        self._sizes = [max(1, int(round(footprint / b.gsd_m))) for b in self.bands]

    def __len__(self) -> int:
        return int(self.indices.size)

    def label(self, index: int) -> int:
        return int(self._labels[index])

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def spectrum_name(self, index: int) -> str:
        return self.library.names[int(self.indices[index])]

    def source(self, index: int) -> HyperspectralSample:
        """The raw spectrum as a ``size_px x size_px`` cube at :data:`LIBRARY_PIXEL_GSD_M`."""
        spectrum = self.library.spectra[int(self.indices[index])]
        cube = np.broadcast_to(spectrum, (self.size_px, self.size_px, spectrum.size)).copy()
        return HyperspectralSample(
            cube, self.table, self._scene(SOURCE_ID, index), gsd_m=LIBRARY_PIXEL_GSD_M
        )

    def _scene(self, sensor_id: str, index: int) -> SceneMeta:
        return SceneMeta(
            sensor_id=sensor_id,
            source_id=f"earthlib:{self.spectrum_name(index)}",
            extra={"library_index": int(self.indices[index])},
        )

    def atoms(self, index: int) -> AtomSet:
        values = self.values[index]
        planes = [np.full((n, n), v, dtype=np.float32) for v, n in zip(values, self._sizes)]
        if self.simulator is None:
            scene = self._scene(SOURCE_ID, index)
        else:
            scene = self.simulator.scene(self._scene(self.simulator.target.id, index))
        return atoms_from_planes(planes, self.bands, scene)
