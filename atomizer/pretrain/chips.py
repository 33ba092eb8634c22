"""Image chips + metadata (+ labels) from real data, for pretraining and probing.

Sources (see :class:`~atomizer.pretrain.config.ChipSourceConfig`):

- ``s2_tile``: a Sentinel-2 L2A tile of 60 m JPEG 2000 bands with its scene classification layer
  (``*_SCL_60m.jp2``) and ESA metadata (``MTD_MSIL2A.xml``, read by
  :func:`atomizer.readers.stac_build.read_sentinel2_l2a_product`, and ``MTD_TL.xml``). The tile is
  cut on an aligned grid of windows of ``chip_px * f`` pixels for each GSD factor ``f``; a window
  is averaged over ``f x f`` blocks (:func:`atomizer.simulate.spatial.aggregate`) to ``chip_px x
  chip_px`` pixels at ``60 f`` m (the same ground seen by a coarser sensor). Windows with any
  no-data pixel (DN 0, SCL 0 or 1) are skipped. The label is the majority SCL class of the window;
  at most ``max_chips_per_class`` windows per class and factor are drawn, classes with fewer than
  ``min_chips_per_class`` chips are left out. Metadata: the
  window centre reprojected to lon/lat, the sensing time, the tile's mean sun and viewing angles
  and cloud cover (tile-level values, as a catalogue gives them), GSD ``60 f`` m.
- ``bigearthnet``: BigEarthNet-S2 v1 patches (12 GeoTIFFs at native 10/20/60 m +
  ``*_labels_metadata.json``), read as :class:`atomizer.data.bigearthnet.BigEarthNet` reads them
  (reflectance = DN x 1e-4: BigEarthNet v1 predates the -1000 offset; the GeoTIFFs' no-data value
  is no data). Each band is aggregated by ``f`` (its GSD times ``f``; area-weighted and NaN-aware,
  so a missing pixel does not blank its whole block) and keeps its own grid. Multi-label patches
  carry no single label: they are used for pretraining.

Chips of one place share a ``group`` so that probes never split a place across train and test.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import DatasetError, ReaderError
from atomizer.pretrain.config import ChipSourceConfig, PretrainConfig, resolve_data_root
from atomizer.pretrain.metadata import (
    MetadataRecord,
    metadata_from_bigearthnet_json,
    parse_timestamp,
    sensor_id_from_platform,
)
from atomizer.readers.stac_build import read_sentinel2_l2a_product, read_xml
from atomizer.simulate.api import BandRasters, atoms_from_planes, simulated_band
from atomizer.simulate.spatial import aggregate
from atomizer.training.seed import Stream, stream_rng

#: Sentinel-2 L2A scene classification classes (ESA L2A product specification).
SCL_CLASSES: dict[int, str] = {
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium",
    9: "cloud_high",
    10: "thin_cirrus",
    11: "snow",
}
#: SCL values that mean no data (0) or saturated / defective (1).
SCL_INVALID = (0, 1)
S2_TILE_GSD_M = 60.0


@dataclass(frozen=True)
class Chip:
    """One image sample: atoms, metadata, optional class label, the place it belongs to."""

    atoms: AtomSet
    metadata: MetadataRecord
    label: str | None
    group: str
    source: str
    use: str = "both"


@dataclass
class ChipSet:
    """All chips of an experiment and the probe classes."""

    chips: list[Chip]

    @property
    def pretrain_chips(self) -> list[Chip]:
        return [c for c in self.chips if c.use in ("pretrain", "both")]

    @property
    def probe_chips(self) -> list[Chip]:
        return [c for c in self.chips if c.use in ("probe", "both") and c.label is not None]

    @property
    def class_names(self) -> list[str]:
        return sorted({c.label for c in self.probe_chips if c.label is not None})

    def probe_labels(self) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[c.label] for c in self.probe_chips], dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        per_class: dict[str, int] = {}
        for c in self.probe_chips:
            per_class[c.label] = per_class.get(c.label, 0) + 1
        return {
            "n_chips": len(self.chips),
            "n_pretrain": len(self.pretrain_chips),
            "n_probe": len(self.probe_chips),
            "n_groups_probe": len({c.group for c in self.probe_chips}),
            "probe_classes": dict(sorted(per_class.items())),
            "mean_atoms": float(np.mean([len(c.atoms) for c in self.chips])) if self.chips else 0.0,
        }


# --- Sentinel-2 tile ------------------------------------------------------------------------------
@dataclass(frozen=True)
class S2TileInfo:
    """What the ESA metadata files say about a tile."""

    sensing: MetadataRecord  # date, time, sensor, angles, cloud cover (no gsd, no location)
    band_files: dict[str, Path]
    scl_file: Path


def _xml_float(root: ET.Element, tag: str, path: Path) -> float | None:
    el = root.find(f".//{tag}")
    if el is None or not el.text:
        return None
    try:
        return float(el.text)
    except ValueError:
        raise ReaderError(f"{path}: {tag} is {el.text!r}, not a number") from None


def read_s2_tile_info(folder: Path) -> S2TileInfo:
    """Band files and tile-level metadata of a Sentinel-2 L2A tile folder (``*_60m.jp2``).

    The product metadata (``MTD_MSIL2A.xml``: band files, spacecraft, start time, cloud cover) is
    read by :func:`atomizer.readers.stac_build.read_sentinel2_l2a_product`; the tile metadata
    (``MTD_TL.xml``, optional) gives the sensing time and the mean sun and viewing angles.
    """
    product = read_sentinel2_l2a_product(folder, resolution_m=S2_TILE_GSD_M)
    if product.scl_file is None or not product.band_files:
        raise DatasetError(
            f"{folder}: expected *_Bxx_60m.jp2 bands and a *_SCL_60m.jp2 layer of a Sentinel-2 L2A "
            "tile; point the s2_tile source at such a folder"
        )
    date = time = None
    sun_az = sun_elev = view_zen = view_az = cloud = None
    tl = folder / "MTD_TL.xml"
    if tl.is_file():
        root = read_xml(tl)
        el = root.find(".//SENSING_TIME")
        if el is not None:
            date, time = parse_timestamp(el.text, where=str(tl))
        sun = root.find(".//Mean_Sun_Angle")
        if sun is not None:
            zen = _xml_float(sun, "ZENITH_ANGLE", tl)
            sun_elev = None if zen is None else 90.0 - zen
            sun_az = _xml_float(sun, "AZIMUTH_ANGLE", tl)
        views = root.findall(".//Mean_Viewing_Incidence_Angle")
        zs = [_xml_float(v, "ZENITH_ANGLE", tl) for v in views]
        azs = [_xml_float(v, "AZIMUTH_ANGLE", tl) for v in views]
        zs, azs = [z for z in zs if z is not None], [a for a in azs if a is not None]
        if zs:
            view_zen = float(np.mean(zs))  # incidence zenith at the ground, ~ off-nadir angle
        if azs:
            rad = np.radians(azs)
            view_az = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360)
        cloud = _xml_float(root, "CLOUDY_PIXEL_PERCENTAGE", tl)
    if date is None:
        date, time = parse_timestamp(product.start_time, where=str(product.mtd_path))
    sensing = MetadataRecord(
        date=date,
        time_utc=time,
        sensor_id=sensor_id_from_platform(product.spacecraft),
        off_nadir_deg=view_zen,
        view_azimuth_deg=view_az,
        sun_azimuth_deg=sun_az,
        sun_elevation_deg=sun_elev,
        cloud_cover_pct=cloud if cloud is not None else product.cloud_cover_pct,
    )
    return S2TileInfo(sensing=sensing, band_files=product.band_files, scl_file=product.scl_file)


def s2_tile_chips(
    folder: Path,
    spec: Any,
    source: ChipSourceConfig,
    rng: np.random.Generator,
) -> list[Chip]:
    """Labelled chips of a Sentinel-2 L2A tile (see the module docstring)."""
    import rasterio
    from rasterio.warp import transform

    info = read_s2_tile_info(folder)
    names = [n for n in info.band_files if n in {b.name for b in spec.bands}]
    if source.bands is not None:
        missing = [b for b in source.bands if b not in names]
        if missing:
            raise DatasetError(
                f"{folder}: bands {missing} are not among the tile's bands {names} (of {spec.id})"
            )
        names = list(source.bands)
    if not names:
        raise DatasetError(f"{folder}: none of the bands {list(info.band_files)} is in {spec.id}")
    with rasterio.open(info.scl_file) as ds:
        scl = ds.read(1)
        crs, tf = ds.crs, ds.transform
    stack = []
    for n in names:
        with rasterio.open(info.band_files[n]) as ds:
            stack.append(ds.read(1))
    dn = np.stack(stack)  # (B, H, W) uint16
    invalid = np.isin(scl, SCL_INVALID) | (dn == 0).any(axis=0)
    n_cls = max(SCL_CLASSES) + 1
    f_max = max(source.gsd_factors)
    picked: list[tuple[int, int, int, int]] = []  # (factor, row, col, class)
    for f in source.gsd_factors:
        w = source.chip_px * f
        n_r, n_c = scl.shape[0] // w, scl.shape[1] // w
        blocks = scl[: n_r * w, : n_c * w].reshape(n_r, w, n_c, w)
        bad = invalid[: n_r * w, : n_c * w].reshape(n_r, w, n_c, w).any(axis=(1, 3))
        counts = np.stack([(blocks == c).sum(axis=(1, 3)) for c in range(n_cls)], axis=-1)
        majority = counts.argmax(-1)
        for c in SCL_CLASSES:
            rows, cols = np.nonzero((majority == c) & ~bad)
            if len(rows) == 0:
                continue
            take = rng.choice(
                len(rows), size=min(len(rows), source.max_chips_per_class), replace=False
            )
            picked.extend((f, int(rows[i]), int(cols[i]), c) for i in np.sort(take))
    totals: dict[int, int] = {}
    for *_, c in picked:
        totals[c] = totals.get(c, 0) + 1
    keep_classes = {c for c, n in totals.items() if n >= source.min_chips_per_class}
    picked = [p for p in picked if p[3] in keep_classes]
    if not picked:
        return []
    # window centres in the tile's CRS, then lon/lat in one call
    w_px = np.array([source.chip_px * f for f, *_ in picked], dtype=np.float64)
    col = (np.array([p[2] for p in picked]) + 0.5) * w_px
    row = (np.array([p[1] for p in picked]) + 0.5) * w_px
    cx = tf.c + tf.a * col + tf.b * row
    cy = tf.f + tf.d * col + tf.e * row
    lons, lats = transform(crs, "EPSG:4326", cx.tolist(), cy.tolist())
    out = []
    cell = source.chip_px * f_max
    for (f, r, c, cls), lon, lat in zip(picked, lons, lats, strict=True):
        w = source.chip_px * f
        window = dn[:, r * w : (r + 1) * w, c * w : (c + 1) * w]
        arr = aggregate(window, S2_TILE_GSD_M, S2_TILE_GSD_M * f, axes=(1, 2))
        gsd = S2_TILE_GSD_M * f
        record = replace(info.sensing, gsd_m=gsd, lon=float(lon), lat=float(lat))
        group = f"{folder.name}:{(r * w + w // 2) // cell}:{(c * w + w // 2) // cell}"
        scene = SceneMeta(
            sensor_id=spec.id,
            datetime=record.datetime,
            lon=float(lon),
            lat=float(lat),
            crs=str(crs),
            source_id=f"{folder.name}:r{r}:c{c}:x{f}",
        )
        atoms = AtomSet.from_array(arr, spec, gsd_m=gsd, bands=names, apply_scale=True, scene=scene)
        out.append(Chip(atoms, record, SCL_CLASSES[cls], group, "s2_tile", source.use))
    return out


# --- BigEarthNet ----------------------------------------------------------------------------------
def bigearthnet_patch_chip(
    rasters: BandRasters,
    record: MetadataRecord,
    spec: Any,
    factor: int,
    use: str,
    bands: Sequence[str] | None = None,
) -> Chip:
    """One BigEarthNet patch, every band aggregated by ``factor`` on its native grid.

    ``rasters`` is the patch as :meth:`atomizer.data.bigearthnet.BigEarthNet.source` reads it
    (reflectance, no data as NaN); aggregation is area-weighted and NaN-aware
    (:func:`atomizer.simulate.spatial.aggregate`). Atoms carry ``spec``'s bands.
    """
    spec_names = {b.name for b in spec.bands}
    planes, chip_bands = [], []
    for plane, band in zip(rasters.planes, rasters.bands, strict=True):
        if band.name not in spec_names or (bands is not None and band.name not in bands):
            continue
        gsd = band.gsd_m * factor
        planes.append(aggregate(plane, band.gsd_m, gsd, what=f"band {band.name}"))
        chip_bands.append(simulated_band(spec.band(band.name), gsd))
    name = rasters.scene.source_id
    if not planes:
        raise DatasetError(f"{name}: no band GeoTIFF matches the bands of {spec.id}")
    record = record.with_gsd(min(b.gsd_m for b in chip_bands))
    scene = SceneMeta(
        sensor_id=spec.id,
        datetime=record.datetime,
        lon=record.lon,
        lat=record.lat,
        source_id=f"{name}:x{factor}",
    )
    atoms = atoms_from_planes(planes, chip_bands, scene)
    return Chip(atoms, record, None, str(name), "bigearthnet", use)


def bigearthnet_chips(folder: Path, source: ChipSourceConfig, host: Any) -> list[Chip]:
    """Chips of every BigEarthNet-S2 v1 patch in ``folder``, one per GSD factor.

    Patches are read by :class:`atomizer.data.bigearthnet.BigEarthNet`; atoms carry the bands of
    ``source.sensor`` or of the patch's own satellite (``sentinel2a-l2a`` / ``sentinel2b-l2a``).
    """
    from atomizer.data.bigearthnet import BAND_NAMES, LABELS_SUFFIX, BigEarthNet, patch_sensor

    # file-name order (B8A last), as the chips have always had: the augmentations draw atoms by
    # index, so another order would change every pretraining run
    wanted = sorted(b for b in BAND_NAMES if source.bands is None or b in source.bands)
    dataset = BigEarthNet(folder, layout="v1", bands=wanted, host=host)
    out = []
    for i, patch in enumerate(dataset.records):
        spec = (host.sensors.get(source.sensor) if source.sensor
                else patch_sensor(patch.name, host.sensors, suffix="-l2a"))
        rasters = dataset.source(i)
        record = metadata_from_bigearthnet_json(patch.folder / f"{patch.name}{LABELS_SUFFIX}")
        for f in source.gsd_factors:
            out.append(bigearthnet_patch_chip(rasters, record, spec, f, source.use, source.bands))
    return out


def build_chips(
    config: PretrainConfig, *, host: Any, config_dir: str | os.PathLike | None = None
) -> ChipSet:
    """Every chip of ``config.data`` (real data; a missing folder is a :class:`DatasetError`)."""
    root = resolve_data_root(config, config_dir)
    chips: list[Chip] = []
    for i, source in enumerate(config.data.sources):
        folder = root / source.path
        if not folder.is_dir():
            raise DatasetError(
                f"data source {i} ({source.kind}): folder {folder} not found; set data.root in the "
                "config or the ATOMIZER_SHARED_DATA environment variable to the shared data folder"
            )
        rng = stream_rng(config.data.seed, Stream.CHIP_SAMPLING, i)
        if source.kind == "s2_tile":
            spec = host.sensors.get(source.sensor or "sentinel2a-l2a")
            chips.extend(s2_tile_chips(folder, spec, source, rng))
        else:
            chips.extend(bigearthnet_chips(folder, source, host))
    return ChipSet(chips)
