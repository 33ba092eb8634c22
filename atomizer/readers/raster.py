"""The engine every raster reader shares: band sources (file + band index) in, one AtomSet out.

Each band is read on its own grid (never resampled), through a rasterio window when one is asked
for. Positions are metres east / north of ONE reference centre, the centre of the union of all
bands' full extents, so that a window's atoms are exactly the matching subset of the full scene's.

Files are opened once here for their metadata (grid, CRS, scale, no-data) and closed; the pixels
are read by :mod:`atomizer.readers.pixels`, which allocates the output once.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import BandMatchError, ReaderError, WindowError
from atomizer.limits import check
from atomizer.readers.base import (
    BandReading,
    LonLatBBox,
    PixelWindow,
    ProgressCallback,
    ReaderWarning,
)
from atomizer.readers.pixels import rasterio_message, read_atoms
from atomizer.readers.plan import BandPlan, BandSource, _Grid
from atomizer.readers.remote import NETWORK_ADVICE, gdal_env, is_remote, network_failure
from atomizer.sensors.spec import check_gsd_m, check_offset, check_scale

#: Points per edge used when projecting a lon/lat bbox (its edges curve in a projected CRS).
BBOX_DENSIFY_POINTS = 21
#: Relative difference allowed between a pixel's width and height before it is called non-square.
SQUARE_PIXEL_RTOL = 1e-6


@dataclass
class RasterScene:
    """The result of :func:`read_sources`: atoms, per-band readings and the geometry used."""

    atoms: AtomSet
    readings: list[BandReading]
    crs: str | None
    reference_centre_m: tuple[float, float]
    window: dict[str, Any] | None = None


def _is_url(href: str) -> bool:
    return "://" in href or href.startswith("/vsi")


def open_dataset(href: str, label: str, stack: contextlib.ExitStack) -> Any:
    """Open ``href`` with rasterio; a missing, corrupt or unreadable file is a ReaderError."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    if not _is_url(href):
        import os

        from atomizer.io import file_kind

        try:
            kind = file_kind(os.stat(href).st_mode)
        except OSError:
            raise ReaderError(
                f"{label}: file {href} does not exist; fix the href or download the asset first"
            ) from None
        if kind is not None:  # a folder or /dev/zero: GDAL would read it without end or say nothing
            raise ReaderError(f"{label}: {href} is {kind}, not an image file; fix the href")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return stack.enter_context(rasterio.open(href))
    except RasterioError as exc:
        message = rasterio_message(exc)
        if network_failure(href, message):
            raise ReaderError(f"{label}: cannot fetch {href} ({message}); {NETWORK_ADVICE}") from None
        raise ReaderError(
            f"{label}: cannot open {href} as a raster ({message}); the file is "
            "corrupt, truncated or not an image GDAL can read"
        ) from None


