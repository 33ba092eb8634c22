"""Simulate any sensor from a hyperspectral cube or a spectral library.

    >>> sim = Simulator(sensor_spec("aviris-indian-pines-1992-corrected"), sensor_spec("landsat8"),
    ...                 bands=["B2", "B3", "B4", "B5"], gsd_m=30)
    >>> atoms = sim.atoms(cube)            # (H, W, 200) cube -> AtomSet of 4 bands at 30 m

A :class:`Simulator` holds the ``(C_target, C_source)`` weight matrix of one (source, target) pair,
so build it once and reuse it for every cube or patch. Spectral integration comes first (it shrinks
the channel axis), then area-weighted aggregation per output GSD; both are linear, so the order does
not change the result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from atomizer.atoms.atomset import (
    BAND_DTYPE,
    COORD_DTYPE,
    VALUE_DTYPE,
    AtomSet,
    SceneMeta,
    pixel_centres_m,
)
from atomizer.errors import SimulationError
from atomizer.plugins.host import sensor_spec
from atomizer.sensors.spec import GSD_RANGE_M, Band, SensorSpec
from atomizer.simulate.spatial import GSD_RTOL, aggregate
from atomizer.simulate.spectral import (
    MIN_RESPONSE_COVERAGE,
    SpectralTable,
    band_weights,
    describe_band,
    integrate,
    supported_bands,
)

#: What a simulated scene says about how it was made (``SceneMeta.extra["simulation"]``).
SIMULATION_METHOD = "spectral response integration + area-weighted aggregation"


class SimulationWarning(UserWarning):
    """Bands of the target sensor were skipped because the source cannot simulate them."""


@dataclass(frozen=True, eq=False)
class BandRasters:
    """One 2-D array per band on the band's own grid (``band.gsd_m``), all over one footprint.

    Planes are centred on the same point (the footprint centre, the origin of atom positions);
    row 0 is north. Non-finite values mean no data.
    """

    planes: tuple[np.ndarray, ...]
    bands: tuple[Band, ...]
    scene: SceneMeta

    def __post_init__(self) -> None:
        object.__setattr__(self, "planes", tuple(self.planes))
        object.__setattr__(self, "bands", tuple(self.bands))
        if len(self.planes) != len(self.bands):
            raise SimulationError(
                f"{len(self.planes)} planes for {len(self.bands)} bands; give one plane per band"
            )
        for plane, band in zip(self.planes, self.bands):
            if np.ndim(plane) != 2:
                raise SimulationError(
                    f"band {band.name}: a plane must be 2-D, got {np.shape(plane)}"
                )

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def footprint_m(self) -> tuple[float, float]:
        """(height, width) in metres of the largest plane's footprint."""
        h = max(p.shape[0] * b.gsd_m for p, b in zip(self.planes, self.bands))
        w = max(p.shape[1] * b.gsd_m for p, b in zip(self.planes, self.bands))
        return float(h), float(w)

    def select(self, names: Sequence[str]) -> BandRasters:
        """Only the bands ``names`` (case-insensitive, in that order)."""
        lookup = {b.name.lower(): i for i, b in enumerate(self.bands)}
        missing = [n for n in names if n.lower() not in lookup]
        if missing:
            raise SimulationError(
                f"bands {', '.join(missing)} are not in this sample; it has "
                f"{', '.join(self.band_names)}"
            )
        idx = [lookup[n.lower()] for n in names]
        return replace(
            self, planes=tuple(self.planes[i] for i in idx), bands=tuple(self.bands[i] for i in idx)
        )

    def to_atoms(self) -> AtomSet:
        return atoms_from_planes(self.planes, self.bands, self.scene)


