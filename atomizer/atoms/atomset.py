"""``AtomSet``: a flat, unordered set of scalar observations, each with the metadata to read it.

Per atom: ``value`` (physical units after the spec's scale/offset), ``band`` (index into the band
table), ``x`` and ``y`` (metres east and north of the footprint centre, at pixel centres).
Per band: a :class:`~atomizer.sensors.spec.Band` (name, common name, centre and FWHM in nm, GSD in m,
optional spectral response). Per scene: :class:`SceneMeta`.

Every band keeps its native grid: nothing is resampled. No-data and non-finite values never become
atoms.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from atomizer.errors import AtomizerError, WindowError
from atomizer.sensors.spec import Band, SensorSpec

VALUE_DTYPE = np.float32
BAND_DTYPE = np.int16
COORD_DTYPE = np.float32


def pixel_centres_m(n_rows: int, n_cols: int, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(x of each column, y of each row) of a grid's pixel centres, in metres from its centre.

    x grows east, y north (row 0 is the northern edge): the paper's ``(x_pixel - w/2) * g`` at
    pixel centres. Every reader, simulator and dataset places atoms with this function.
    """
    xs = ((np.arange(n_cols) + 0.5) - n_cols / 2.0) * gsd_m
    ys = (n_rows / 2.0 - (np.arange(n_rows) + 0.5)) * gsd_m
    return xs.astype(COORD_DTYPE), ys.astype(COORD_DTYPE)


