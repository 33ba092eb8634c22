"""EuroSAT-MS: 64 x 64 px Sentinel-2 L1C patches, 13 bands, one folder per class.

Layout: ``ROOT/<ClassName>/<anything>.tif``, each a 13-band GeoTIFF; the classes are the folder
names, sorted. The release stores the bands in the order :data:`EUROSAT_BAND_ORDER` (B8A last);
give ``band_order=`` for files written otherwise. The release resampled every band to 10 m, so
every band's atoms sit on that grid (``gsd_m``, default :data:`EUROSAT_GSD_M`) while keeping its
own spectral metadata from the ``sentinel2a`` spec. Values: top-of-atmosphere reflectance =
DN x :data:`REFLECTANCE_SCALE`. There is no official split: ``split=`` draws a class-stratified
partition from ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atomizer.atoms.atomset import SceneMeta
from atomizer.data.base import AtomDataset, check_split, require_dir
from atomizer.data.modality import Modality
from atomizer.data.splits import DEFAULT_FRACTIONS, stratified_split
from atomizer.errors import DatasetError
from atomizer.sensors.spec import SensorSpec
from atomizer.plugins.host import sensor_spec
from atomizer.simulate.api import BandRasters

EUROSAT_BAND_ORDER = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
)
EUROSAT_GSD_M = 10.0
REFLECTANCE_SCALE = 1e-4
IMAGE_SUFFIXES = (".tif", ".tiff")


class EuroSAT(AtomDataset):
    """EuroSAT-MS patches: ``dataset[i] -> (AtomSet, class index)``."""

    task = "multiclass"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        band_order: Sequence[str] = EUROSAT_BAND_ORDER,
        bands: Sequence[str] | None = None,
        sensor: SensorSpec | str = "sentinel2a",
        gsd_m: float = EUROSAT_GSD_M,
        modality: Modality | None = None,
        crop: Literal["center", "random"] = "center",
        seed: int = 0,
        host: Any = None,
    ) -> None:
        super().__init__(modality=modality, crop=crop, seed=seed, host=host)
        self.root = require_dir(root, "EuroSAT")
        self.split = check_split(split)
        self.band_order = tuple(band_order)
        if len(set(b.lower() for b in self.band_order)) != len(self.band_order):
            raise DatasetError(f"band_order lists a band twice: {', '.join(self.band_order)}")
        self.bands = tuple(bands) if bands is not None else self.band_order
        lookup = {b.lower(): i for i, b in enumerate(self.band_order)}
        missing = [b for b in self.bands if b.lower() not in lookup]
        if missing:
            raise DatasetError(
                f"bands {', '.join(missing)} are not in band_order {self.band_order}"
            )
        self._read_index = [lookup[b.lower()] + 1 for b in self.bands]  # rasterio is 1-based
        if not gsd_m > 0:
            raise DatasetError(f"gsd_m must be positive, got {gsd_m}")
        self.gsd_m = float(gsd_m)
        spec = sensor_spec(sensor, host)
        self.spec = spec
        self._band_meta = tuple(
            spec.band(b).model_copy(
                update={"gsd_m": self.gsd_m, "scale": None, "offset": None, "nodata": None}
            )
            for b in self.bands
        )
        classes = sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())
        )
        if not classes:
            raise DatasetError(
                f"no EuroSAT class folders in {self.root} (folders of .tif patches); check the path"
            )
        self.class_names = tuple(classes)
        files, labels = [], []
        for k, name in enumerate(classes):
            for p in sorted((self.root / name).iterdir()):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(p)
                    labels.append(k)
        all_labels = np.array(labels, dtype=np.int64)
        if self.split is None:
            keep = np.arange(len(files))
        else:
            keep = stratified_split(all_labels, fractions, seed=seed)[self.split]
        self.files = [files[i] for i in keep]
        self._labels = all_labels[keep]

    def __len__(self) -> int:
        return len(self.files)

    def label(self, index: int) -> int:
        return int(self._labels[index])

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def source(self, index: int) -> BandRasters:
        import rasterio
        from rasterio.errors import RasterioIOError

        path = self.files[index]
        try:
            with rasterio.open(path) as ds:
                if ds.count != len(self.band_order):
                    raise DatasetError(
                        f"{path} has {ds.count} bands but band_order lists {len(self.band_order)}"
                    )
                dn = ds.read(self._read_index)
                crs = ds.crs.to_string() if ds.crs is not None else None
        except RasterioIOError as exc:
            raise DatasetError(f"cannot read EuroSAT patch {path}: {exc}") from None
        planes = dn.astype(np.float32) * np.float32(REFLECTANCE_SCALE)
        scene = SceneMeta(
            sensor_id=self.spec.id,
            crs=crs,
            source_id=f"eurosat:{path.parent.name}/{path.stem}",
            extra={"dataset": "eurosat-ms"},
        )
        return BandRasters(tuple(planes), self._band_meta, scene)
