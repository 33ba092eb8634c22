"""How an xarray array is laid out: its band dim, pixel-centre grid and CRS (for the xarray reader).

stackstac: dims ``time, band, y, x``, top-left ``x`` / ``y`` coordinates by default (its
``transform`` attribute tells), item properties and ``eo`` band fields as coordinates, ``crs``
and ``epsg``. odc-stac: a Dataset with one variable per band, pixel-centre coordinates, a
``spatial_ref`` coordinate. rioxarray: dims ``band, y, x`` with numbered bands, pixel-centre
coordinates, ``spatial_ref``, CF attributes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from atomizer.errors import ReaderError

#: Relative spread of the coordinate steps tolerated before the grid is called irregular.
REGULAR_GRID_RTOL = 1e-6


def scalar_coord(obj: Any, name: str) -> Any:
    """The single value of coordinate / attribute ``name``; ``None`` when absent or varying."""
    if name in obj.coords:
        values = np.unique(np.asarray(obj.coords[name].values).ravel())
        if values.size != 1:
            return None
        value = values[0]
        return value.item() if isinstance(value, np.generic) else value
    return obj.attrs.get(name)


def band_coord(da: Any, name: str, i: int) -> Any:
    """Band ``i``'s value of a band coordinate (or a 0-D one); ``None`` when absent or empty."""
    if name not in da.coords:
        return None
    coord = da.coords[name]
    if coord.dims == ("band",):
        value = coord.values[i]
    elif not coord.dims:
        value = coord.values.item()
    else:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return value


def band_array(obj: Any, label: str) -> tuple[Any, list[dict[str, Any]]]:
    """``(DataArray with dims band, y, x in canonical order, attributes of each band)``."""
    import xarray as xr

    if isinstance(obj, xr.Dataset):  # odc-stac: one data variable per band
        names = [n for n, v in obj.data_vars.items() if {"x", "y"} <= set(v.dims)]
        if not names:
            raise ReaderError(f"{label}: the Dataset has no data variable with dims y and x")
        band_attrs = [dict(obj[n].attrs) for n in names]
        stacked = xr.concat([obj[n] for n in names], dim="band", coords="minimal")
        obj = stacked.assign_coords(band=names).assign_attrs(obj.attrs)
    elif isinstance(obj, xr.DataArray):
        band_attrs = []
    else:
        raise ReaderError(
            f"{label}: expected an xarray DataArray or Dataset, got {type(obj).__name__}"
        )
    if "band" not in obj.dims:
        obj = obj.expand_dims("band")
    if "time" in obj.dims:
        if obj.sizes["time"] != 1:
            raise ReaderError(
                f"{label}: the array holds {obj.sizes['time']} times; an AtomSet is one scene: "
                "select one with .isel(time=i) or .sel(time=...)"
            )
        obj = obj.squeeze("time")
    if set(obj.dims) != {"band", "y", "x"} or not {"x", "y"} <= set(obj.coords):
        raise ReaderError(
            f"{label}: the array has dims {tuple(obj.dims)}; it needs band, y and x with x / y "
            "coordinates (projected, in metres; reproject longitude / latitude arrays first)"
        )
    obj = obj.transpose("band", "y", "x").sortby("y", ascending=False).sortby("x")
    return obj, band_attrs or [dict(obj.attrs)] * obj.sizes["band"]


# --- geometry -------------------------------------------------------------------------------------
def _transform(da: Any) -> Any:
    """The affine transform stackstac (``attrs["transform"]``) records, if any."""
    t = da.attrs.get("transform")
    return t if all(hasattr(t, k) for k in ("a", "c", "e", "f")) else None


def _step(coords: np.ndarray, axis: str, fallback: float | None, label: str) -> float:
    if coords.size >= 2:
        steps = np.diff(coords)
        step = float(steps.mean())
        if not np.allclose(steps, step, rtol=REGULAR_GRID_RTOL, atol=0.0):
            raise ReaderError(
                f"{label}: the {axis} coordinates are not evenly spaced (steps "
                f"{steps.min():g}..{steps.max():g}); an AtomSet needs a regular grid"
            )
        return abs(step)
    if fallback is None or not fallback > 0:
        raise ReaderError(
            f"{label}: the array is one pixel along {axis} and records no pixel size; give it at "
            "least two pixels or a transform attribute"
        )
    return float(fallback)


def pixel_centres(da: Any, label: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Pixel-centre x (west to east) and y (north to south) in CRS units, and the steps."""
    xs = np.asarray(da.x.values, dtype=np.float64)
    ys = np.asarray(da.y.values, dtype=np.float64)
    t = _transform(da)
    res = da.attrs.get("resolution")
    dx = _step(xs, "x", abs(t.a) if t is not None else res, label)
    dy = _step(ys, "y", abs(t.e) if t is not None else res, label)
    if dx * dy == 0 or not (math.isfinite(dx) and math.isfinite(dy)):
        raise ReaderError(f"{label}: the x / y coordinates give a pixel size of {dx:g} x {dy:g}")
    if t is not None and math.isclose(xs[0], t.c, abs_tol=dx / 100) and math.isclose(
        ys[0], t.f, abs_tol=dy / 100
    ):  # stackstac's default xy_coords="topleft": coordinates are pixel corners
        xs, ys = xs + dx / 2, ys - dy / 2
    return xs, ys, dx, dy


def array_crs(da: Any, label: str) -> Any:
    """The array's CRS (``None`` when it records none); a geographic CRS is refused."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    candidates = [da.attrs.get("crs")]
    if "spatial_ref" in da.coords:  # rioxarray, odc-stac
        ref = da.coords["spatial_ref"].attrs
        candidates += [ref.get("crs_wkt"), ref.get("spatial_ref")]
    epsg = scalar_coord(da, "epsg")  # stackstac
    candidates.append(f"EPSG:{int(epsg)}" if isinstance(epsg, (int, float)) else None)
    text = next((c for c in candidates if c), None)
    if text is None:
        return None
    try:
        crs = CRS.from_user_input(text)
    except CRSError as exc:
        raise ReaderError(f"{label}: its CRS {str(text)[:80]!r} is not understood: {exc}") from None
    if crs.is_geographic:
        raise ReaderError(
            f"{label}: the array is in a geographic CRS ({crs.to_string()}, degrees); atoms need "
            "metres: reproject it first (e.g. rioxarray's .rio.reproject(utm_crs))"
        )
    return crs
