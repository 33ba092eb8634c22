"""What a dataset yields before atomisation: a raster per band, a hyperspectral cube, or atoms.

Kept apart from :mod:`atomizer.data.base` so that the transforms (which take samples) and the
datasets (which apply the transforms) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import DatasetError
from atomizer.sensors.spec import SensorSpec
from atomizer.simulate.api import BandRasters, atoms_from_planes
from atomizer.simulate.spectral import SpectralTable

RasterSample = BandRasters


@dataclass(frozen=True, eq=False)
class HyperspectralSample:
    """A ``(H, W, C)`` float32 cube on one grid of ``table.gsd_m`` metres, and its band table.

    ``spec`` is the source sensor when there is one (for band names and metadata of raw atoms).
    """

    cube: np.ndarray
    table: SpectralTable
    scene: SceneMeta
    spec: SensorSpec | None = None
    gsd_m: float | None = None  # pixel size; defaults to table.gsd_m

    @property
    def pixel_gsd_m(self) -> float:
        gsd = self.gsd_m if self.gsd_m is not None else self.table.gsd_m
        if gsd is None:
            raise DatasetError(f"hyperspectral sample of {self.table.source_id} has no GSD")
        return float(gsd)

    def to_atoms(self) -> AtomSet:
        """Every channel as atoms (C x H x W of them), with the source's band metadata."""
        if self.spec is None:
            raise DatasetError(
                f"the raw channels of {self.table.source_id} have no sensor spec; simulate a "
                "sensor from them with a modality instead"
            )
        planes = np.moveaxis(self.cube, -1, 0)
        gsd = self.pixel_gsd_m
        bands = tuple(b.model_copy(update={"gsd_m": gsd}) for b in self.spec.bands)
        return atoms_from_planes(list(planes), bands, self.scene)


SampleSource = BandRasters | HyperspectralSample | AtomSet
