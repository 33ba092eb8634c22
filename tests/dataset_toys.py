"""Tiny inputs for dataset-build tests: the real S2 tile as a STAC item, point labels drawn from
its scene classification layer, and a small synthetic two-band item written in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

S2_FOLDER = ("s2_l2a_T29UNU_20221005_60m",)
SCL_NAME = "T29UNU_20221005T115411_SCL_60m.jp2"
CLASSES = {4: "vegetation", 6: "water", 9: "cloud"}


def scl_points(scl_path: Path, per_class: int, seed: int = 0, size_px: int | None = None
               ) -> list[tuple[float, float, str]]:
    """``per_class`` (lon, lat, class) points at SCL pixel centres of each class in CLASSES
    (within the first ``size_px`` rows and columns when given)."""
    import rasterio
    from rasterio.warp import transform

    with rasterio.open(scl_path) as ds:
        window = ((0, size_px), (0, size_px)) if size_px else None
        scl, t, crs = ds.read(1, window=window), ds.transform, ds.crs
    rng = np.random.default_rng(seed)
    out = []
    for code, name in CLASSES.items():
        rows, cols = np.nonzero(scl[30:-30, 30:-30] == code)  # away from the tile edge
        pick = rng.choice(rows.size, size=per_class, replace=False)
        xs = [t.c + (c + 30.5) * t.a for c in cols[pick]]
        ys = [t.f + (r + 30.5) * t.e for r in rows[pick]]
        lons, lats = transform(crs, "EPSG:4326", xs, ys)
        out.extend((lo, la, name) for lo, la in zip(lons, lats))
    return out


def write_points(path: Path, points, column: str = "landcover", extra=None) -> Path:
    feats = []
    for i, (lon, lat, value) in enumerate(points):
        props = {column: value, **((extra or {}).get(i, {}))}
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def write_item_collection(path: Path, items) -> Path:
    from pystac import ItemCollection

    ItemCollection(list(items)).save_object(str(path))
    return path


def s2_tile_item(folder: Path):
    from atomizer.readers.stac_build import sentinel2_l2a_item

    return sentinel2_l2a_item(folder)


def synthetic_item(tmp: Path, item_id: str, *, origin=(500_000.0, 5_800_000.0), corrupt: bool = False):
    """A two-band L2A-like item (B04 at 10 m, 40x40; B8A at 20 m, 20x20) in UTM 29N."""
    import rasterio
    from affine import Affine

    from atomizer.readers.stac_build import build_stac_item

    tmp.mkdir(parents=True, exist_ok=True)
    assets = {}
    for band, gsd, n in (("B04", 10.0, 40), ("B8A", 20.0, 20)):
        path = tmp / f"{item_id}_{band}.tif"
        data = (np.arange(n * n, dtype=np.uint16).reshape(n, n) % 5000 + 1000)
        with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16",
                           crs="EPSG:32629", transform=Affine(gsd, 0, origin[0], 0, -gsd, origin[1]),
                           nodata=0) as ds:
            ds.write(data, 1)
        assets[band] = path
    item = build_stac_item(item_id, assets, datetime=dt.datetime(2022, 10, 5, tzinfo=dt.timezone.utc),
                           properties={"platform": "sentinel-2a", "constellation": "sentinel-2"})
    if corrupt:
        raw = assets["B04"].read_bytes()
        assets["B04"].write_bytes(raw[: len(raw) // 3])
    return item


def centre_lonlat(origin=(500_000.0, 5_800_000.0), offset_m=(200.0, -200.0)) -> tuple[float, float]:
    from rasterio.warp import transform

    lons, lats = transform("EPSG:32629", "EPSG:4326", [origin[0] + offset_m[0]], [origin[1] + offset_m[1]])
    return float(lons[0]), float(lats[0])


def write_spec(path: Path, **keys) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


def tile_spec(tmp: Path, folder: Path, *, per_class: int = 3, chip_m: float = 300.0, **keys) -> Path:
    """Items (the S2 tile), SCL-drawn point labels and a spec in ``tmp``."""
    write_item_collection(tmp / "items.json", [s2_tile_item(folder)])
    write_points(tmp / "labels.geojson", scl_points(folder / SCL_NAME, per_class=per_class))
    return write_spec(tmp / "spec.yaml", items="items.json",
                      labels={"path": "labels.geojson", "column": "landcover"},
                      chip_m=chip_m, **{"shard_chips": 4, "split": {"blocks_m": 20000}, **keys})
