"""An xarray DataArray or Dataset (stackstac, odc-stac, rioxarray) becomes an AtomSet.

    >>> reading = from_xarray(da.isel(time=0), host=host)   # doctest: +SKIP
    >>> reading.atoms, reading.report.warnings                # doctest: +SKIP

What is understood:

- **Layout**: a DataArray with dims ``band``, ``y``, ``x`` (any order) and optionally a ``time`` of
  length one (select one time first); or a Dataset whose data variables are the bands (odc-stac),
  each with dims ``y``, ``x`` (and ``time``). ``y`` and ``x`` are projected coordinates in metres.
- **Grid**: the array is already resampled onto ONE grid, so every band's atoms carry the array's
  GSD (``sqrt(|dx * dy|)`` of the coordinate spacing), not the sensor's native one; the report says
  so. Pixel centres come from the ``x`` / ``y`` coordinates; stackstac's default top-left
  coordinates are recognised from its ``transform`` attribute. Positions are metres east / north
  of the array's footprint centre, as every reader's are; rows and columns are put in one
  canonical order (north to south, west to east), so transposing or flipping an array does not
  change its AtomSet.
- **Bands**: band labels, and the ``common_name`` / ``center_wavelength`` / ``full_width_half_max``
  band coordinates stackstac writes (STAC ``eo``, micrometres; ``center_wavelength_nm`` /
  ``fwhm_nm`` are read as nanometres), are matched to a sensor spec as a STAC item's assets are
  (:mod:`atomizer.readers.matching`); without ``sensor`` one is detected from the ``platform`` /
  ``constellation`` coordinates, or built from the bands' own wavelengths and widths. An array of
  integer-numbered bands (rioxarray) maps its bands like a GeoTIFF does: ``long_name``
  descriptions, else the spec's band order (``bands`` maps them explicitly).
- **Values**: CF ``scale_factor`` / ``add_offset`` attributes are applied; otherwise integer arrays
  are digital numbers scaled by the spec, float arrays are taken as physical values (stackstac
  rescales by default); ``values="dn"`` / ``"physical"`` decides instead. NaN and the no-data
  values (``_FillValue``, ``nodata`` or ``missing_value`` attributes of the array or of each
  Dataset variable; the spec band's for DNs) never become atoms.
- **Scene**: ``time`` gives the datetime, ``id`` the source id, the CRS (``crs`` attribute, or
  the ``spatial_ref`` coordinate rioxarray and odc-stac write, or stackstac's ``epsg``) the
  footprint centre's lon/lat.

The ``xarray`` reader registered through ``register_readers`` opens ``.nc`` files with
:func:`xarray.open_dataset` and reads them through :func:`from_xarray`.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atomizer.atoms.atomset import BAND_DTYPE, COORD_DTYPE, AtomSet
from atomizer.errors import BandMatchError, ReaderError
from atomizer.limits import check
from atomizer.readers.base import (
    BandReading,
    Reading,
    ReadOptions,
    ReadReport,
    ReaderWarning,
    source_suffix,
)
from atomizer.readers.detect import detect_sensor
from atomizer.readers.geotiff import band_mapping
from atomizer.readers.matching import (
    AssetInfo,
    ItemBand,
    match_assets,
    require_complete,
    warn_disagreements,
    wavelengths_nm,
)
from atomizer.readers.pixels import physical, valid_mask
from atomizer.readers.raster import SQUARE_PIXEL_RTOL, _scene
from atomizer.readers.xarray_layout import (
    array_crs,
    band_array,
    band_coord,
    pixel_centres,
    scalar_coord,
)
from atomizer.sensors.spec import Band, SensorSpec

Values = Literal["auto", "dn", "physical"]
#: The pseudo-media type of one band of an array when it is matched like a STAC asset.
ARRAY_MEDIA_TYPE = "application/x-netcdf"
#: Coordinates whose (single) value says which platform took the scene (STAC properties).
IDENTITY_COORDS = ("platform", "constellation", "instruments")


# --- bands ----------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if value is None or isinstance(value, (bool, str)):
        return None
    number = float(np.asarray(value).ravel()[0]) if np.ndim(value) else float(value)
    return number if math.isfinite(number) else None


def _item_band(da: Any, i: int, attrs: dict[str, Any], label: str) -> ItemBand:
    """What the array says about band ``i`` (wavelengths in nm, no-data, CF scaling)."""
    name = str(da.band.values[i])
    where = f"{label} band {name}"
    if band_coord(da, "center_wavelength_nm", i) is not None:
        center = _number(band_coord(da, "center_wavelength_nm", i))
        fwhm = _number(band_coord(da, "fwhm_nm", i))
    else:
        center, fwhm = wavelengths_nm(
            band_coord(da, "center_wavelength", i), band_coord(da, "full_width_half_max", i), where
        )
    nodata = tuple(
        v for v in (_number(attrs.get(k)) for k in ("_FillValue", "nodata", "missing_value"))
        if v is not None
    )
    scale, offset = _number(attrs.get("scale_factor")), _number(attrs.get("add_offset"))
    if (scale, offset) in ((1.0, 0.0), (1.0, None), (None, 0.0)):  # rioxarray's "no scaling"
        scale = offset = None
    common = band_coord(da, "common_name", i)
    return ItemBand(
        index=i + 1,
        name=name,
        common_name=str(common) if common else None,
        center_nm=center,
        fwhm_nm=fwhm,
        nodata=nodata,
        scale=scale,
        offset=offset,
        scale_from="array attributes" if (scale, offset) != (None, None) else None,
    )


def _descriptions(da: Any) -> list[str | None]:
    """rioxarray's ``long_name`` band descriptions (one per band), or ``None`` each."""
    names = da.attrs.get("long_name")
    if isinstance(names, str):
        names = (names,)
    if isinstance(names, (list, tuple)) and len(names) == da.sizes["band"]:
        return [str(n) if n else None for n in names]
    return [None] * da.sizes["band"]


