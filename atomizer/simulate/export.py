"""Write simulated rasters as GeoTIFF (one file per GSD) plus a STAC item describing them.

Simulated products have no map projection unless the source had one: the GeoTIFFs carry a local
grid in metres centred on the footprint (the same frame as atom positions: x east, y north), with no
CRS, and the STAC item has a null geometry. Every file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atomizer.errors import OutputError
from atomizer.io import atomic_path, atomic_write_text
from atomizer.sensors.spec import SensorSpec
from atomizer.simulate.api import BandRasters

NM_PER_UM = 1000.0
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"


def _groups(rasters: BandRasters) -> list[tuple[float, list[int]]]:
    groups: dict[tuple[float, tuple[int, int]], list[int]] = {}
    for i, (plane, band) in enumerate(zip(rasters.planes, rasters.bands)):
        groups.setdefault((band.gsd_m, plane.shape), []).append(i)
    return [(gsd, idx) for (gsd, _), idx in sorted(groups.items(), key=lambda kv: kv[0][0])]


def geotiff_paths(path: str | Path, gsds_m: Sequence[float]) -> list[Path]:
    """``OUT.tif`` for one GSD, else ``OUT_<gsd>m.tif`` per GSD (finest first)."""
    path = Path(path)
    if len(gsds_m) == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{g:g}m{path.suffix}") for g in gsds_m]


def write_geotiff(
    rasters: BandRasters,
    path: str | Path,
    *,
    target: SensorSpec | None = None,
    stac_path: str | Path | None = None,
) -> list[Path]:
    """Write ``rasters`` as float32 GeoTIFF(s) and a STAC item; returns every path written.

    Bands on the same grid share one file (band descriptions = band names, NaN = no data). The STAC
    item goes to ``stac_path`` (default ``OUT.json``); it needs the scene's acquisition time.
    """
    import rasterio
    from rasterio.transform import Affine

    path = Path(path)
    if rasters.scene.datetime is None:
        raise OutputError(
            f"cannot write the STAC item for {path}: the source has no acquisition time; "
            "give one (--datetime YYYY-MM-DD on the command line)"
        )
    groups = _groups(rasters)
    paths = geotiff_paths(path, [g for g, _ in groups])
    for (gsd, idx), out in zip(groups, paths):
        stack = np.stack([rasters.planes[i] for i in idx]).astype(np.float32)
        _, h, w = stack.shape
        transform = Affine(gsd, 0.0, -w * gsd / 2.0, 0.0, -gsd, h * gsd / 2.0)
        with (
            atomic_path(out) as tmp,
            rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                width=w,
                height=h,
                count=len(idx),
                dtype="float32",
                transform=transform,
                nodata=float("nan"),
                compress="deflate",
            ) as dst,
        ):
            dst.write(stack)
            for k, i in enumerate(idx, start=1):
                dst.set_band_description(k, rasters.bands[i].name)
    item = stac_item(rasters, paths, groups, target=target, item_id=path.stem)
    stac = Path(stac_path) if stac_path is not None else path.with_suffix(".json")
    atomic_write_text(stac, json.dumps(item, indent=2) + "\n")
    return [*paths, stac]


def stac_item(
    rasters: BandRasters,
    paths: Sequence[Path],
    groups: Sequence[tuple[float, list[int]]],
    *,
    target: SensorSpec | None,
    item_id: str,
) -> dict:
    """The STAC item (a dict) of simulated GeoTIFFs: one asset per file, with its ``eo:bands``."""
    import pystac
    from pystac.extensions.eo import Band as EOBand
    from pystac.extensions.eo import EOExtension

    scene = rasters.scene
    when = scene.datetime
    if when.tzinfo is None:
        import datetime as dt

        when = when.replace(tzinfo=dt.timezone.utc)
    properties: dict = {
        "gsd": min(g for g, _ in groups),
        "atomizer:sensor": scene.sensor_id,
        "atomizer:simulation": scene.extra.get("simulation", {}),
    }
    if target is not None:
        if target.platforms:
            properties["platform"] = target.platforms[0].lower()
        if target.instrument:
            properties["instruments"] = [target.instrument.lower()]
    geometry = bbox = None
    if scene.lon is not None and scene.lat is not None:
        geometry = {"type": "Point", "coordinates": [scene.lon, scene.lat]}
        bbox = [scene.lon, scene.lat, scene.lon, scene.lat]
    item = pystac.Item(
        id=item_id, geometry=geometry, bbox=bbox, datetime=when, properties=properties
    )
    for (gsd, idx), out in zip(groups, paths):
        key = "data" if len(groups) == 1 else f"data_{gsd:g}m"
        asset = pystac.Asset(href=out.name, media_type=GEOTIFF_MEDIA_TYPE, roles=["data"])
        asset.extra_fields["gsd"] = gsd
        item.add_asset(key, asset)
        EOExtension.ext(item.assets[key], add_if_missing=True).bands = [
            EOBand.create(
                name=rasters.bands[i].name,
                common_name=rasters.bands[i].common_name,
                center_wavelength=rasters.bands[i].center_wavelength_nm / NM_PER_UM,
                full_width_half_max=rasters.bands[i].fwhm_nm / NM_PER_UM,
            )
            for i in idx
        ]
    return item.to_dict(include_self_link=False, transform_hrefs=False)