def _grid_of(ds: Any, label: str) -> _Grid | None:
    """The dataset's grid, or ``None`` when it is not georeferenced."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        t = ds.transform
    if ds.crs is None and t.is_identity:
        return None
    if t.b != 0 or t.d != 0:
        raise ReaderError(
            f"{label}: the geotransform is rotated or sheared ({tuple(t)[:6]}); warp the image "
            "to a "
            "north-up grid first (gdalwarp)"
        )
    if ds.crs is not None and ds.crs.is_geographic:
        raise ReaderError(
            f"{label}: the CRS {ds.crs.to_string()} is geographic (degrees), but atom positions "
            "are "
            "metres; reproject the image to a projected CRS such as UTM first (gdalwarp -t_srs)"
        )
    grid = _Grid(x0=t.c, dx=t.a, y0=t.f, dy=t.e, width=ds.width, height=ds.height)
    if not all(map(math.isfinite, (t.a, t.c, t.e, t.f))):
        raise ReaderError(f"{label}: the geotransform {tuple(t)[:6]} is not finite; the file "
                          "is corrupt")
    try:
        check_gsd_m(grid.pixel_m)
    except ValueError as exc:
        raise ReaderError(f"{label}: pixel size from the geotransform: {exc}; fix the "
                          "georeferencing (gdal_edit.py -a_ullr / -tr)") from None
    return grid


def _index_range(lo: float, hi: float, origin: float, step: float, n: int) -> tuple[int, int]:
    """Indices ``i`` in ``[0, n)`` whose pixel centre ``origin + (i + 0.5) * step`` lies in
    ``[lo, hi)``."""
    if step > 0:
        i0 = math.ceil((lo - origin) / step - 0.5)
        i1 = math.ceil((hi - origin) / step - 0.5)
    else:
        i0 = math.floor((hi - origin) / step - 0.5) + 1
        i1 = math.floor((lo - origin) / step - 0.5) + 1
    return max(0, min(n, i0)), max(0, min(n, i1))


def _window_bounds(
    opened: Sequence[BandPlan], crs: Any, bbox: LonLatBBox | None, window: PixelWindow | None
) -> tuple[tuple[float, float, float, float], dict[str, Any]]:
    """The requested window as projected bounds, plus a description for the report."""
    if bbox is not None:
        from rasterio.warp import transform_bounds

        if crs is None:
            raise WindowError("a lon/lat bbox needs a georeferenced image; use a pixel window")
        bounds = transform_bounds(
            "EPSG:4326", crs, *bbox.as_tuple(), densify_pts=BBOX_DENSIFY_POINTS
        )
        return bounds, {"kind": "bbox", "bbox_lonlat": list(bbox.as_tuple())}
    if window is None:
        raise WindowError("no window was given")
    finest = min((o.grid for o in opened), key=lambda g: g.pixel_m)
    if window.col_off >= finest.width or window.row_off >= finest.height:
        raise WindowError(
            f"pixel window starts at column {window.col_off}, row {window.row_off}, outside the "
            f"scene's {finest.width} x {finest.height} pixel grid (at {finest.pixel_m:g} m); "
            "choose offsets inside it"
        )
    xs = (
        finest.x0 + window.col_off * finest.dx,
        finest.x0 + (window.col_off + window.width) * finest.dx,
    )
    ys = (
        finest.y0 + window.row_off * finest.dy,
        finest.y0 + (window.row_off + window.height) * finest.dy,
    )
    desc = {
        "kind": "pixel",
        "pixel_window": [window.col_off, window.row_off, window.width, window.height],
        "grid_gsd_m": finest.pixel_m,
        "clipped": window.col_off + window.width > finest.width
        or window.row_off + window.height > finest.height,
    }
    return (min(xs), min(ys), max(xs), max(ys)), desc


def _scaling(src: BandSource, ds: Any) -> tuple[float, float, str]:
    """Scale and offset to apply: the source's metadata, else the file's, else the spec's."""
    if src.scale is not None or src.offset is not None:
        return (
            1.0 if src.scale is None else float(src.scale),
            0.0 if src.offset is None else float(src.offset),
            src.scale_from or "source metadata",
        )
    i = src.asset_band - 1
    f_scale, f_offset = float(ds.scales[i]), float(ds.offsets[i])
    if (f_scale, f_offset) != (1.0, 0.0):
        try:
            check_scale(f_scale)
            check_offset(f_offset)
        except ValueError as exc:
            raise ReaderError(
                f"{src.href}: band {src.asset_band}'s own scale/offset metadata: {exc}; fix it "
                "(gdal_edit.py -scale / -offset)"
            ) from None
        return f_scale, f_offset, "file"
    b = src.band
    if b.scale is not None or b.offset is not None:
        return (1.0 if b.scale is None else b.scale), (b.offset or 0.0), "spec"
    return 1.0, 0.0, "none"


def plan_sources(
    sources: Sequence[BandSource], open_files: dict[str, Any] | None = None
) -> list[BandPlan]:
    """Open every file once for its metadata (then close it) and plan each band's read.

    A file without georeferencing gets one pixel size for all its bands: the finest spec GSD among
    the bands read from it (bands stacked in one file share one grid). With ``open_files`` the
    datasets opened are left open there (href -> dataset) for :func:`.read_atoms` to reuse; the
    caller closes them.
    """
    fallback_gsd: dict[str, float] = {}
    for src in sources:
        fallback_gsd[src.href] = min(src.band.gsd_m, fallback_gsd.get(src.href, math.inf))
    with contextlib.ExitStack() as stack:
        datasets: dict[str, Any] = {}
        plans = [_plan(src, datasets, stack, fallback_gsd[src.href]) for src in sources]
        if open_files is not None:
            open_files.update(datasets)
            stack.pop_all()
        return plans


