"""Spectral band integration: the weight matrix that turns source channels into target bands.

A target band's value is the spectral integral of the scene under the band's relative response,
divided by the integral of the response (a band average). The source only gives us channel values
``x_j``, each itself the average of the spectrum under the channel's own response ``S_j`` (a
Gaussian from its centre and FWHM). We model the spectrum inside the source's coverage as
``f(l) = sum_j x_j phi_j(l)`` with ``phi_j = S_j / sum_k S_k`` (a partition of unity: the channel
responses, normalised so they sum to one wherever the source sees). The target band then is

    y_t = sum_j W[t, j] x_j,   W[t, j] = int R_t(l) C(l) phi_j(l) dl / int R_t(l) C(l) dl

where ``R_t`` is the target response (the tabulated one when the spec has it, else a Gaussian from
centre and FWHM) and ``C`` is the source's coverage indicator. ``W`` is the target response
integrated against each source channel's response; the normalisation by ``sum_k S_k`` makes it
independent of how densely the source samples the spectrum (on a uniformly sampled source it equals
the plain overlap integral up to a constant), rows sum to one, so a flat spectrum maps to the same
flat value in every target band. ``W`` is computed once per (source, target band) pair on a fine
wavelength grid.

A band is refused (:class:`~atomizer.errors.SimulationError`) unless at least
:data:`MIN_RESPONSE_COVERAGE` of its response lies inside the source's coverage, the union of the
source channels' ``[centre - FWHM/2, centre + FWHM/2]`` intervals (water-absorption gaps of a
"corrected" cube are gaps in the coverage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from atomizer.errors import SimulationError
from atomizer.sensors.spec import Band, SensorSpec

#: Fraction of a target band's response that must lie inside the source's spectral coverage.
#: Not higher: a band known only by centre and FWHM is modelled as a Gaussian, whose tails reach
#: ~8% beyond the nominal edges of a boxcar-like band (WorldView-3 coastal, 400-450 nm, is 92%
#: inside AVIRIS's 395-2496 nm although its real response lies entirely inside).
MIN_RESPONSE_COVERAGE = 0.9
#: Integration grid step, nm (finer for very narrow bands: at most a tenth of the narrowest FWHM).
WAVELENGTH_STEP_NM = 0.5
#: A Gaussian response is evaluated out to this many standard deviations from its centre.
GAUSSIAN_SUPPORT_SIGMAS = 5.0
#: Gaps between neighbouring channel intervals narrower than this fraction of the narrower
#: channel's FWHM are closed (channel tables whose FWHM is slightly below the channel spacing).
COVERAGE_GAP_TOLERANCE = 0.5
#: sigma = FWHM / (2 sqrt(2 ln 2)) for a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True, eq=False)
class SpectralTable:
    """Band table of a hyperspectral source: centre and FWHM (nm) of each channel, in array order.

    ``gsd_m`` is the source's ground sampling distance (``None`` for a spectral library, whose
    spectra are point measurements). Channel centres need not be sorted (AVIRIS's spectrometers
    overlap).
    """

    center_nm: np.ndarray
    fwhm_nm: np.ndarray
    names: tuple[str, ...]
    gsd_m: float | None = None
    source_id: str = "source"
    key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        center = np.asarray(self.center_nm, dtype=np.float64)
        fwhm = np.asarray(self.fwhm_nm, dtype=np.float64)
        if center.ndim != 1 or center.shape != fwhm.shape or center.size == 0:
            raise SimulationError(
                f"source band table {self.source_id!r}: centres {center.shape} and FWHMs "
                f"{fwhm.shape} must be two 1-D arrays of the same non-zero length"
            )
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(fwhm)) and np.all(fwhm > 0)):
            raise SimulationError(
                f"source band table {self.source_id!r}: centres must be finite and FWHMs positive"
            )
        if len(self.names) != center.size:
            raise SimulationError(
                f"source band table {self.source_id!r}: {len(self.names)} names for "
                f"{center.size} channels"
            )
        if self.gsd_m is not None and not self.gsd_m > 0:
            raise SimulationError(f"source {self.source_id!r}: gsd_m must be positive")
        object.__setattr__(self, "center_nm", center)
        object.__setattr__(self, "fwhm_nm", fwhm)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(
            self, "key", (self.source_id, center.tobytes(), fwhm.tobytes(), self.gsd_m)
        )

    def __len__(self) -> int:
        return int(self.center_nm.size)

    @classmethod
    def from_spec(cls, spec: SensorSpec) -> SpectralTable:
        """The table of a hyperspectral sensor spec (every band on one grid)."""
        gsds = {b.gsd_m for b in spec.bands}
        if len(gsds) != 1:
            raise SimulationError(
                f"source sensor {spec.id!r} has bands at several GSDs {sorted(gsds)}; a simulation "
                "source must be one cube on one grid"
            )
        return cls(
            center_nm=np.array([b.center_wavelength_nm for b in spec.bands]),
            fwhm_nm=np.array([b.fwhm_nm for b in spec.bands]),
            names=tuple(spec.band_names),
            gsd_m=gsds.pop(),
            source_id=spec.id,
        )

    @classmethod
    def from_wavelengths(
        cls,
        center_nm: Sequence[float] | np.ndarray,
        fwhm_nm: Sequence[float] | np.ndarray | None = None,
        *,
        gsd_m: float | None = None,
        source_id: str = "source",
        names: Sequence[str] | None = None,
    ) -> SpectralTable:
        """A table from channel centres; without FWHMs each channel is as wide as its sampling step.

        The step of channel ``j`` is the distance to its nearest neighbour (spectral libraries
        resampled to a regular grid, such as earthlib's 10 nm, carry no FWHM).
        """
        center = np.asarray(center_nm, dtype=np.float64)
        if fwhm_nm is None:
            if center.size < 2:
                raise SimulationError(
                    f"source {source_id!r}: give FWHMs for a table of fewer than two channels"
                )
            order = np.argsort(center)
            sorted_c = center[order]
            gaps = np.diff(sorted_c)
            left = np.concatenate([[np.inf], gaps])
            right = np.concatenate([gaps, [np.inf]])
            step = np.minimum(left, right)
            fwhm = np.empty_like(center)
            fwhm[order] = step
        else:
            fwhm = np.asarray(fwhm_nm, dtype=np.float64)
        names = (
            tuple(names) if names is not None else tuple(f"ch{i:03d}" for i in range(center.size))
        )
        return cls(center, fwhm, names, gsd_m=gsd_m, source_id=source_id)

    def coverage_intervals(self) -> list[tuple[float, float]]:
        """Sorted, merged ``(lo, hi)`` intervals (nm) the source sees (channel centre +- FWHM/2)."""
        order = np.argsort(self.center_nm)
        lo = self.center_nm[order] - self.fwhm_nm[order] / 2
        hi = self.center_nm[order] + self.fwhm_nm[order] / 2
        width = self.fwhm_nm[order]
        out: list[list[float]] = []
        last_width = 0.0
        for a, b, w in zip(lo, hi, width):
            if out and a - out[-1][1] <= COVERAGE_GAP_TOLERANCE * min(w, last_width):
                out[-1][1] = max(out[-1][1], float(b))
            else:
                out.append([float(a), float(b)])
            last_width = float(w)
        return [(a, b) for a, b in out]

    def describe_coverage(self) -> str:
        """E.g. ``395-2494 nm with gaps 1357-1408, 1814-1936``."""
        iv = self.coverage_intervals()
        text = f"{iv[0][0]:.0f}-{iv[-1][1]:.0f} nm"
        if len(iv) > 1:
            gaps = ", ".join(f"{a[1]:.0f}-{b[0]:.0f}" for a, b in zip(iv, iv[1:]))
            text += f" with gaps {gaps}"
        return text


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral (``np.trapezoid`` is numpy >= 2 only)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def gaussian_response(center_nm: float, fwhm_nm: float, grid_nm: np.ndarray) -> np.ndarray:
    """A unit-peak Gaussian of the given centre and FWHM on ``grid_nm``."""
    sigma = fwhm_nm / FWHM_PER_SIGMA
    return np.exp(-0.5 * ((grid_nm - center_nm) / sigma) ** 2)


def band_response(band: Band, grid_nm: np.ndarray) -> np.ndarray:
    """The band's relative response on ``grid_nm``: the tabulated one, else a Gaussian."""
    if band.response is not None:
        wl = np.asarray(band.response.wavelength_nm, dtype=np.float64)
        value = np.asarray(band.response.value, dtype=np.float64)
        return np.interp(grid_nm, wl, value, left=0.0, right=0.0)
    return gaussian_response(band.center_wavelength_nm, band.fwhm_nm, grid_nm)


def band_extent_nm(band: Band) -> tuple[float, float]:
    """Where the band's response is non-negligible (nm)."""
    if band.response is not None:
        return band.response.wavelength_nm[0], band.response.wavelength_nm[-1]
    half = GAUSSIAN_SUPPORT_SIGMAS * band.fwhm_nm / FWHM_PER_SIGMA
    return band.center_wavelength_nm - half, band.center_wavelength_nm + half


#: Most wavelengths one band is integrated over (a 0.01 nm band over a 2,000 nm table wanted
#: 2 million points and 6 GB).
MAX_GRID_POINTS = 100_000


def _grid_for(band: Band, table: SpectralTable) -> np.ndarray:
    lo, hi = band_extent_nm(band)
    narrowest = min(band.fwhm_nm, float(table.fwhm_nm.min()))
    step = min(WAVELENGTH_STEP_NM, narrowest / 10.0)
    n = min(int(math.ceil((hi - lo) / step)) + 1, MAX_GRID_POINTS)  # bounded work and memory
    return np.linspace(lo, hi, n)


def _inside(grid_nm: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(grid_nm.shape, dtype=bool)
    for lo, hi in intervals:
        mask |= (grid_nm >= lo) & (grid_nm <= hi)
    return mask


def coverage_fraction(band: Band, table: SpectralTable) -> float:
    """Fraction (0..1) of the band's response that lies inside the source's spectral coverage."""
    grid = _grid_for(band, table)
    response = band_response(band, grid)
    total = _trapz(response, grid)
    if total <= 0:
        return 0.0
    inside = _inside(grid, table.coverage_intervals())
    return float(_trapz(response * inside, grid) / total)


def describe_band(band: Band) -> str:
    """E.g. ``B10 (10600-11190 nm)``: the band's name and FWHM range."""
    return f"{band.name} ({band.lower_nm:.0f}-{band.upper_nm:.0f} nm)"


def spectral_refusal(band: Band, table: SpectralTable, fraction: float, min_coverage: float) -> str:
    """The one-line reason a band cannot be simulated from ``table``."""
    return (
        f"band {describe_band(band)} lies {100 * fraction:.0f}% inside the spectral coverage of "
        f"{table.source_id} ({table.describe_coverage()}), not the {100 * min_coverage:.0f}% needed"
    )


def band_weights(
    table: SpectralTable,
    bands: Sequence[Band],
    *,
    min_coverage: float = MIN_RESPONSE_COVERAGE,
) -> np.ndarray:
    """The ``(len(bands), len(table))`` weight matrix ``W``: ``target = source_channels @ W.T``.

    Raises :class:`SimulationError` for the first band whose response lies less than
    ``min_coverage`` inside the source's coverage. Every row sums to one.
    """
    if not 0.0 < min_coverage <= 1.0:
        raise SimulationError(f"min_coverage must be in (0, 1], got {min_coverage}")
    intervals = table.coverage_intervals()
    sigma = table.fwhm_nm / FWHM_PER_SIGMA
    weights = np.zeros((len(bands), len(table)), dtype=np.float64)
    for t, band in enumerate(bands):
        grid = _grid_for(band, table)
        response = band_response(band, grid)
        total = _trapz(response, grid)
        inside = _inside(grid, intervals)
        covered = response * inside
        fraction = float(_trapz(covered, grid) / total) if total > 0 else 0.0
        if fraction < min_coverage or fraction <= 0.0:
            raise SimulationError(
                spectral_refusal(band, table, fraction, min_coverage) + "; leave the band out"
            )
        # Channel responses (unit peak) on the covered part of the grid only.
        pts = np.nonzero(covered > 0)[0]
        g = grid[pts]
        near = np.nonzero(
            (table.center_nm + GAUSSIAN_SUPPORT_SIGMAS * sigma >= g[0])
            & (table.center_nm - GAUSSIAN_SUPPORT_SIGMAS * sigma <= g[-1])
        )[0]
        src = np.exp(-0.5 * ((g[:, None] - table.center_nm[None, near]) / sigma[None, near]) ** 2)
        norm = src.sum(axis=1, keepdims=True)
        # Inside the coverage some channel is within FWHM/2, so norm >= exp(-ln 2) > 0.
        phi = src / np.maximum(norm, np.finfo(np.float64).tiny)
        dl = np.gradient(grid)[pts]
        row = (covered[pts] * dl) @ phi
        weights[t, near] = row / row.sum()
    return weights


def supported_bands(
    table: SpectralTable, bands: Sequence[Band], *, min_coverage: float = MIN_RESPONSE_COVERAGE
) -> tuple[list[Band], list[str]]:
    """Split ``bands`` into those the source covers and one refusal line per band it does not."""
    ok: list[Band] = []
    refused: list[str] = []
    for band in bands:
        fraction = coverage_fraction(band, table)
        if fraction >= min_coverage and fraction > 0:
            ok.append(band)
        else:
            refused.append(spectral_refusal(band, table, fraction, min_coverage))
    return ok, refused


def integrate(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Apply ``weights`` (C_target, C_source) along the last axis of ``values`` (..., C_source).

    Returns float32 of shape (..., C_target). A pixel with any non-finite source channel gets
    non-finite target values (and so becomes no atoms).
    """
    values = np.asarray(values)
    if values.shape[-1] != weights.shape[1]:
        raise SimulationError(
            f"the source has {values.shape[-1]} channels but its band table lists "
            f"{weights.shape[1]}; give the band table of this cube"
        )
    flat = values.reshape(-1, values.shape[-1]).astype(np.float32, copy=False)
    out = flat @ weights.T.astype(np.float32)
    return out.reshape(*values.shape[:-1], weights.shape[0])