def _resolve(
    da: Any,
    infos: list[ItemBand],
    sensor: SensorSpec | None,
    sensors: Iterable[SensorSpec] | None,
    bands: Sequence[str] | None,
    label: str,
) -> tuple[SensorSpec, str, list[tuple[int, Band, str]], list[str]]:
    """``(spec, how it was chosen, [(array band index, spec band, matched by)], warnings)``."""
    numbered = np.issubdtype(np.asarray(da.band.values).dtype, np.integer)
    described = any(ib.common_name or ib.center_nm is not None for ib in infos)
    if numbered and not described:  # rioxarray: map bands the way a GeoTIFF's are mapped
        if sensor is None:
            raise BandMatchError(
                f"{label}: the array's bands are numbered and carry no wavelengths, so it does not "
                "say which sensor took it; pass sensor= (an id, a spec or a YAML path)"
            )
        mapping = band_mapping(
            len(infos), _descriptions(da), sensor, bands=bands, filename=label
        )
        return sensor, "given", [(i - 1, b, how) for i, b, how in mapping], []
    keys = [ib.name or str(ib.index) for ib in infos]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ReaderError(f"{label}: band(s) {', '.join(twice)} appear twice; keep one of each")
    assets = [
        AssetInfo(key=key, href=label, media_type=ARRAY_MEDIA_TYPE, bands=(ib,))
        for key, ib in zip(keys, infos)
    ]
    how = "given"
    if sensor is None:
        if sensors is None:
            from atomizer.plugins.host import builtin_host

            sensors = builtin_host().sensors
        found = {k: scalar_coord(da, k) for k in IDENTITY_COORDS}
        identity = {k: v for k, v in found.items() if v is not None}
        sensor, how = detect_sensor(
            identity, assets, sensors, source=label, item_id=str(scalar_coord(da, "id") or label)
        )
    result = match_assets(assets, sensor, select=bands)
    require_complete(result, label, selected=bands is not None)
    messages = warn_disagreements(result, label)
    index = {a.key: i for i, a in enumerate(assets)}
    mapping = [(index[m.asset.key], m.band, m.matched_by) for m in result.matches]
    return sensor, how, mapping, messages


# --- atoms ----------------------------------------------------------------------------------------
def _scaling(ib: ItemBand, band: Band, dn: bool) -> tuple[float, float, str]:
    """Scale and offset: the array's CF attributes, else the spec's for DNs, else none."""
    if ib.scale_from is not None:
        return (1.0 if ib.scale is None else ib.scale), (ib.offset or 0.0), ib.scale_from
    if dn:
        if band.scale is not None or band.offset is not None:
            return (1.0 if band.scale is None else band.scale), (band.offset or 0.0), "spec"
    return 1.0, 0.0, "none (values taken as physical)"