def _plan(
    src: BandSource, datasets: dict[str, Any], stack: contextlib.ExitStack, fallback_gsd_m: float
) -> BandPlan:
    from rasterio.enums import MaskFlags

    label = f"asset {src.asset!r}" if src.asset != src.href else src.href
    first = src.href not in datasets
    if first:
        datasets[src.href] = open_dataset(src.href, label, stack)
    ds = datasets[src.href]
    if src.single_band and ds.count != 1:
        raise BandMatchError(
            f"{label}: {src.href} has {ds.count} bands but the asset has no band metadata saying "
            f"which one is {src.band.name}; add bands / eo:bands to the asset"
        )
    if not 1 <= src.asset_band <= ds.count:
        raise ReaderError(
            f"{label}: band {src.asset_band} was asked for (for {src.band.name}) but {src.href} "
            f"has {ds.count} band(s); fix the band metadata or the band mapping"
        )
    dtype = ds.dtypes[src.asset_band - 1]
    if dtype.startswith("complex"):
        raise ReaderError(
            f"{label}: {src.href} holds complex pixels ({dtype}), not measured values; convert "
            "them first (for example their amplitude, gdal_calc.py --calc 'abs(A)')"
        )
    grid = _grid_of(ds, label)
    if grid is None:
        g = fallback_gsd_m
        grid = _Grid(x0=0.0, dx=g, y0=0.0, dy=-g, width=ds.width, height=ds.height)
        if first:
            warnings.warn(
                f"{src.href} is not georeferenced; assuming {g:g} m pixels (the finest spec GSD of "
                "the bands read from it), positions relative to the image centre",
                ReaderWarning,
                stacklevel=5,
            )
    elif not math.isclose(abs(grid.dx), abs(grid.dy), rel_tol=SQUARE_PIXEL_RTOL):
        warnings.warn(
            f"{label}: pixels are {abs(grid.dx):g} x {abs(grid.dy):g} m (not square); the band's "
            f"GSD is recorded as their geometric mean {grid.pixel_m:g} m",
            ReaderWarning,
            stacklevel=5,
        )
    scale, offset, scale_from = _scaling(src, ds)
    nodata = set(src.nodata)
    if src.band.nodata is not None:
        nodata.add(float(src.band.nodata))
    file_nd = ds.nodatavals[src.asset_band - 1]
    if file_nd is not None:
        nodata.add(float(file_nd))
    flags = ds.mask_flag_enums[src.asset_band - 1]
    use_mask = (
        MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
    ) and MaskFlags.nodata not in flags
    return BandPlan(src, ds.crs, grid, scale, offset, scale_from, tuple(sorted(nodata)), use_mask)


