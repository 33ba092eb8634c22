"""Writing small north-up GeoTIFFs from arrays (tests, examples, exports of simulated scenes)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atomizer.io import atomic_path

#: A UTM zone used by default (31N, around 3 degrees east, 0-84 degrees north).
DEFAULT_CRS = "EPSG:32631"
DEFAULT_ORIGIN_M = (500_000.0, 5_000_000.0)


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    *,
    gsd_m: float = 10.0,
    origin_m: tuple[float, float] = DEFAULT_ORIGIN_M,
    crs: str | None = DEFAULT_CRS,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``array`` (``(bands, rows, cols)`` or ``(rows, cols)``) as a GeoTIFF, atomically.

    ``origin_m`` is the north-west corner (x east, y north) in ``crs``; ``crs=None`` writes a file
    without georeferencing. ``mask`` (rows, cols; nonzero = valid) becomes an internal mask band.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    count, rows, cols = array.shape
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": count,
        "dtype": array.dtype.name,
    }
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = Affine(gsd_m, 0.0, origin_m[0], 0.0, -gsd_m, origin_m[1])
    if nodata is not None:
        profile["nodata"] = nodata
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # crs=None asks for exactly that
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as ds:
            ds.write(array)
            if descriptions is not None:
                for i, text in enumerate(descriptions, start=1):
                    ds.set_band_description(i, text)
            if scales is not None:
                ds.scales = tuple(scales)
            if offsets is not None:
                ds.offsets = tuple(offsets)
            if mask is not None:
                ds.write_mask(np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8))
            if tags:
                ds.update_tags(**tags)
    return path