def _datetime(da: Any) -> dt.datetime | None:
    if "time" not in da.coords or da.coords["time"].size != 1:
        return None
    stamp = np.asarray(da.coords["time"].values).ravel()[0]
    if not np.issubdtype(np.asarray(stamp).dtype, np.datetime64) or np.isnat(stamp):
        return None
    seconds = (stamp - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    return dt.datetime.fromtimestamp(float(seconds), tz=dt.timezone.utc)  # STAC times are UTC


def from_xarray(
    data: Any,
    *,
    sensor: SensorSpec | str | Path | Mapping[str, Any] | None = None,
    host: Any = None,
    bands: Sequence[str] | None = None,
    values: Values = "auto",
    source: str | None = None,
) -> Reading:
    """The AtomSet of a DataArray / Dataset (see the module docstring) and its read report.

    :param sensor: a spec, an id, a YAML path or an inline spec mapping; ``None`` detects it
        among ``host``'s sensors (the built-in ones without a host) from the platform
        coordinates, or builds it from the bands' own wavelengths and widths.
    :param bands: for named bands, the spec bands to read (others are ignored); for numbered
        (rioxarray) bands, the spec band each array band holds, in order (``"-"`` skips one).
    :param values: ``"auto"`` (integers are DNs scaled by the spec, floats are physical),
        ``"dn"`` or ``"physical"``.
    :param source: a label for messages and the scene's source id (default: the array's ``id``).
    """
    from atomizer.plugins.host import host_or_builtin, sensor_spec

    sensor = None if sensor is None else sensor_spec(sensor, host)
    sensors = None if sensor is not None else host_or_builtin(host).sensors
    return read_array(data, sensor=sensor, sensors=sensors, bands=bands, values=values,
                      source=source)


def read_array(
    data: Any,
    *,
    sensor: SensorSpec | None,
    sensors: Iterable[SensorSpec] | None,
    bands: Sequence[str] | None = None,
    values: Values = "auto",
    source: str | None = None,
) -> Reading:
    """:func:`from_xarray` with the sensor resolved (``None``: detected among ``sensors``)."""
    if values not in ("auto", "dn", "physical"):
        raise ReaderError(f"values must be 'auto', 'dn' or 'physical', not {values!r}")
    label = source or str(getattr(data, "name", None) or "xarray array")
    da, band_attrs = band_array(data, label)
    xs, ys, dx, dy = pixel_centres(da, label)
    crs = array_crs(da, label)
    infos = [_item_band(da, i, band_attrs[i], label) for i in range(da.sizes["band"])]
    spec, how, mapping, messages = _resolve(da, infos, sensor, sensors, bands, label)
    gsd_m = math.sqrt(dx * dy)
    native = [] if how == "item band metadata" else sorted({b.gsd_m for _, b, _ in mapping})
    messages = [*messages, *_grid_notes(label, dx, dy, gsd_m, native, crs)]
    cx, cy = float(xs[0] + xs[-1]) / 2.0, float(ys[0] + ys[-1]) / 2.0
    x_rel = (xs - cx).astype(COORD_DTYPE)
    y_rel = (ys - cy).astype(COORD_DTYPE)
    parts, readings = [], []
    for k, (i, band, matched_by) in enumerate(mapping):
        part, reading = _band_atoms(da, i, k, band, infos[i], values, (x_rel, y_rel), label)
        reading.matched_by = matched_by
        reading.gsd_m = gsd_m
        parts.append(part)
        readings.append(reading)
    value, band_idx, x, y = (np.concatenate(p) for p in zip(*parts))
    item_id = scalar_coord(da, "id")
    source_id = source or (str(item_id) if item_id is not None else label)
    atoms = AtomSet(
        value=value, band=band_idx, x=x, y=y,
        bands=tuple(b.model_copy(update={"gsd_m": gsd_m}) for _, b, _ in mapping),
        scene=_scene(spec.id, crs, cx, cy, _datetime(da), source_id, None),
    )
    report = ReadReport(
        source=label, reader="xarray", sensor_id=spec.id, sensor_from=how,
        crs=crs.to_string() if crs is not None else None, reference_centre_m=(cx, cy),
        bands=readings, warnings=messages, n_atoms=len(atoms), nbytes=atoms.nbytes,
    )
    return Reading(atoms, report)


def _band_atoms(
    da: Any,
    i: int,
    k: int,
    band: Band,
    info: ItemBand,
    values: Values,
    positions: tuple[np.ndarray, np.ndarray],
    label: str,
) -> tuple[tuple[np.ndarray, ...], BandReading]:
    """``(value, band, x, y)`` of array band ``i`` read as spec band ``band`` (index ``k``).

    ``positions``: the x of each column and the y of each row, metres from the centre. The
    report's ``matched_by`` and ``gsd_m`` are the caller's to fill.
    """
    x_rel, y_rel = positions
    check("read_pixels", da.sizes["y"] * da.sizes["x"], subject=f"{label} band {band.name}")
    plane = np.asarray(da.isel(band=i).values)
    dn = values == "dn" or (values == "auto" and plane.dtype.kind in "ui")
    scale, offset, scale_from = _scaling(info, band, dn)
    spec_nodata = () if band.nodata is None or not dn else (band.nodata,)  # a DN value
    nodata = tuple(sorted({*info.nodata, *spec_nodata}))
    valid, n_nodata, n_nonfinite = valid_mask(plane, nodata)
    vals = physical(plane[valid], scale, offset)
    rows, cols = np.nonzero(valid)
    keep = np.isfinite(vals)  # finite pixels whose value overflows float32
    if not keep.all():
        n_nonfinite += int(keep.size - np.count_nonzero(keep))
        vals, rows, cols = vals[keep], rows[keep], cols[keep]
    reading = BandReading(
        band=band.name,
        asset=str(da.band.values[i]),
        asset_band=i + 1,
        href=label,
        matched_by="",
        gsd_m=0.0,
        shape=plane.shape,
        scale=scale,
        offset=offset,
        scale_from=scale_from,
        nodata=list(nodata),
        n_atoms=int(vals.size),
        n_nodata=n_nodata,
        n_nonfinite=n_nonfinite,
        min=float(vals.min()) if vals.size else None,
        max=float(vals.max()) if vals.size else None,
        center_wavelength_nm=band.center_wavelength_nm,
        fwhm_nm=band.fwhm_nm,
    )
    return (vals, np.full(vals.size, k, BAND_DTYPE), x_rel[cols], y_rel[rows]), reading


def _grid_notes(
    label: str, dx: float, dy: float, gsd_m: float, native: list[float], crs: Any
) -> list[str]:
    """What the report says about the grid; what may surprise is also warned."""
    said = f"the sensor's native GSDs: {', '.join(f'{g:g}' for g in native)} m"
    note = (
        f"{label}: the array is already resampled onto one grid of {gsd_m:g} m, so every band's "
        f"atoms carry GSD {gsd_m:g} m ({said if native else 'the array does not say the native'})"
    )
    notes = [note]
    if not math.isclose(dx, dy, rel_tol=SQUARE_PIXEL_RTOL):
        notes.append(
            f"{label}: pixels are {dx:g} x {dy:g} m (not square); the GSD is recorded as their "
            f"geometric mean {gsd_m:g} m"
        )
    if crs is None:
        notes.append(
            f"{label}: the array records no CRS; its x / y coordinates are taken as metres and "
            "the scene has no longitude / latitude"
        )
    resampled = any(not math.isclose(g, gsd_m, rel_tol=1e-6) for g in native)
    for message in notes if resampled else notes[1:]:
        warnings.warn(message, ReaderWarning, stacklevel=4)
    return notes


class XarrayReader:
    """Reads a netCDF file (``.nc``) through xarray into atoms (see :func:`from_xarray`)."""

    name = "xarray"
    suffixes = (".nc",)

    def can_read(self, source: str) -> bool:
        return source_suffix(source) in self.suffixes

    def read(
        self,
        source: str | Path,
        *,
        sensor: SensorSpec | None = None,
        sensors: Iterable[SensorSpec] | None = None,
        options: ReadOptions | None = None,
    ) -> Reading:
        """Atoms of the file's data variables (or its one band-stacked variable)."""
        import xarray as xr

        options = options or ReadOptions()
        label = str(source)
        if options.bbox is not None or options.window is not None:
            raise ReaderError(
                f"{label}: the xarray reader reads the whole array; crop it with xarray "
                "(.sel(x=slice(...), y=slice(...))) and call atomizer.readers.xarray.from_xarray"
            )
        if not Path(label).is_file():
            raise ReaderError(f"{label}: no such file")
        try:
            ds = xr.open_dataset(label, decode_coords="all")  # lazy: bands load one at a time
        except (OSError, ValueError) as exc:
            raise ReaderError(
                f"{label}: xarray cannot open it ({exc}); it must be a netCDF file "
                "(netCDF-4 needs the h5netcdf or netCDF4 package)"
            ) from None
        with ds:
            data = next(iter(ds.data_vars.values())) if len(ds.data_vars) == 1 else ds
            return read_array(
                data, sensor=sensor, sensors=sensors, bands=options.bands, source=Path(label).name
            )
