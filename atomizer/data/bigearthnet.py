"""BigEarthNet-S2 (v1 and v2 / reBEN): multi-label patches at native 10 / 20 / 60 m.

Layouts
-------
``v1`` (BigEarthNet-S2 v1.0): ``ROOT/<patch>/<patch>_B01.tif ... _B12.tif, _B8A.tif`` (12 bands, no
B10) and ``ROOT/<patch>/<patch>_labels_metadata.json`` (``labels``: 43-class CORINE names,
``acquisition_date``, ...). Splits come from ``split_csv`` (a CSV whose first column lists patch
names, like the official BigEarthNet-19 ``train.csv``), or, without one, from a seeded random
partition of the patches.

``v2`` (reBEN, BigEarthNet v2.0): ``ROOT/<tile>/<patch_id>/<patch_id>_B01.tif ...`` where
``<tile>`` is the patch id without its last two ``_``-separated parts (``ROOT/<patch_id>/`` is
accepted too), and a metadata table ``metadata.parquet`` or ``metadata.csv`` (in ROOT or its
parent, or given) with columns ``patch_id``, ``labels`` (19-class names: a list in parquet; in CSV
``"['Arable land', 'Pastures']"`` or ``Arable land;Pastures``) and ``split`` (``train``,
``validation``, ``test``). Parquet needs pyarrow.

Values: L2A surface reflectance = DN x :data:`REFLECTANCE_SCALE` (BigEarthNet predates the 2022
-1000 DN offset). Band metadata comes from the ``sentinel2a`` / ``sentinel2b`` spec chosen by the
patch name's ``S2A`` / ``S2B`` prefix (or ``sensor=``). A patch is ``4 x 120^2 + 6 x 60^2 +
2 x 20^2 = 80,000`` atoms at native GSDs. Labels are multi-hot in the 19-class nomenclature
(:mod:`atomizer.data.bigearthnet_labels`), or 43 classes for v1 with ``nomenclature=43``.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atomizer.atoms.atomset import SceneMeta
from atomizer.data import bigearthnet_labels as nomen
from atomizer.data.base import AtomDataset, check_split, multi_hot, require_dir
from atomizer.data.modality import Modality
from atomizer.data.splits import DEFAULT_FRACTIONS, stratified_split
from atomizer.errors import DatasetError
from atomizer.sensors.spec import SensorSpec
from atomizer.plugins.host import host_or_builtin
from atomizer.sensors.resolve import resolve_sensor
from atomizer.simulate.api import BandRasters

BAND_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
REFLECTANCE_SCALE = 1e-4
PATCH_SIZE_M = 1200.0
#: The sensor of a patch whose name does not start with a sensor id or alias (``S2A_...``).
DEFAULT_SENSOR = "sentinel2a"


def patch_sensor(name: str, sensors: Any, *, suffix: str = "") -> SensorSpec:
    """The spec of the satellite a patch name starts with, looked up as a sensor id or alias:
    ``S2B_MSIL2A_...`` -> ``s2b`` (+ ``suffix``, e.g. ``-l2a``); Sentinel-2A when it names none."""
    ref = name.split("_", 1)[0] + suffix
    return resolve_sensor(ref if ref in sensors else DEFAULT_SENSOR + suffix, sensors)
METADATA_FILES = ("metadata.parquet", "metadata.csv")
LABELS_SUFFIX = "_labels_metadata.json"


@dataclass(frozen=True)
class PatchRecord:
    """One patch: its name, folder, and (v2) its 19-class labels and split."""

    name: str
    folder: Path
    labels: tuple[str, ...] | None = None
    split: str | None = None


def _parse_labels(text: Any) -> tuple[str, ...]:
    if isinstance(text, (list, tuple, np.ndarray)):
        return tuple(str(t) for t in text)
    text = str(text).strip()
    if text.startswith("["):
        try:
            return tuple(str(t) for t in ast.literal_eval(text))
        except (ValueError, SyntaxError):
            raise DatasetError(f"cannot parse BigEarthNet labels {text[:60]!r}") from None
    return tuple(t.strip() for t in text.split(";") if t.strip())


def read_v2_metadata(path: Path) -> list[dict[str, Any]]:
    """Rows (``patch_id``, ``labels``, ``split``) of a reBEN metadata table (parquet or CSV)."""
    if not path.is_file():
        raise DatasetError(f"BigEarthNet metadata not found at {path}: no such file")
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path, columns=["patch_id", "labels", "split"])
        except ImportError:
            raise DatasetError(
                f"reading {path.name} needs pandas and pyarrow (pip install pyarrow), or give a "
                "metadata.csv with columns patch_id, labels, split"
            ) from None
        rows = frame.to_dict("records")
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    missing = {"patch_id", "labels", "split"} - set(rows[0] if rows else {})
    if missing:
        raise DatasetError(f"{path}: metadata lacks column(s) {', '.join(sorted(missing))}")
    return rows


def _v2_folder(root: Path, patch_id: str) -> Path:
    tile = patch_id.rsplit("_", 2)[0]
    nested = root / tile / patch_id
    return nested if nested.is_dir() else root / patch_id


def _read_split_csv(path: Path) -> set[str]:
    if not path.is_file():
        raise DatasetError(f"split file not found at {path}: no such file")
    with path.open(newline="", encoding="utf-8") as fh:
        return {row[0].strip() for row in csv.reader(fh) if row and row[0].strip()}


def _datetime_from_name(name: str) -> dt.datetime | None:
    for part in name.split("_"):
        if len(part) == 15 and part[8] == "T":
            try:
                return dt.datetime.strptime(part, "%Y%m%dT%H%M%S")
            except ValueError:
                return None
    return None


class BigEarthNet(AtomDataset):
    """BigEarthNet-S2 patches: ``dataset[i] -> (AtomSet, multi-hot float32 labels)``."""

    task = "multilabel"

    def __init__(
        self,
        root: str | Path,
        *,
        layout: Literal["auto", "v1", "v2"] = "auto",
        split: str | None = None,
        metadata: str | Path | None = None,
        split_csv: str | Path | None = None,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        nomenclature: int = 19,
        bands: Sequence[str] = BAND_NAMES,
        sensor: SensorSpec | str | None = None,
        modality: Modality | None = None,
        crop: Literal["center", "random"] = "center",
        seed: int = 0,
        host: Any = None,
    ) -> None:
        super().__init__(modality=modality, crop=crop, seed=seed, host=host)
        self.root = require_dir(root, "BigEarthNet")
        self.split = check_split(split)
        if nomenclature not in (19, 43):
            raise DatasetError(f"nomenclature must be 19 or 43, not {nomenclature}")
        self.nomenclature = nomenclature
        self.class_names = nomen.LABELS_19 if nomenclature == 19 else nomen.LABELS_43
        self.band_names = tuple(bands)
        self._sensor = sensor
        self._specs: dict[str, SensorSpec] = {}
        meta_path = Path(metadata).expanduser() if metadata is not None else self._find_metadata()
        if layout == "auto":
            layout = "v2" if meta_path is not None else "v1"
        if layout not in ("v1", "v2"):
            raise DatasetError(f"unknown BigEarthNet layout {layout!r}; use v1, v2 or auto")
        self.layout = layout
        if layout == "v2":
            if meta_path is None:
                raise DatasetError(
                    f"no {' or '.join(METADATA_FILES)} in {self.root} or its parent; pass metadata="
                )
            if nomenclature != 19:
                raise DatasetError("BigEarthNet v2 labels exist in the 19-class nomenclature only")
            self.records = self._v2_records(meta_path)
        else:
            self.records = self._v1_records(split_csv, fractions)
        self._label_cache: dict[int, np.ndarray] = {}

    # --- discovery -------------------------------------------------------------------------------
    def _find_metadata(self) -> Path | None:
        for folder in (self.root, self.root.parent):
            for name in METADATA_FILES:
                if (folder / name).is_file():
                    return folder / name
        return None

    def _v2_records(self, meta_path: Path) -> list[PatchRecord]:
        out = []
        for row in read_v2_metadata(meta_path):
            split = str(row["split"]).strip()
            if self.split is not None and split != self.split:
                continue
            pid = str(row["patch_id"]).strip()
            out.append(
                PatchRecord(pid, _v2_folder(self.root, pid), _parse_labels(row["labels"]), split)
            )
        if not out:
            raise DatasetError(
                f"{meta_path}: no patches{f' in split {self.split}' if self.split else ''}"
            )
        return out

    def _v1_records(
        self, split_csv: str | Path | None, fractions: Sequence[float]
    ) -> list[PatchRecord]:
        folders = sorted(
            d
            for d in self.root.iterdir()
            if d.is_dir() and (d / f"{d.name}{LABELS_SUFFIX}").is_file()
        )
        if not folders:
            raise DatasetError(
                f"no BigEarthNet v1 patches in {self.root} (folders holding "
                f"<patch>{LABELS_SUFFIX}); check the path or pass layout='v2'"
            )
        if self.split is not None:
            if split_csv is not None:
                wanted = _read_split_csv(Path(split_csv).expanduser())
                folders = [d for d in folders if d.name in wanted]
            else:
                parts = stratified_split(
                    np.zeros(len(folders), np.int64), fractions, seed=self.seed
                )
                folders = [folders[i] for i in parts[self.split]]
        return [PatchRecord(d.name, d, split=self.split) for d in folders]

    # --- items -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def spec_for(self, name: str) -> SensorSpec:
        """The sensor spec whose band metadata a patch's atoms carry."""
        if isinstance(self._sensor, SensorSpec):
            return self._sensor
        key = self._sensor if self._sensor is not None else name.split("_", 1)[0]
        if key not in self._specs:
            sensors = host_or_builtin(self.host).sensors
            self._specs[key] = (resolve_sensor(key, sensors) if self._sensor is not None
                                else patch_sensor(name, sensors))
        return self._specs[key]

    def label_names(self, index: int) -> tuple[str, ...]:
        """The patch's labels as written in its metadata (43-class for v1, 19-class for v2)."""
        rec = self.records[index]
        if rec.labels is not None:
            return rec.labels
        return tuple(self._v1_json(rec).get("labels", []))

    def _v1_json(self, rec: PatchRecord) -> dict[str, Any]:
        path = rec.folder / f"{rec.name}{LABELS_SUFFIX}"
        from atomizer.documents import read_json

        data = read_json(path, what="BigEarthNet labels file", error=DatasetError)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: BigEarthNet labels are a JSON object; the file is corrupt")
        return data

    def label(self, index: int) -> np.ndarray:
        if index not in self._label_cache:
            names = self.label_names(index)
            if self.layout == "v1" and self.nomenclature == 19:
                names = tuple(nomen.to_19(names))
            idx = nomen.indices(names, self.nomenclature)
            self._label_cache[index] = multi_hot(idx, self.n_classes)
        return self._label_cache[index].copy()

    def source(self, index: int) -> BandRasters:
        """The patch's bands as planes at their native GSDs (reflectance)."""
        import rasterio
        from rasterio.errors import RasterioIOError

        rec = self.records[index]
        spec = self.spec_for(rec.name)
        planes, bands = [], []
        crs = lonlat = None
        for name in self.band_names:
            path = rec.folder / f"{rec.name}_{name}.tif"
            try:
                with rasterio.open(path) as ds:
                    dn = ds.read(1)
                    gsd = float(abs(ds.res[0]))
                    nodata = ds.nodata
                    if crs is None and ds.crs is not None:
                        crs, lonlat = ds.crs.to_string(), _centre_lonlat(ds)
            except RasterioIOError as exc:
                raise DatasetError(f"cannot read BigEarthNet band {path}: {exc}") from None
            plane = dn.astype(np.float32) * np.float32(REFLECTANCE_SCALE)
            if nodata is not None:
                plane[dn == nodata] = np.nan
            band = spec.band(name).model_copy(
                update={"gsd_m": gsd, "scale": None, "offset": None, "nodata": None}
            )
            planes.append(plane)
            bands.append(band)
        when = None
        if rec.labels is None:
            text = self._v1_json(rec).get("acquisition_date")
            when = dt.datetime.fromisoformat(text) if text else None
        when = when or _datetime_from_name(rec.name)
        scene = SceneMeta(
            sensor_id=spec.id,
            datetime=when,
            crs=crs,
            lon=lonlat[0] if lonlat else None,
            lat=lonlat[1] if lonlat else None,
            source_id=rec.name,
            extra={"dataset": f"bigearthnet-{self.layout}"},
        )
        return BandRasters(tuple(planes), tuple(bands), scene)


def _centre_lonlat(ds: Any) -> tuple[float, float] | None:
    from rasterio.warp import transform

    try:
        b = ds.bounds
        xs, ys = transform(ds.crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.top + b.bottom) / 2])
        return float(xs[0]), float(ys[0])
    except Exception:  # noqa: BLE001 - a missing PROJ grid must not make a patch unreadable
        return None


__all__ = ["BAND_NAMES", "REFLECTANCE_SCALE", "BigEarthNet", "PatchRecord", "read_v2_metadata"]
