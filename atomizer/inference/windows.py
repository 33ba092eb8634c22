"""Sliding windows over a whole scene, read block by block on every band's native grid.

:func:`scene_geometry` learns a scene's grids from one one-pixel read plus each band file's header;
:func:`window_grid` lays square windows of ``chip_m`` metres every ``stride_m`` metres over it (the
last row and column flush with the scene's far edges, so every pixel is covered);
:func:`iter_window_rows` reads several rows of windows at a time, in blocks of at most
:data:`MAX_BLOCK_PIXELS` pixels and :data:`MAX_BLOCK_PX` columns, through the readers' windowed
reading (the whole scene is never loaded), and cuts each window's atoms out of its block,
centred on the window.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet
from atomizer.errors import ConfigError, ModalityError, WindowError
from atomizer.readers.base import PixelWindow, ReadOptions

#: Widest block (finest-grid pixels) read at once, and most finest-grid pixels in one block:
#: together they bound the memory of one read whatever the scene's size.
MAX_BLOCK_PX = 2048
MAX_BLOCK_PIXELS = 1 << 18
#: GDAL's block cache (MB) while a scene is walked and its map written: GDAL's default (5% of RAM)
#: would keep every block read and every map block written, so memory would grow with the scene's
#: area. Writing the Cloud-Optimized map (overviews included) holds about 2.5 x this much on top.
GDAL_CACHE_MB = 32
#: Window weight at a window's very edge, relative to 1 at its centre (never 0, so that scene
#: edges covered by one window only still get a value).
EDGE_WEIGHT = 1e-3


@dataclass(frozen=True)
class SceneGeometry:
    """The finest band grid of a scene (the grid windows and outputs are aligned to)."""

    crs: Any  # rasterio CRS
    x0: float  # west edge (m)
    y0: float  # north edge (m)
    gsd_m: float  # finest pixel size
    width: int  # finest-grid pixels
    height: int
    sensor_id: str
    source_id: str | None
    datetime: Any
    band_names: tuple[str, ...]
    hrefs: tuple[str, ...] = ()  # the files read (outputs must not be any of them)

    @property
    def width_m(self) -> float:
        return self.width * self.gsd_m

    @property
    def height_m(self) -> float:
        return self.height * self.gsd_m


@dataclass(frozen=True)
class Window:
    """One window: finest-grid pixel offsets and its footprint in the scene's CRS."""

    row: int  # index of its row of windows
    col_off: int
    row_off: int
    size_px: int
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (CRS metres)

    @property
    def centre(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds
        return (xmin + xmax) / 2.0, (ymin + ymax) / 2.0


def read_window(
    source: str | Path, window: PixelWindow, *, sensor: Any, host: Any, reader: str | None
) -> Any:
    """The atoms of ``window`` of ``source`` (``sensor``: a spec, id or YAML path, or ``None`` to
    detect it), through the reader that claims the source: a :class:`~atomizer.readers.Reading`."""
    from atomizer.readers import reader_for
    from atomizer.sensors import resolve_sensor

    spec = resolve_sensor(sensor, host.sensors) if sensor is not None else None
    chosen = reader_for(source, host.readers, name=reader)
    return chosen.read(
        source,
        sensor=spec,
        sensors=host.sensors if spec is None else None,
        options=ReadOptions(window=window),
    )


def scene_geometry(
    source: str | Path, *, sensor: Any, host: Any, reader: str | None = None
) -> SceneGeometry:
    """The grid of ``source``: one one-pixel read (band matching, CRS) plus each file's header."""
    import rasterio

    atoms, report = read_window(
        source, PixelWindow(0, 0, 1, 1), sensor=sensor, host=host, reader=reader
    )
    if report.crs is None:
        raise WindowError(
            f"{source}: the image is not georeferenced; predict needs a CRS to place its map "
            "(assign one with gdal_edit.py -a_srs / -a_ullr)"
        )
    grids = []
    with contextlib.ExitStack() as stack:
        for b in report.bands:
            ds = stack.enter_context(rasterio.open(b.href))
            t = ds.transform
            if not (t.a > 0 and t.e < 0 and t.b == 0 and t.d == 0):
                raise WindowError(
                    f"{b.href}: its grid is not north-up (geotransform {tuple(t)[:6]}): maps and "
                    "windows need columns running east and rows south; warp it first "
                    "(gdalwarp -t_srs <its CRS> in.tif out.tif)"
                )
            if abs(t.a + t.e) > 1e-6 * t.a:
                raise WindowError(
                    f"{b.href}: its pixels are not square ({t.a:g} x {-t.e:g} m): windows of "
                    "--chip-m metres need square pixels; resample it first (gdalwarp -tr X X)"
                )
            grids.append((t.a, t.c, t.f, ds.width, ds.height, ds.crs))
    gsd, x0, y0, width, height, crs = min(grids, key=lambda g: g[0])
    return SceneGeometry(
        crs=crs,
        x0=x0,
        y0=y0,
        gsd_m=gsd,
        width=width,
        height=height,
        sensor_id=report.sensor_id,
        source_id=atoms.scene.source_id,
        datetime=atoms.scene.datetime,
        band_names=tuple(b.band for b in report.bands),
        hrefs=tuple(dict.fromkeys(b.href for b in report.bands)),
    )


def _offsets(extent_px: int, size_px: int, stride_px: int) -> list[int]:
    offs = list(range(0, extent_px - size_px + 1, stride_px))
    if offs[-1] + size_px < extent_px:
        offs.append(extent_px - size_px)  # flush with the far edge
    return offs


def window_grid(geo: SceneGeometry, *, chip_m: float, stride_m: float) -> list[list[Window]]:
    """Rows of windows of ``chip_m`` metres every ``stride_m`` metres covering the whole scene."""
    if not all(math.isfinite(v) and v > 0 for v in (chip_m, stride_m)):
        raise WindowError(f"--chip-m {chip_m:g} and --stride-m {stride_m:g} must both be > 0 "
                          "(finite metres)")
    size_px = int(round(chip_m / geo.gsd_m))
    if size_px < 1:
        raise WindowError(
            f"--chip-m {chip_m:g} is smaller than one pixel ({geo.gsd_m:g} m); give at least "
            f"{geo.gsd_m:g} m"
        )
    if size_px > min(geo.width, geo.height):
        raise WindowError(
            f"a window of {chip_m:g} m ({size_px} px) is larger than the scene "
            f"({geo.width_m:g} x {geo.height_m:g} m); give --chip-m <= "
            f"{min(geo.width_m, geo.height_m):g}"
        )
    stride_px = max(1, int(round(stride_m / geo.gsd_m)))
    if stride_px > size_px:
        raise WindowError(
            f"--stride-m {stride_m:g} is longer than --chip-m {chip_m:g}: pixels between windows "
            "would get no prediction; give a stride <= the window size"
        )
    side = size_px * geo.gsd_m
    rows = []
    for r, row_off in enumerate(_offsets(geo.height, size_px, stride_px)):
        top = geo.y0 - row_off * geo.gsd_m
        rows.append(
            [
                Window(
                    r,
                    col_off,
                    row_off,
                    size_px,
                    (
                        geo.x0 + col_off * geo.gsd_m,
                        top - side,
                        geo.x0 + col_off * geo.gsd_m + side,
                        top,
                    ),
                )
                for col_off in _offsets(geo.width, size_px, stride_px)
            ]
        )
    return rows


def bounded_gdal_cache() -> Any:
    """A rasterio environment whose GDAL block cache holds at most :data:`GDAL_CACHE_MB`.

    Given in bytes: GDAL reads a small ``GDAL_CACHEMAX`` as megabytes for its block cache, but
    parts of it (the COG driver's overview building, measured: 4-5 x the CPU time of the map
    copy) read the option as bytes, so ``"64"`` would be a 64-byte cache there."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024)


def tent_weights(start: float, length: float, centres: np.ndarray) -> np.ndarray:
    """A smooth-enough window weight along one axis: 1 at the centre, EDGE_WEIGHT at the edges."""
    u = np.clip((centres - start) / length, 0.0, 1.0)
    return np.maximum(1.0 - np.abs(2.0 * u - 1.0), EDGE_WEIGHT)


def _column_groups(row: list[Window]) -> list[list[Window]]:
    """Consecutive windows of a row whose columns span at most :data:`MAX_BLOCK_PX` pixels."""
    groups: list[list[Window]] = [[]]
    for w in row:
        if groups[-1] and w.col_off + w.size_px - groups[-1][0].col_off > MAX_BLOCK_PX:
            groups.append([])
        groups[-1].append(w)
    return groups


def _row_bands(rows: list[list[Window]], width_px: int) -> list[list[list[Window]]]:
    """Consecutive rows of windows read together: at most :data:`MAX_BLOCK_PIXELS` per block."""
    span = min(width_px, MAX_BLOCK_PX)
    bands: list[list[list[Window]]] = [[]]
    for row in rows:
        band = bands[-1]
        if (
            band
            and (row[0].row_off + row[0].size_px - band[0][0].row_off) * span > MAX_BLOCK_PIXELS
        ):
            bands.append(band := [])
        band.append(row)
    return bands


def _cut(block: AtomSet, windows: list[Window], crs: Any) -> list[AtomSet]:
    """Each window's atoms out of ``block`` (one row of windows), centred on the window."""
    from rasterio.warp import transform

    cx, cy = block.scene.extra["reference_centre_m"]
    ymin, ymax = windows[0].bounds[1], windows[0].bounds[3]
    in_row = np.flatnonzero((block.y >= np.float32(ymin - cy)) & (block.y < np.float32(ymax - cy)))
    order = in_row[np.argsort(block.x[in_row], kind="stable")]
    xs = block.x[order]
    centres = [w.centre for w in windows]
    lons, lats = transform(crs, "EPSG:4326", [c[0] for c in centres], [c[1] for c in centres])
    chips = []
    for w, (wx, wy), lon, lat in zip(windows, centres, lons, lats):
        lo = np.searchsorted(xs, np.float32(w.bounds[0] - cx), side="left")
        hi = np.searchsorted(xs, np.float32(w.bounds[2] - cx), side="left")
        chip = block.take(np.sort(order[lo:hi])).recentered(wx - cx, wy - cy)
        chip.scene = replace(
            block.scene, lon=float(lon), lat=float(lat), extra={"window": list(w.bounds)}
        )
        chips.append(chip)
    return chips


def iter_window_rows(
    source: str | Path,
    geo: SceneGeometry,
    rows: list[list[Window]],
    *,
    sensor: Any,
    host: Any,
    reader: str | None = None,
    mask: tuple[str, ...] = (),
) -> Iterator[tuple[list[Window], list[AtomSet]]]:
    """Per row of windows: the windows and each one's atoms, centred on it.

    Several rows are read at once (blocks of at most :data:`MAX_BLOCK_PIXELS` finest pixels, at
    most :data:`MAX_BLOCK_PX` wide): few reads, and memory bounded whatever the scene's size.
    ``mask``: quality flags (``cloud``, ``shadow``...) whose atoms the sensor's quality layer drops.
    """
    from atomizer.sensors import resolve_sensor

    if sensor is not None:
        sensor = resolve_sensor(sensor, host.sensors)  # a YAML file is read once, not per block
    if mask:
        from atomizer.readers.quality import mask_item_atoms, quality_rule

        spec = sensor if sensor is not None else host.sensors.get(geo.sensor_id)
        quality_rule(spec, mask)  # a sensor without these flags fails before any read
    for band in _row_bands(rows, geo.width):
        chips: list[list[AtomSet]] = [[] for _ in band]
        top, size = band[0][0].row_off, band[0][0].size_px
        height = band[-1][0].row_off + size - top
        for g, group in enumerate(_column_groups(band[0])):
            left = group[0].col_off
            pixel = PixelWindow(left, top, group[-1].col_off + size - left, height)
            block, _ = read_window(source, pixel, sensor=sensor, host=host, reader=reader)
            if mask:
                centre = tuple(block.scene.extra["reference_centre_m"])
                block, _ = mask_item_atoms(str(source), block, spec, mask, centre)
            for i, row in enumerate(band):
                chips[i] += _cut(block, _column_groups(row)[g], geo.crs)
            del block
        yield from zip(band, chips)


def forward_chips(
    chips: Sequence[AtomSet],
    forward: Callable[[Any], np.ndarray],
    *,
    batch_size: int,
    device: Any,
) -> list[np.ndarray | None]:
    """``forward`` (batch -> one numpy row per chip) over the chips with atoms, ``batch_size`` at a
    time on ``device``, without gradients; ``None`` for a chip without atoms."""
    import torch

    from atomizer.atoms.batch import collate_atoms

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    out: list[np.ndarray | None] = [None] * len(chips)
    todo = [i for i, c in enumerate(chips) if len(c)]
    with torch.no_grad():
        for s in range(0, len(todo), batch_size):
            part = todo[s : s + batch_size]
            rows = forward(collate_atoms([chips[i] for i in part]).to(device))
            for i, row in zip(part, rows):
                if not np.isfinite(row).all():
                    raise ModalityError(_non_finite_output(chips[i]))
                out[i] = row
    return out


def _non_finite_output(chip: AtomSet) -> str:
    """Why a chip's model output is NaN or inf, as far as its atoms tell."""
    values = np.abs(chip.value.astype(np.float64))
    biggest = float(values.max()) if values.size else 0.0
    return (
        f"the model's output is NaN or inf for a chip of {len(chip):,} atoms (largest |value| "
        f"{biggest:.3g}): its values are far outside what the model was trained on; check the "
        "sensor's scale and offset (atomizer expects physical units, reflectance 0..1)"
    )


def covered_pixels(
    chip: AtomSet, window: Window, geo: SceneGeometry, gsd_m: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of output pixels of ``gsd_m`` holding at least one atom of ``chip`` (one pair
    per atom: a pixel with several atoms repeats, which marking it covered does not mind)."""
    wx, wy = window.centre
    cols = np.floor((chip.x.astype(np.float64) + wx - geo.x0) / gsd_m).astype(np.int64)
    rows = np.floor((geo.y0 - (chip.y.astype(np.float64) + wy)) / gsd_m).astype(np.int64)
    ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return rows[ok], cols[ok]


def output_shape(geo: SceneGeometry, gsd_m: float) -> tuple[int, int]:
    """(height, width) of the scene at ``gsd_m`` (partial edge pixels included)."""
    return math.ceil(geo.height_m / gsd_m - 1e-9), math.ceil(geo.width_m / gsd_m - 1e-9)