def atoms_from_planes(
    planes: Sequence[np.ndarray], bands: Sequence[Band], scene: SceneMeta
) -> AtomSet:
    """An AtomSet from one centred 2-D plane per band (pixels of ``band.gsd_m``); NaN: no atom."""
    values, band_idx, xs, ys = [], [], [], []
    for i, (plane, band) in enumerate(zip(planes, bands)):
        plane = np.asarray(plane)
        h, w = plane.shape
        px, py = pixel_centres_m(h, w, band.gsd_m)
        flat = plane.reshape(-1).astype(VALUE_DTYPE, copy=False)
        ok = np.isfinite(flat)
        if ok.all():
            values.append(flat)
            xs.append(np.tile(px, h))
            ys.append(np.repeat(py, w))
            band_idx.append(np.full(flat.size, i, dtype=BAND_DTYPE))
        else:
            keep = np.nonzero(ok)[0]
            values.append(flat[keep])
            xs.append(px[keep % w])
            ys.append(py[keep // w])
            band_idx.append(np.full(keep.size, i, dtype=BAND_DTYPE))
    if not values:
        raise SimulationError("no bands to turn into atoms")
    return AtomSet(
        value=np.concatenate(values),
        band=np.concatenate(band_idx),
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        bands=tuple(bands),
        scene=scene,
    )


def simulated_band(band: Band, gsd_m: float) -> Band:
    """A target band as simulated: at ``gsd_m``, no DN scaling (values are physical already)."""
    return band.model_copy(
        update={"gsd_m": float(gsd_m), "scale": None, "offset": None, "nodata": None, "stats": None}
    )


def _as_table(source: SpectralTable | SensorSpec) -> SpectralTable:
    if isinstance(source, SpectralTable):
        return source
    if isinstance(source, SensorSpec):
        return SpectralTable.from_spec(source)
    raise SimulationError(
        f"a simulation source is a SensorSpec or a SpectralTable, not {type(source).__name__}"
    )


class Simulator:
    """Everything needed to simulate ``target`` from ``source``, computed once.

    :param source: the band table of the cube or library (a hyperspectral :class:`SensorSpec` or a
        :class:`SpectralTable`); its GSD is the cube's pixel size.
    :param target: the sensor to simulate.
    :param bands: target band names (default: all).
    :param gsd_m: output GSD for every band (default: each band's native GSD).
    :param skip_unsupported: drop bands that cannot be simulated (out of spectral range, or finer
        than the source) with a :class:`SimulationWarning` instead of raising.
    :param min_coverage: fraction of a band's response that must lie inside the source's coverage.
    """

    def __init__(
        self,
        source: SpectralTable | SensorSpec,
        target: SensorSpec,
        *,
        bands: Sequence[str] | None = None,
        gsd_m: float | None = None,
        skip_unsupported: bool = False,
        min_coverage: float = MIN_RESPONSE_COVERAGE,
    ) -> None:
        self.table = _as_table(source)
        self.target = target
        chosen = [target.band(n) for n in bands] if bands else list(target.bands)
        if len({b.name for b in chosen}) != len(chosen):
            raise SimulationError(
                f"bands {', '.join(bands or [])} name a band of {target.id} twice"
            )
        lo, hi = GSD_RANGE_M
        if gsd_m is not None and not (math.isfinite(gsd_m) and lo <= gsd_m <= hi):
            raise SimulationError(f"gsd_m {gsd_m:g} is outside the physical range {lo:g}-{hi:g} m")
        ok, refused = supported_bands(self.table, chosen, min_coverage=min_coverage)
        refused_names = [b.name for b in chosen if b not in ok]
        kept: list[Band] = []
        for band in ok:
            out_gsd = float(gsd_m) if gsd_m is not None else band.gsd_m
            src = self.table.gsd_m
            if src is not None and out_gsd < src * (1 - GSD_RTOL):
                refused.append(
                    f"band {describe_band(band)} at {out_gsd:g} m is finer than the source "
                    f"{self.table.source_id} at {src:g} m (ask for a GSD of at least {src:g} m)"
                )
                refused_names.append(band.name)
                continue
            kept.append(band)
        if refused and not skip_unsupported:
            others = ", ".join(refused_names[1:])
            more = f" (nor can bands {others})" if others else ""
            raise SimulationError(
                f"cannot simulate {target.id}: {refused[0]}{more}; leave such bands out or skip "
                "them (skip_unsupported=True, --skip-unsupported)"
            )
        for line in refused:
            warnings.warn(f"skipped {target.id} {line}", SimulationWarning, stacklevel=2)
        if not kept:
            raise SimulationError(
                f"no band of {target.id} can be simulated from {self.table.source_id} "
                f"({self.table.describe_coverage()}"
                + (f", {self.table.gsd_m:g} m" if self.table.gsd_m else "")
                + ")"
            )
        self.skipped = tuple(b.name for b in chosen if b not in kept)
        self.weights = band_weights(self.table, kept, min_coverage=min_coverage)
        self.bands = tuple(simulated_band(b, gsd_m if gsd_m is not None else b.gsd_m) for b in kept)
        self.gsd_m = gsd_m

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def spectra(self, values: np.ndarray) -> np.ndarray:
        """Target band values (..., C_target) of source spectra (..., C_source); float32."""
        return integrate(values, self.weights)

    def _source_gsd(self, source_gsd_m: float | None) -> float:
        gsd = source_gsd_m if source_gsd_m is not None else self.table.gsd_m
        if gsd is None:
            raise SimulationError(
                f"source {self.table.source_id!r} has no GSD (a spectral library?); pass "
                "source_gsd_m= to simulate an image"
            )
        return float(gsd)

    def rasters(
        self,
        cube: np.ndarray,
        *,
        scene: SceneMeta | None = None,
        source_gsd_m: float | None = None,
    ) -> BandRasters:
        """Per-band planes of a ``(H, W, C_source)`` cube, each at its output GSD.

        ``scene`` describes the source (time, place); the result carries the target's sensor id.
        """
        cube = np.asarray(cube)
        if cube.ndim != 3:
            raise SimulationError(f"expected a (height, width, channels) cube, got {cube.shape}")
        src_gsd = self._source_gsd(source_gsd_m)
        spectral = integrate(cube, self.weights)  # (H, W, C_t) at the source GSD
        planes: list[np.ndarray] = [np.empty(0)] * len(self.bands)
        by_gsd: dict[float, list[int]] = {}
        for i, b in enumerate(self.bands):
            by_gsd.setdefault(b.gsd_m, []).append(i)
        for gsd, idx in by_gsd.items():
            coarse = aggregate(spectral[:, :, idx], src_gsd, gsd)
            for k, i in enumerate(idx):
                planes[i] = np.ascontiguousarray(coarse[:, :, k])
        return BandRasters(tuple(planes), self.bands, self.scene(scene))

    def atoms(
        self,
        cube: np.ndarray,
        *,
        scene: SceneMeta | None = None,
        source_gsd_m: float | None = None,
    ) -> AtomSet:
        """The AtomSet of a ``(H, W, C_source)`` cube as the target sensor would see it."""
        return self.rasters(cube, scene=scene, source_gsd_m=source_gsd_m).to_atoms()

    def scene(self, base: SceneMeta | None = None) -> SceneMeta:
        """Scene metadata of a simulated product (target's id; the source noted in ``extra``)."""
        extra: dict[str, Any] = dict(base.extra) if base is not None else {}
        extra["simulation"] = {
            "source": self.table.source_id,
            "target": self.target.id,
            "method": SIMULATION_METHOD,
        }
        if base is None:
            return SceneMeta(sensor_id=self.target.id, source_id=self.table.source_id, extra=extra)
        return replace(base, sensor_id=self.target.id, extra=extra)


class SimulatorCache:
    """Simulators by (source, target, bands, GSD), and sensor specs by name: each built once.

    An explicit object (no module-level cache): pass one to :func:`atomizer.data.apply_modality`
    or keep it on a dataset. A spec given by YAML path is read once per cache.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Simulator] = {}
        self._specs: dict[str, SensorSpec] = {}
        self._fingerprints: dict[int, tuple[SensorSpec, str]] = {}

    def sensor(self, sensor: SensorSpec | str, host: Any = None) -> SensorSpec:
        """The spec of ``sensor`` (id, alias or YAML path), resolved once."""
        if isinstance(sensor, SensorSpec):
            return sensor
        if sensor not in self._specs:
            self._specs[sensor] = sensor_spec(sensor, host)
        return self._specs[sensor]

    def remember(self, spec: SensorSpec) -> None:
        """Resolve ``spec.id`` to ``spec`` (e.g. a spec embedded in a dataset folder)."""
        self._specs.setdefault(spec.id, spec)

    def _fingerprint(self, spec: SensorSpec) -> str:
        entry = self._fingerprints.get(id(spec))
        if entry is None or entry[0] is not spec:  # keep the spec alive so its id stays unique
            entry = (spec, spec.model_dump_json())
            self._fingerprints[id(spec)] = entry
        return entry[1]

    def get(
        self,
        source: SpectralTable | SensorSpec,
        target: SensorSpec,
        *,
        bands: Sequence[str] | None = None,
        gsd_m: float | None = None,
        skip_unsupported: bool = False,
        min_coverage: float = MIN_RESPONSE_COVERAGE,
    ) -> Simulator:
        table = _as_table(source)
        key = (
            table.key,
            self._fingerprint(target),
            tuple(bands) if bands else None,
            gsd_m,
            skip_unsupported,
            min_coverage,
        )
        if key not in self._items:
            self._items[key] = Simulator(
                table,
                target,
                bands=bands,
                gsd_m=gsd_m,
                skip_unsupported=skip_unsupported,
                min_coverage=min_coverage,
            )
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)


def simulate(
    cube: np.ndarray,
    source: SpectralTable | SensorSpec | str,
    target: SensorSpec | str,
    *,
    bands: Sequence[str] | None = None,
    gsd_m: float | None = None,
    skip_unsupported: bool = False,
    min_coverage: float = MIN_RESPONSE_COVERAGE,
    scene: SceneMeta | None = None,
    host: Any = None,
) -> AtomSet:
    """One-call simulation of a ``(H, W, C)`` cube to an AtomSet of ``target``.

    ``source`` and ``target`` may be sensor ids, YAML paths or specs. See :class:`Simulator`.
    """
    src = source if isinstance(source, SpectralTable) else sensor_spec(source, host)
    sim = Simulator(
        src,
        sensor_spec(target, host),
        bands=bands,
        gsd_m=gsd_m,
        skip_unsupported=skip_unsupported,
        min_coverage=min_coverage,
    )
    return sim.atoms(cube, scene=scene)


def simulate_spectra(
    spectra: np.ndarray,
    source: SpectralTable | SensorSpec | str,
    target: SensorSpec | str,
    *,
    bands: Sequence[str] | None = None,
    skip_unsupported: bool = False,
    min_coverage: float = MIN_RESPONSE_COVERAGE,
    host: Any = None,
) -> tuple[np.ndarray, tuple[Band, ...]]:
    """Target band values ``(M, C_target)`` of a library ``(M, C_source)``, and the bands."""
    src = source if isinstance(source, SpectralTable) else sensor_spec(source, host)
    sim = Simulator(
        src,
        sensor_spec(target, host),
        bands=bands,
        skip_unsupported=skip_unsupported,
        min_coverage=min_coverage,
    )
    return sim.spectra(spectra), sim.bands
