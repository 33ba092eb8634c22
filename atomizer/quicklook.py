"""Quick-look pictures rebuilt from atoms: an RGB composite where the bands allow, else panels.

Each band's raster is rebuilt on its own grid from the atoms' x / y and the band's GSD (pixels with
no atom stay empty). The RGB composite uses the bands whose common names are red, green and blue
(the finest one of each) with a per-channel percentile stretch; bands on different grids are shown
on the finest grid by nearest neighbour (a picture only: the atoms are never resampled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomizer.atoms.atomset import AtomSet
from atomizer.errors import AtomizerError
from atomizer.io import check_figure_path, plain_text_figure, save_figure

#: Percentiles of each channel mapped to black and white.
STRETCH_PERCENTILES = (2.0, 98.0)
#: Longest side (pixels) of a rebuilt raster; larger scenes are subsampled for the picture.
MAX_SIDE_PX = 2048
#: Panels per row in the per-band layout, at most.
MAX_PANEL_COLUMNS = 4
RGB_COMMON_NAMES = ("red", "green", "blue")
FIGURE_DPI = 100


@dataclass
class BandRaster:
    """One band rebuilt on its grid: ``data[row, col]`` (NaN where no atom), extent in metres."""

    name: str
    data: np.ndarray
    extent: tuple[float, float, float, float]  # left, right, bottom, top (pixel edges)
    gsd_m: float
    step: int = 1  # subsampling applied to fit MAX_SIDE_PX


def band_raster(atoms: AtomSet, band: int | str, *, max_side: int = MAX_SIDE_PX) -> BandRaster:
    """The raster of one band rebuilt from its atoms (row 0 is north)."""
    index = band if isinstance(band, int) else atoms.band_names.index(band)
    b = atoms.bands[index]
    sel = atoms.band == index
    if not np.any(sel):
        raise AtomizerError(f"band {b.name} has no atoms to draw")
    x, y, v = atoms.x[sel].astype(np.float64), atoms.y[sel].astype(np.float64), atoms.value[sel]
    gsd = b.gsd_m
    x0, y1 = x.min(), y.max()
    col = np.rint((x - x0) / gsd).astype(np.int64)
    row = np.rint((y1 - y) / gsd).astype(np.int64)
    rows, cols = int(row.max()) + 1, int(col.max()) + 1
    step = max(1, math.ceil(max(rows, cols) / max_side))
    if step > 1:
        keep = (row % step == 0) & (col % step == 0)
        row, col, v = row[keep] // step, col[keep] // step, v[keep]
        rows, cols = (rows + step - 1) // step, (cols + step - 1) // step
    data = np.full((rows, cols), np.nan, dtype=np.float32)
    data[row, col] = v
    half = gsd / 2.0
    extent = (x0 - half, x0 - half + cols * step * gsd, y1 + half - rows * step * gsd, y1 + half)
    return BandRaster(b.name, data, extent, gsd, step)


def stretch(data: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """``data`` mapped to [0, 1] between two percentiles of its finite values (NaN stays NaN)."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.full(data.shape, np.nan, dtype=np.float32)
    lo, hi = np.percentile(finite, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _on_grid(
    r: BandRaster, extent: tuple[float, float, float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Nearest-neighbour lookup of ``r`` at the pixel centres of another grid (for display only)."""
    left, right, bottom, top = extent
    rows, cols = shape
    xc = left + (np.arange(cols) + 0.5) * (right - left) / cols
    yc = top - (np.arange(rows) + 0.5) * (top - bottom) / rows
    rl, rr, rb, rt = r.extent
    ci = np.floor((xc - rl) / (rr - rl) * r.data.shape[1]).astype(np.int64)
    ri = np.floor((rt - yc) / (rt - rb) * r.data.shape[0]).astype(np.int64)
    out = np.full(shape, np.nan, dtype=np.float32)
    ok_c = (ci >= 0) & (ci < r.data.shape[1])
    ok_r = (ri >= 0) & (ri < r.data.shape[0])
    out[np.ix_(ok_r, ok_c)] = r.data[np.ix_(ri[ok_r], ci[ok_c])]
    return out


def rgb_bands(atoms: AtomSet) -> list[int] | None:
    """Indices of the finest red, green and blue bands, or ``None`` when one is missing."""
    picked = []
    for name in RGB_COMMON_NAMES:
        found = [i for i, b in enumerate(atoms.bands) if (b.common_name or "").lower() == name]
        found = [i for i in found if np.any(atoms.band == i)]
        if not found:
            return None
        picked.append(min(found, key=lambda i: atoms.bands[i].gsd_m))
    return picked


def rgb_composite(
    atoms: AtomSet, bands: Sequence[int], *, max_side: int = MAX_SIDE_PX
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """An RGBA image (rows, cols, 4) in [0, 1] of three bands; alpha 0 where a channel is empty."""
    rasters = [band_raster(atoms, i, max_side=max_side) for i in bands]
    finest = min(rasters, key=lambda r: r.gsd_m * r.step)
    left = min(r.extent[0] for r in rasters)
    right = max(r.extent[1] for r in rasters)
    bottom = min(r.extent[2] for r in rasters)
    top = max(r.extent[3] for r in rasters)
    px = finest.gsd_m * finest.step
    # the three bands' joint extent may be far larger than each one's: keep the grid under
    # max_side pixels a side, like each band's own panel
    px = max(px, (top - bottom) / max_side, (right - left) / max_side)
    shape = (max(1, round((top - bottom) / px)), max(1, round((right - left) / px)))
    extent = (left, right, bottom, top)
    channels = [stretch(_on_grid(r, extent, shape)) for r in rasters]
    rgb = np.stack(channels, axis=-1)
    alpha = np.all(np.isfinite(rgb), axis=-1).astype(np.float32)
    rgba = np.concatenate([np.nan_to_num(rgb, nan=0.0), alpha[..., None]], axis=-1)
    return rgba, extent


def _stretch_text() -> str:
    lo, hi = STRETCH_PERCENTILES
    return f"{lo:g}-{hi:g}% stretch"


def _km(extent: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return tuple(v / 1000.0 for v in extent)  # type: ignore[return-value]


@plain_text_figure
def plot_quicklook(
    atoms: AtomSet,
    path: str | Path,
    *,
    bands: Sequence[str] | None = None,
    rgb: bool | None = None,
    max_side: int = MAX_SIDE_PX,
) -> Path:
    """Write a quick-look of ``atoms`` to ``path`` (format from the suffix), atomically.

    ``rgb=None`` draws an RGB composite when red, green and blue bands are present, else one panel
    per band; ``bands`` restricts the panels (and turns the composite off).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_figure_path(path)
    if len(atoms) == 0:
        raise AtomizerError("the AtomSet is empty: nothing to draw")
    title = f"{atoms.scene.sensor_id}" + (
        f", {atoms.scene.datetime:%Y-%m-%d}" if atoms.scene.datetime else ""
    )
    picked = rgb_bands(atoms) if (rgb is not False and bands is None) else None
    if rgb is True and picked is None:
        raise AtomizerError(
            "no red, green and blue bands (by common name) in these atoms; draw panels instead"
        )
    if picked is not None:
        image, extent = rgb_composite(atoms, picked, max_side=max_side)
        fig = Figure(figsize=(8, 8), dpi=FIGURE_DPI)
        ax = fig.add_subplot()
        ax.imshow(image, extent=_km(extent), interpolation="nearest")
        names = "/".join(atoms.bands[i].name for i in picked)
        ax.set_title(f"{title}: RGB = {names}, {_stretch_text()}")
        ax.set_xlabel("km east of centre")
        ax.set_ylabel("km north of centre")
    else:
        indices = (
            [atoms.band_names.index(atoms.bands[i].name) for i in _resolve(atoms, bands)]
            if bands is not None
            else [i for i in range(atoms.n_bands) if np.any(atoms.band == i)]
        )
        ncols = min(MAX_PANEL_COLUMNS, len(indices))
        nrows = math.ceil(len(indices) / ncols)
        fig = Figure(figsize=(3.6 * ncols, 3.6 * nrows + 0.6), dpi=FIGURE_DPI)
        fig.suptitle(
            f"{title}: {len(indices)} band(s), {_stretch_text()}, axes in km from the scene centre"
        )
        for k, i in enumerate(indices):
            r = band_raster(atoms, i, max_side=max_side)
            ax = fig.add_subplot(nrows, ncols, k + 1)
            ax.imshow(
                stretch(r.data),
                extent=_km(r.extent),
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            b = atoms.bands[i]
            ax.set_title(f"{b.name} {b.center_wavelength_nm:g} nm, {b.gsd_m:g} m", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    return save_figure(fig, path, dpi=FIGURE_DPI)


def _resolve(atoms: AtomSet, names: Sequence[str]) -> list[int]:
    lookup = {b.name.lower(): i for i, b in enumerate(atoms.bands)}
    missing = [n for n in names if n.lower() not in lookup]
    if missing:
        raise AtomizerError(
            f"bands {', '.join(missing)} are not in these atoms; they hold "
            f"{', '.join(atoms.band_names)}"
        )
    return [lookup[n.lower()] for n in names]
