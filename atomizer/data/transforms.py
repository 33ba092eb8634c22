"""Modality transforms: band subset, GSD change, crop, simulated sensor; and :func:`apply_modality`.

Transforms work on :class:`~atomizer.simulate.BandRasters` (one plane per band on its own grid),
because a GSD change needs the raster: an AtomSet is first put back on its grids
(:func:`atoms_to_rasters`, exact for atoms that came from rasters), transformed, and atomised again.

- :func:`select_bands`: keep named bands.
- :func:`change_gsd`: bands finer than the new GSD are area-aggregated to it; bands already as
  coarse or coarser keep their native grid (nothing is ever upsampled).
- :func:`crop`: a square footprint of ``size_px`` pixels of ``gsd_m``, centred or at a random
  offset; every band is cut to the same footprint on its own grid.
- :func:`simulate_sensor`: a hyperspectral sample seen by another sensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet
from atomizer.data.samples import HyperspectralSample, SampleSource
from atomizer.data.modality import Modality
from atomizer.errors import AtomizerError, ModalityError, SimulationError
from atomizer.simulate.api import BandRasters, SimulatorCache
from atomizer.simulate.spatial import GSD_RTOL, aggregate
from atomizer.simulate.spectral import MIN_RESPONSE_COVERAGE, SpectralTable


def select_bands(rasters: BandRasters, names: Sequence[str]) -> BandRasters:
    """Only the bands ``names`` (case-insensitive, in that order)."""
    try:
        return rasters.select(names)
    except SimulationError as exc:
        raise ModalityError(str(exc)) from None


def change_gsd(rasters: BandRasters, gsd_m: float) -> BandRasters:
    """Every band finer than ``gsd_m`` aggregated to it (area-weighted); coarser bands unchanged."""
    if not gsd_m > 0:
        raise ModalityError(f"GSD must be positive, got {gsd_m:g} m")
    planes, bands = [], []
    for plane, band in zip(rasters.planes, rasters.bands):
        if band.gsd_m < gsd_m * (1 - GSD_RTOL):
            coarse = aggregate(plane, band.gsd_m, gsd_m)
            if coarse.shape[0] < 1 or coarse.shape[1] < 1:
                raise ModalityError(
                    f"band {band.name}: {plane.shape[0]}x{plane.shape[1]} pixels at "
                    f"{band.gsd_m:g} m make no whole pixel at {gsd_m:g} m"
                )
            planes.append(coarse)
            bands.append(band.model_copy(update={"gsd_m": float(gsd_m)}))
        else:
            planes.append(plane)
            bands.append(band)
    return replace(rasters, planes=tuple(planes), bands=tuple(bands))


def crop(
    rasters: BandRasters,
    size_px: int,
    *,
    gsd_m: float | None = None,
    rng: np.random.Generator | None = None,
) -> BandRasters:
    """A square footprint of ``size_px`` pixels of ``gsd_m`` (default: the finest band's GSD).

    Each band keeps ``round(footprint / band GSD)`` pixels (at least one). The crop is placed on
    the coarsest band's grid (centred within half a coarse pixel without ``rng``; anywhere it fits,
    uniformly, with it) and every band is cut at the same edge, so nested grids such as
    10 / 20 / 60 m stay aligned when the footprint is a whole number of every band's pixels.
    Raises :class:`ModalityError` when the footprint does not fit in the sample.
    """
    if size_px < 1:
        raise ModalityError(f"crop size must be at least 1 pixel, got {size_px}")
    unit = gsd_m if gsd_m is not None else min(b.gsd_m for b in rasters.bands)
    footprint = size_px * unit
    sizes = [max(1, int(round(footprint / b.gsd_m))) for b in rasters.bands]
    for plane, band, n in zip(rasters.planes, rasters.bands, sizes):
        if n > plane.shape[0] or n > plane.shape[1]:
            raise ModalityError(
                f"a {size_px} px crop at {unit:g} m ({footprint:g} m) does not fit in band "
                f"{band.name} ({plane.shape[0]}x{plane.shape[1]} px at {band.gsd_m:g} m = "
                f"{plane.shape[0] * band.gsd_m:g} m); choose a smaller size or GSD"
            )
    # Place the crop on the coarsest band's grid, then cut every band at the same edge in metres.
    coarsest = int(np.argmax([b.gsd_m for b in rasters.bands]))
    g_c, n_c = rasters.bands[coarsest].gsd_m, sizes[coarsest]
    h_c, w_c = rasters.planes[coarsest].shape
    if rng is None:
        k_row, k_col = (h_c - n_c) // 2, (w_c - n_c) // 2
    else:
        k_row, k_col = int(rng.integers(0, h_c - n_c + 1)), int(rng.integers(0, w_c - n_c + 1))
    top_m = k_row * g_c - h_c * g_c / 2.0  # edges in metres from the sample centre
    left_m = k_col * g_c - w_c * g_c / 2.0
    planes = []
    for plane, band, n in zip(rasters.planes, rasters.bands, sizes):
        r0 = _start(top_m, plane.shape[0], band.gsd_m, n)
        c0 = _start(left_m, plane.shape[1], band.gsd_m, n)
        planes.append(plane[r0 : r0 + n, c0 : c0 + n])
    return replace(rasters, planes=tuple(planes))


def _start(edge_m: float, length: int, gsd_m: float, n: int) -> int:
    start = int(round((edge_m + length * gsd_m / 2.0) / gsd_m))
    return min(max(start, 0), length - n)


def atoms_to_rasters(atoms: AtomSet) -> BandRasters:
    """Put atoms back on their grids: one NaN-filled plane per band, centred on the origin.

    Exact for atoms made from rasters (positions at pixel centres of a grid centred on the
    footprint); pixels without an atom are NaN.
    """
    planes = []
    for i, band in enumerate(atoms.bands):
        sel = atoms.band == i
        g = band.gsd_m
        u = atoms.x[sel].astype(np.float64) / g
        v = atoms.y[sel].astype(np.float64) / g
        if u.size == 0:
            planes.append(np.full((1, 1), np.nan, dtype=np.float32))
            continue
        w = int(round(2 * np.abs(u).max() + 1))
        h = int(round(2 * np.abs(v).max() + 1))
        cols = np.rint(u - 0.5 + w / 2.0).astype(np.int64)
        rows = np.rint(h / 2.0 - 0.5 - v).astype(np.int64)
        plane = np.full((h, w), np.nan, dtype=np.float32)
        plane[rows, cols] = atoms.value[sel]
        planes.append(plane)
    return BandRasters(tuple(planes), atoms.bands, atoms.scene)


def simulate_sensor(
    sample: HyperspectralSample,
    modality: Modality,
    *,
    cache: SimulatorCache | None = None,
    host: Any = None,
    skip_unsupported: bool | None = None,
    min_coverage: float = MIN_RESPONSE_COVERAGE,
) -> BandRasters:
    """The hyperspectral ``sample`` as ``modality.sensor`` sees it at ``modality.gsd_m`` (no crop).

    ``skip_unsupported=None`` skips the bands the source cannot provide when the modality names no
    bands, and refuses when it names them.
    """
    cache = cache if cache is not None else SimulatorCache()
    spec = cache.sensor(modality.sensor, host)
    names = modality.band_names(spec) if modality.bands is not None else None
    skip = (modality.bands is None) if skip_unsupported is None else skip_unsupported
    table = sample.table
    if table.gsd_m != sample.pixel_gsd_m:
        table = SpectralTable(
            table.center_nm,
            table.fwhm_nm,
            table.names,
            gsd_m=sample.pixel_gsd_m,
            source_id=table.source_id,
        )
    sim = cache.get(
        table,
        spec,
        bands=names,
        gsd_m=modality.gsd_m,
        skip_unsupported=skip,
        min_coverage=min_coverage,
    )
    return sim.rasters(sample.cube, scene=sample.scene)


def _as_rasters(sample: SampleSource) -> BandRasters:
    if isinstance(sample, BandRasters):
        return sample
    if isinstance(sample, AtomSet):
        return atoms_to_rasters(sample)
    raise ModalityError(f"cannot apply a modality to a {type(sample).__name__}")


def _hyperspectral_from_atoms(atoms: AtomSet) -> HyperspectralSample:
    rasters = atoms_to_rasters(atoms)
    shapes = {p.shape for p in rasters.planes}
    gsds = {b.gsd_m for b in rasters.bands}
    if len(shapes) != 1 or len(gsds) != 1:
        raise ModalityError(
            f"atoms of {atoms.scene.sensor_id} are on several grids; a sensor can only be "
            "simulated from a hyperspectral cube on one grid"
        )
    table = SpectralTable(
        atoms.center_wavelength_nm,
        atoms.fwhm_nm,
        tuple(atoms.band_names),
        gsd_m=gsds.pop(),
        source_id=atoms.scene.sensor_id,
    )
    return HyperspectralSample(np.stack(rasters.planes, axis=-1), table, atoms.scene)


def apply_modality(
    sample: SampleSource,
    modality: Modality,
    *,
    rng: np.random.Generator | None = None,
    cache: SimulatorCache | None = None,
    host: Any = None,
    skip_unsupported: bool | None = None,
    min_coverage: float = MIN_RESPONSE_COVERAGE,
) -> AtomSet:
    """Turn a dataset sample into ``modality``: the AtomSet a model sees.

    - hyperspectral sample (or an AtomSet whose bands the modality's sensor does not have):
      simulate the sensor (weights cached in ``cache``), at ``gsd_m``;
    - multispectral sample / AtomSet: the modality's bands must be bands of the sample (by name);
      they are selected, aggregated to ``gsd_m`` and keep the sample's own band metadata.

    Then a centre crop (random with ``rng``) to ``size_px``. Errors are :class:`ModalityError`
    (or :class:`~atomizer.errors.SimulationError` for what a source cannot simulate).
    """
    cache = cache if cache is not None else SimulatorCache()
    if isinstance(sample, AtomSet):
        spec = cache.sensor(modality.sensor, host)
        wanted = modality.band_names(spec)
        have = {n.lower() for n in sample.band_names}
        if not all(n.lower() in have for n in wanted) and sample.n_bands > len(wanted):
            sample = _hyperspectral_from_atoms(sample)
    if isinstance(sample, HyperspectralSample):
        rasters = simulate_sensor(
            sample,
            modality,
            cache=cache,
            host=host,
            skip_unsupported=skip_unsupported,
            min_coverage=min_coverage,
        )
    else:
        rasters = _as_rasters(sample)
        if modality.bands is not None or modality.sensor.lower() != rasters.scene.sensor_id:
            spec = cache.sensor(modality.sensor, host)
            names = modality.band_names(spec)
            try:
                rasters = rasters.select(names)
            except AtomizerError:
                missing = [n for n in names if n.lower() not in map(str.lower, rasters.band_names)]
                raise ModalityError(
                    f"modality {modality.label}: the {rasters.scene.sensor_id} sample has no band "
                    f"{', '.join(missing)} (it has {', '.join(rasters.band_names)}); a sensor can "
                    "only be simulated from a hyperspectral source"
                ) from None
        if modality.gsd_m is not None:
            rasters = change_gsd(rasters, modality.gsd_m)
    if modality.size_px is not None:
        rasters = crop(rasters, modality.size_px, gsd_m=modality.gsd_m, rng=rng)
    return rasters.to_atoms()
