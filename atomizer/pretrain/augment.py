"""Augmentations of AtomSets for contrastive pretraining, seeded by a ``numpy.random.Generator``.

Positions are metres east / north of the footprint centre, so geometric augmentations act on the
coordinates, never on a raster:

- :func:`random_crop`: a square window (a random fraction of the footprint), re-centred.
- :func:`flip_rotate`: one of the 8 symmetries of the square (90-degree rotations, mirror) applied
  to ``(x, y)``; a grid centred on 0 maps onto itself, so no atom is lost.
- :func:`band_dropout`: each band dropped with probability ``p`` (at least one kept).
- :func:`value_jitter`: a per-band gain ``1 + N(0, gain_std)``, per-atom noise ``N(0, noise_std)``.
- :func:`gsd_jitter`: positions and every band's GSD scaled by one log-uniform factor (the same
  scene seen by a finer or coarser sensor).
- :func:`subsample_atoms`: at most ``max_atoms`` atoms, drawn without replacement.

:class:`Augmenter` chains them from an :class:`AugmentConfig`. Augmentations are for training
only: evaluation reads the chips as they are.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from pydantic import Field, model_validator

from atomizer.atoms.atomset import COORD_DTYPE, VALUE_DTYPE, AtomSet
from atomizer.config import StrictModel


def _extent(atoms: AtomSet) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` of the pixel footprints (centres +/- half a pixel)."""
    half = atoms.atom_gsd_m() / 2
    return (
        float((atoms.x - half).min()),
        float((atoms.x + half).max()),
        float((atoms.y - half).min()),
        float((atoms.y + half).max()),
    )


def random_crop(
    atoms: AtomSet, rng: np.random.Generator, scale: tuple[float, float] = (0.5, 1.0)
) -> AtomSet:
    """Atoms whose centres fall in a random square window, re-centred on the window's centre.

    The window's side is ``u * min(width, height)`` of the footprint with ``u ~ U(scale)``. When the
    window would hold no atom (bands coarser than the window), the input is returned unchanged.
    """
    if len(atoms) == 0:
        return atoms
    xmin, xmax, ymin, ymax = _extent(atoms)
    side = float(rng.uniform(*scale)) * min(xmax - xmin, ymax - ymin)
    x0 = xmin + float(rng.uniform(0.0, 1.0)) * (xmax - xmin - side)
    y0 = ymin + float(rng.uniform(0.0, 1.0)) * (ymax - ymin - side)
    mask = (atoms.x >= x0) & (atoms.x < x0 + side) & (atoms.y >= y0) & (atoms.y < y0 + side)
    if not mask.any():
        return atoms
    return atoms.take(mask).recentered(x0 + side / 2, y0 + side / 2)


def dihedral(x: np.ndarray, y: np.ndarray, k: int, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` rotated by ``k`` quarter turns counter-clockwise, then mirrored (x -> -x)."""
    for _ in range(k % 4):
        x, y = -y, x
    if mirror:
        x = -x
    return x, y


def flip_rotate(atoms: AtomSet, rng: np.random.Generator) -> AtomSet:
    """One of the 8 symmetries of the square, drawn uniformly, applied to the positions."""
    k = int(rng.integers(0, 4))
    mirror = bool(rng.integers(0, 2))
    x, y = dihedral(atoms.x, atoms.y, k, mirror)
    return replace(atoms, x=np.asarray(x, COORD_DTYPE), y=np.asarray(y, COORD_DTYPE))


def band_dropout(atoms: AtomSet, rng: np.random.Generator, p: float) -> AtomSet:
    """Drop each band (and its atoms) with probability ``p``; one random band always survives."""
    if p <= 0 or atoms.n_bands <= 1:
        return atoms
    keep = rng.random(atoms.n_bands) >= p
    if not keep.any():
        keep[int(rng.integers(0, atoms.n_bands))] = True
    if keep.all():
        return atoms
    return atoms.select_bands([b.name for b, k in zip(atoms.bands, keep, strict=True) if k])


def value_jitter(
    atoms: AtomSet, rng: np.random.Generator, gain_std: float, noise_std: float
) -> AtomSet:
    """Values times a per-band gain ``1 + N(0, gain_std)``, plus per-atom ``N(0, noise_std)``."""
    if gain_std <= 0 and noise_std <= 0:
        return atoms
    gain = 1.0 + rng.normal(0.0, gain_std, size=max(atoms.n_bands, 1)) if gain_std > 0 else None
    value = atoms.value.astype(np.float64)
    if gain is not None:
        value = value * gain[atoms.band.astype(np.int64)]
    if noise_std > 0:
        value = value + rng.normal(0.0, noise_std, size=value.shape)
    return replace(atoms, value=value.astype(VALUE_DTYPE))


def gsd_jitter(
    atoms: AtomSet, rng: np.random.Generator, factor_range: tuple[float, float]
) -> tuple[AtomSet, float]:
    """Scale positions and every band's GSD by ``f``, log-uniform in ``factor_range``.

    Returns ``(atoms, f)`` so that the caller can scale the sample's metadata GSD alike.
    """
    lo, hi = factor_range
    if lo == hi == 1.0:
        return atoms, 1.0
    f = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    bands = tuple(b.model_copy(update={"gsd_m": b.gsd_m * f}) for b in atoms.bands)
    out = replace(
        atoms,
        x=(atoms.x * f).astype(COORD_DTYPE),
        y=(atoms.y * f).astype(COORD_DTYPE),
        bands=bands,
    )
    return out, f


def subsample_atoms(atoms: AtomSet, rng: np.random.Generator, max_atoms: int) -> AtomSet:
    """At most ``max_atoms`` atoms drawn without replacement (order kept)."""
    if len(atoms) <= max_atoms:
        return atoms
    idx = np.sort(rng.choice(len(atoms), size=max_atoms, replace=False))
    return atoms.take(idx)


class AugmentConfig(StrictModel):
    """Which augmentations :class:`Augmenter` applies, and how strongly."""

    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="Side of the crop window as a fraction of the footprint's side."
    )
    flip_rotate: bool = True
    band_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Probability to drop each band.")
    gain_std: float = Field(0.05, ge=0.0, description="Std of the per-band multiplicative gain.")
    noise_std: float = Field(0.005, ge=0.0, description="Std of additive noise (value units).")
    gsd_factor: tuple[float, float] = Field(
        (0.8, 1.25), description="Range of the log-uniform GSD jitter factor."
    )
    max_atoms: int | None = Field(None, ge=1, description="Cap on atoms per view (None: no cap).")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.gsd_factor
        if not 0 < lo <= hi:
            raise ValueError(f"gsd_factor must satisfy 0 < low <= high, got {self.gsd_factor}")
        return self


class Augmenter:
    """Crop, flip/rotate, band dropout, GSD jitter, value jitter, subsample: in that order."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, atoms: AtomSet, rng: np.random.Generator) -> tuple[AtomSet, float]:
        """An augmented copy of ``atoms`` and the GSD factor applied to it."""
        c = self.config
        out = atoms
        if c.crop_scale != (1.0, 1.0):
            out = random_crop(out, rng, c.crop_scale)
        if c.flip_rotate:
            out = flip_rotate(out, rng)
        out = band_dropout(out, rng, c.band_dropout)
        out, factor = gsd_jitter(out, rng, c.gsd_factor)
        out = value_jitter(out, rng, c.gain_std, c.noise_std)
        if c.max_atoms is not None:
            out = subsample_atoms(out, rng, c.max_atoms)
        return out, factor