@dataclass(frozen=True)
class SceneMeta:
    """Per-scene metadata of an :class:`AtomSet`."""

    sensor_id: str
    datetime: dt.datetime | None = None
    lon: float | None = None  # footprint centroid, degrees
    lat: float | None = None
    crs: str | None = None
    source_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras

    def to_json(self) -> dict[str, Any]:
        return {
            "sensor_id": self.sensor_id,
            "datetime": self.datetime.isoformat() if self.datetime else None,
            "lon": self.lon,
            "lat": self.lat,
            "crs": self.crs,
            "source_id": self.source_id,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SceneMeta:
        when = d.get("datetime")
        return cls(
            sensor_id=d["sensor_id"],
            datetime=dt.datetime.fromisoformat(when) if when else None,
            lon=d.get("lon"),
            lat=d.get("lat"),
            crs=d.get("crs"),
            source_id=d.get("source_id"),
            extra=dict(d.get("extra") or {}),
        )


@dataclass(eq=False)
class AtomSet:
    """N atoms over B bands. Arrays are 1-D of length N; ``bands`` has B entries."""

    value: np.ndarray
    band: np.ndarray
    x: np.ndarray
    y: np.ndarray
    bands: tuple[Band, ...]
    scene: SceneMeta

    def __post_init__(self) -> None:
        self.value = np.asarray(self.value, dtype=VALUE_DTYPE)
        self.band = np.asarray(self.band, dtype=BAND_DTYPE)
        self.x = np.asarray(self.x, dtype=COORD_DTYPE)
        self.y = np.asarray(self.y, dtype=COORD_DTYPE)
        self.bands = tuple(self.bands)
        n = self.value.shape
        if self.value.ndim != 1 or self.band.shape != n or self.x.shape != n or self.y.shape != n:
            raise AtomizerError(
                "AtomSet arrays must be 1-D and of equal length; got value "
                f"{self.value.shape}, band {self.band.shape}, x {self.x.shape}, y {self.y.shape}"
            )
        if len(self.bands) > np.iinfo(BAND_DTYPE).max:
            raise AtomizerError(f"an AtomSet holds at most {np.iinfo(BAND_DTYPE).max} bands")
        if self.band.size and (int(self.band.min()) < 0 or int(self.band.max()) >= len(self.bands)):
            raise AtomizerError(
                f"band indices must lie in 0..{len(self.bands) - 1} (the band table has "
                f"{len(self.bands)} rows); got {int(self.band.min())}..{int(self.band.max())}"
            )

    # --- sizes ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.value.shape[0])

    @property
    def n_atoms(self) -> int:
        return len(self)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-atom arrays."""
        return int(self.value.nbytes + self.band.nbytes + self.x.nbytes + self.y.nbytes)

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band_counts(self) -> np.ndarray:
        """Atoms per band (length B)."""
        return np.bincount(self.band.astype(np.int64), minlength=self.n_bands)

    # per-band arrays, handy for encoders
    @property
    def center_wavelength_nm(self) -> np.ndarray:
        return np.array([b.center_wavelength_nm for b in self.bands], dtype=np.float64)

    @property
    def fwhm_nm(self) -> np.ndarray:
        return np.array([b.fwhm_nm for b in self.bands], dtype=np.float64)

    @property
    def gsd_m(self) -> np.ndarray:
        return np.array([b.gsd_m for b in self.bands], dtype=np.float64)

    def atom_gsd_m(self) -> np.ndarray:
        """GSD of each atom's band (length N)."""
        return self.gsd_m.astype(COORD_DTYPE)[self.band]

    # --- building -------------------------------------------------------------------------------------
    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        spec: SensorSpec,
        *,
        gsd_m: float | None = None,
        bands: Sequence[str] | None = None,
        nodata: float | None = None,
        apply_scale: bool = False,
        scene: SceneMeta | None = None,
    ) -> AtomSet:
        """Atoms of a ``(B, H, W)`` array whose bands are ``bands`` of ``spec`` (all, in order, by default).

        All bands share one grid of ``gsd_m`` metres (default: each band's native GSD must agree);
        positions are pixel centres relative to the array's centre, x east, y north (row 0 is north).
        ``apply_scale`` applies each band's scale/offset; ``nodata`` (or the band's) and
        non-finite values are dropped.
        """
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise AtomizerError(f"expected a (bands, height, width) array, got shape {array.shape}")
        names = list(bands) if bands is not None else spec.band_names
        if len(names) != array.shape[0]:
            raise AtomizerError(
                f"the array has {array.shape[0]} bands but {len(names)} band names were given "
                f"({', '.join(names)})"
            )
        band_objs = [spec.band(n) for n in names]
        if gsd_m is None:
            gsds = {b.gsd_m for b in band_objs}
            if len(gsds) != 1:
                raise AtomizerError(
                    f"bands {', '.join(names)} have different native GSDs {sorted(gsds)}; pass "
                    "gsd_m= for an array on one grid"
                )
            gsd_m = gsds.pop()
        else:
            band_objs = [b.model_copy(update={"gsd_m": float(gsd_m)}) for b in band_objs]
        _, h, w = array.shape
        xs, ys = pixel_centres_m(h, w, gsd_m)
        values, band_idx, xx, yy = [], [], [], []
        for i, b in enumerate(band_objs):
            plane = array[i]
            nd = nodata if nodata is not None else b.nodata
            ok = np.isfinite(plane)
            if nd is not None:
                ok &= plane != nd
            rows, cols = np.nonzero(ok)
            v = plane[rows, cols].astype(np.float64)
            if apply_scale:
                v = v * (b.scale if b.scale is not None else 1.0) + (b.offset or 0.0)
            values.append(v.astype(VALUE_DTYPE))
            band_idx.append(np.full(rows.shape, i, dtype=BAND_DTYPE))
            xx.append(xs[cols].astype(COORD_DTYPE))
            yy.append(ys[rows].astype(COORD_DTYPE))
        return cls(
            value=np.concatenate(values) if values else np.zeros(0, VALUE_DTYPE),
            band=np.concatenate(band_idx) if band_idx else np.zeros(0, BAND_DTYPE),
            x=np.concatenate(xx) if xx else np.zeros(0, COORD_DTYPE),
            y=np.concatenate(yy) if yy else np.zeros(0, COORD_DTYPE),
            bands=tuple(band_objs),
            scene=scene or SceneMeta(sensor_id=spec.id),
        )

    # --- subsets ----------------------------------------------------------------------------------------
    def take(self, index: np.ndarray) -> AtomSet:
        """The atoms at ``index`` (an integer array or a boolean mask); band table unchanged."""
        return replace(
            self, value=self.value[index], band=self.band[index], x=self.x[index], y=self.y[index]
        )

    def select_bands(self, names: Sequence[str]) -> AtomSet:
        """Only the bands ``names`` (in that order), band indices renumbered."""
        lowered = [n.lower() for n in names]
        dups = sorted({n for n in names if lowered.count(n.lower()) > 1})
        if dups:
            raise AtomizerError(f"bands {', '.join(dups)} are named more than once; name each band once")
        lookup = {b.name.lower(): i for i, b in enumerate(self.bands)}
        missing = [n for n in names if n.lower() not in lookup]
        if missing:
            raise AtomizerError(
                f"bands {', '.join(missing)} are not in this AtomSet; it has {', '.join(self.band_names)}"
            )
        old = [lookup[n.lower()] for n in names]
        remap = np.full(self.n_bands, -1, dtype=np.int64)
        remap[old] = np.arange(len(old))
        new_band = remap[self.band.astype(np.int64)]
        keep = new_band >= 0
        out = self.take(keep)
        out.band = new_band[keep].astype(BAND_DTYPE)
        out.bands = tuple(self.bands[i] for i in old)
        return out

    def window(self, xmin: float, ymin: float, xmax: float, ymax: float) -> AtomSet:
        """Atoms whose positions lie in ``[xmin, xmax) x [ymin, ymax)`` (metres, same frame)."""
        if not (xmax > xmin and ymax > ymin):
            raise WindowError(f"empty window x [{xmin}, {xmax}) y [{ymin}, {ymax}); give min < max")
        mask = (self.x >= xmin) & (self.x < xmax) & (self.y >= ymin) & (self.y < ymax)
        return self.take(mask)

    def recentered(self, x0: float, y0: float) -> AtomSet:
        """The same atoms with positions relative to ``(x0, y0)`` instead."""
        return replace(self, x=self.x - COORD_DTYPE(x0), y=self.y - COORD_DTYPE(y0))

    @staticmethod
    def concat(sets: Sequence[AtomSet], *, scene: SceneMeta | None = None) -> AtomSet:
        """One AtomSet from several; identical bands (same name and physics) are merged."""
        if not sets:
            raise AtomizerError("cannot concatenate zero AtomSets")
        table: list[Band] = []
        keys: dict[tuple, int] = {}
        parts = []
        for s in sets:
            remap = np.empty(s.n_bands, dtype=np.int64)
            for i, b in enumerate(s.bands):
                key = b.identity
                if key not in keys:
                    if any(t.name == b.name for t in table):
                        raise AtomizerError(
                            f"two different bands are both named {b.name!r}; rename one before "
                            "concatenating"
                        )
                    keys[key] = len(table)
                    table.append(b)
                remap[i] = keys[key]
            parts.append(remap[s.band.astype(np.int64)].astype(BAND_DTYPE))
        return AtomSet(
            value=np.concatenate([s.value for s in sets]),
            band=np.concatenate(parts),
            x=np.concatenate([s.x for s in sets]),
            y=np.concatenate([s.y for s in sets]),
            bands=tuple(table),
            scene=scene or sets[0].scene,
        )

    # --- comparison -------------------------------------------------------------------------------------
    def canonical_order(self) -> np.ndarray:
        """A permutation sorting atoms by (band name, y, x, value): equal sets sort identically."""
        name_rank = np.argsort(np.argsort(np.array(self.band_names, dtype=object)))
        return np.lexsort((self.value, self.x, -self.y, name_rank[self.band.astype(np.int64)]))

    def canonical(self) -> AtomSet:
        """The same set with bands sorted by name and atoms in canonical order."""
        order = sorted(range(self.n_bands), key=lambda i: self.bands[i].name)
        out = self.select_bands([self.bands[i].name for i in order])
        return out.take(out.canonical_order())

    def same_atoms(self, other: AtomSet, *, atol: float = 0.0) -> bool:
        """True when both hold the same atoms (order of atoms and of bands ignored)."""
        if len(self) != len(other) or sorted(self.band_names) != sorted(other.band_names):
            return False
        a, b = self.canonical(), other.canonical()
        for ba, bb in zip(a.bands, b.bands):
            if (ba.center_wavelength_nm, ba.fwhm_nm, ba.gsd_m) != (
                bb.center_wavelength_nm, bb.fwhm_nm, bb.gsd_m
            ):
                return False
        return bool(
            np.array_equal(a.band, b.band)
            and np.allclose(a.x, b.x, atol=atol, rtol=0)
            and np.allclose(a.y, b.y, atol=atol, rtol=0)
            and np.allclose(a.value, b.value, atol=atol, rtol=0, equal_nan=False)
        )

    def summary(self) -> dict[str, Any]:
        """Per-band counts and value statistics (what ``atomizer atoms show`` prints)."""
        counts = self.band_counts()
        out = []
        for i, b in enumerate(self.bands):
            v = self.value[self.band == i]
            out.append(
                {
                    "name": b.name,
                    "common_name": b.common_name,
                    "center_wavelength_nm": b.center_wavelength_nm,
                    "fwhm_nm": b.fwhm_nm,
                    "gsd_m": b.gsd_m,
                    "n_atoms": int(counts[i]),
                    "min": float(v.min()) if v.size else None,
                    "max": float(v.max()) if v.size else None,
                    "mean": float(v.astype(np.float64).mean()) if v.size else None,
                }
            )
        return {
            "sensor": self.scene.sensor_id,
            "n_atoms": len(self),
            "n_bands": self.n_bands,
            "scene": self.scene.to_json(),
            "bands": out,
        }

    def __repr__(self) -> str:
        return (
            f"AtomSet(sensor={self.scene.sensor_id!r}, n_atoms={len(self)}, "
            f"bands={self.band_names})"
        )
