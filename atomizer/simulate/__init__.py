"""Sensor simulation: any SensorSpec from a hyperspectral cube or a spectral library.

- :mod:`~atomizer.simulate.spectral`: the (C_target, C_source) band-integration weights.
- :mod:`~atomizer.simulate.spatial`: area-weighted aggregation to a coarser GSD.
- :mod:`~atomizer.simulate.api`: :class:`Simulator`, :func:`simulate`, :func:`simulate_spectra`.
- :mod:`~atomizer.simulate.export`: GeoTIFF + STAC item output.
"""

from atomizer.simulate.api import (
    BandRasters,
    SimulationWarning,
    Simulator,
    SimulatorCache,
    atoms_from_planes,
    simulate,
    simulate_spectra,
)
from atomizer.simulate.spatial import aggregate, overlap_matrix
from atomizer.simulate.spectral import (
    MIN_RESPONSE_COVERAGE,
    SpectralTable,
    band_weights,
    coverage_fraction,
)

__all__ = [
    "MIN_RESPONSE_COVERAGE",
    "BandRasters",
    "SimulationWarning",
    "Simulator",
    "SimulatorCache",
    "SpectralTable",
    "aggregate",
    "atoms_from_planes",
    "band_weights",
    "coverage_fraction",
    "overlap_matrix",
    "simulate",
    "simulate_spectra",
]
