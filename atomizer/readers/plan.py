"""What a raster read will do: each spec band's source (file, band index, scaling) and its plan
(grid, window, no-data). Shared by :mod:`atomizer.readers.raster` (which makes plans) and
:mod:`atomizer.readers.pixels` (which carries them out), so neither imports the other's caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from atomizer.sensors.spec import Band


@dataclass
class BandSource:
    """One spec band and where it lives: a raster file (path or URL) and a 1-based band index.

    ``scale`` / ``offset`` / ``nodata`` come from the source's own metadata (STAC ``raster:bands``,
    ...); when ``scale`` is ``None`` the file's own scale/offset are used if set, else the spec's.
    """

    band: Band
    asset: str
    href: str
    asset_band: int = 1
    matched_by: str = "asset key"
    scale: float | None = None
    offset: float | None = None
    scale_from: str | None = None
    nodata: tuple[float, ...] = ()
    center_wavelength_nm: float | None = None  # what the source says, for the report
    fwhm_nm: float | None = None
    single_band: bool = False  # matched without band metadata: the file must hold one band


@dataclass
class _Grid:
    """A band's pixel grid: x = x0 + (col + 0.5) * dx, y = y0 + (row + 0.5) * dy."""

    x0: float
    dx: float
    y0: float
    dy: float
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = (self.x0, self.x0 + self.width * self.dx)
        ys = (self.y0, self.y0 + self.height * self.dy)
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def pixel_m(self) -> float:
        return math.sqrt(abs(self.dx * self.dy))

    @cached_property
    def col_centres(self) -> np.ndarray:
        """float64 x of every column's centre (computed once: chips read many windows)."""
        return self.x0 + (np.arange(self.width, dtype=np.float64) + 0.5) * self.dx

    @cached_property
    def row_centres(self) -> np.ndarray:
        """float64 y of every row's centre."""
        return self.y0 + (np.arange(self.height, dtype=np.float64) + 0.5) * self.dy


@dataclass
class BandPlan:
    """How one band source will be read: its grid, scaling, no-data values and pixel window."""

    source: BandSource
    crs: Any
    grid: _Grid
    scale: float
    offset: float
    scale_from: str
    nodata: tuple[float, ...]
    use_mask: bool
    window: tuple[int, int, int, int] = (0, 0, 0, 0)  # row0, row1, col0, col1