def read_sources(
    sources: Sequence[BandSource],
    *,
    sensor_id: str,
    bbox: LonLatBBox | None = None,
    window: PixelWindow | None = None,
    progress: ProgressCallback | None = None,
    datetime: Any = None,
    source_id: str | None = None,
) -> RasterScene:
    """Read every band source into one AtomSet (see the module docstring for the geometry)."""
    if not sources:
        raise ReaderError("nothing to read: no band source was given")
    names = [s.band.name for s in sources]
    if len(set(names)) != len(names):
        raise ReaderError(
            f"band(s) {sorted({n for n in names if names.count(n) > 1})} are read twice"
        )
    remote = any(is_remote(s.href) for s in sources)
    with gdal_env() if remote else contextlib.nullcontext():  # opening a remote file: HTTP settings
        plans = plan_sources(sources)
    crss = {p.crs.to_string() if p.crs else None for p in plans}
    if len(crss) > 1:
        raise ReaderError(
            f"the bands are in different CRSs ({', '.join(sorted(str(c) for c in crss))}); "
            "reproject them to one CRS first"
        )
    crs = plans[0].crs
    bounds = [p.grid.bounds for p in plans]
    cx = (min(b[0] for b in bounds) + max(b[2] for b in bounds)) / 2.0
    cy = (min(b[1] for b in bounds) + max(b[3] for b in bounds)) / 2.0
    window_desc = None
    if bbox is not None or window is not None:
        wb, window_desc = _window_bounds(plans, crs, bbox, window)
        window_desc["bounds"] = list(wb)
        for p in plans:
            g = p.grid
            c0, c1 = _index_range(wb[0], wb[2], g.x0, g.dx, g.width)
            r0, r1 = _index_range(wb[1], wb[3], g.y0, g.dy, g.height)
            p.window = (r0, r1, c0, c1) if (c1 > c0 and r1 > r0) else (0, 0, 0, 0)
        if all(p.window[1] == p.window[0] for p in plans):
            raise WindowError(
                f"the requested window ({_describe_window(window_desc)}) holds no pixel of the "
                f"scene, whose extent is {_extent_text(bounds, crs)}; choose a window inside it"
            )
    else:
        for p in plans:
            p.window = (0, p.grid.height, 0, p.grid.width)
    for p in plans:
        r0, r1, c0, c1 = p.window
        check("read_pixels", (r1 - r0) * (c1 - c0),
              subject=f"asset {p.source.asset!r} band {p.source.band.name} "
              f"({c1 - c0:,} x {r1 - r0:,} pixels; read a part with --window or --bbox)")
    (value, band, x, y), readings = read_atoms(plans, progress, cx, cy)
    atoms = AtomSet(
        value=value,
        band=band,
        x=x,
        y=y,
        bands=tuple(p.source.band.model_copy(update={"gsd_m": p.grid.pixel_m}) for p in plans),
        scene=_scene(sensor_id, crs, cx, cy, datetime, source_id, window_desc),
    )
    return RasterScene(
        atoms=atoms,
        readings=readings,
        crs=crs.to_string() if crs is not None else None,
        reference_centre_m=(cx, cy),
        window=window_desc,
    )


def _describe_window(desc: dict[str, Any]) -> str:
    if desc["kind"] == "bbox":
        return "bbox W,S,E,N = " + ",".join(f"{v:g}" for v in desc["bbox_lonlat"])
    return "pixel window COL,ROW,W,H = " + ",".join(str(v) for v in desc["pixel_window"])


def _extent_text(bounds: Sequence[tuple[float, float, float, float]], crs: Any) -> str:
    xmin, ymin = min(b[0] for b in bounds), min(b[1] for b in bounds)
    xmax, ymax = max(b[2] for b in bounds), max(b[3] for b in bounds)
    text = f"x {xmin:.0f}..{xmax:.0f}, y {ymin:.0f}..{ymax:.0f} m"
    if crs is not None:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(crs, "EPSG:4326", xmin, ymin, xmax, ymax)
        text += f" (lon {w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f})"
    return text


def centre_lonlat(crs: Any, x: float, y: float, label: str) -> tuple[float, float]:
    """The lon/lat of projected point (x, y); a point the CRS cannot place on Earth (georeferencing
    that puts the image outside the projection's domain) is one ReaderError."""
    from rasterio.warp import transform

    try:
        lons, lats = transform(crs, "EPSG:4326", [x], [y])
        lon, lat = float(lons[0]), float(lats[0])
    except Exception as exc:  # noqa: BLE001 - GDAL's CPLE_* errors are no RasterioError
        lon = lat = math.nan
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        why = "not a place on Earth"
    if not (math.isfinite(lon) and math.isfinite(lat) and abs(lat) <= 90):
        raise ReaderError(
            f"{label}: its georeferencing puts the image centre ({x:.6g}, {y:.6g}) outside "
            f"{crs.to_string()}'s valid area ({why}); fix the geotransform (gdal_edit.py -a_ullr)"
        )
    return lon, lat


def _scene(
    sensor_id: str,
    crs: Any,
    cx: float,
    cy: float,
    datetime: Any,
    source_id: str | None,
    window_desc: dict[str, Any] | None,
) -> SceneMeta:
    lon = lat = None
    if crs is not None:
        lon, lat = centre_lonlat(crs, cx, cy, source_id or "the image")
    extra: dict[str, Any] = {"reference_centre_m": [cx, cy]}
    if window_desc is not None:
        extra["window"] = window_desc
    return SceneMeta(
        sensor_id=sensor_id,
        datetime=datetime,
        lon=lon,
        lat=lat,
        crs=crs.to_string() if crs is not None else None,
        source_id=source_id,
        extra=extra,
    )
