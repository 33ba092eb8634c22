"""Area-weighted aggregation to a coarser ground sampling distance.

A coarse pixel's value is the area-weighted mean of the fine pixels its footprint overlaps; the
weights are the overlap lengths of the pixel footprints along each axis (the 2-D overlap area is
their product), divided by the coarse pixel's size. For an integer factor ``k`` with the grids
aligned this is the plain mean of ``k x k`` blocks; for a non-integer ratio (20 m to 30 m) partial
pixels count by the fraction of their area inside the footprint.

Grids are centred: the coarse grid of ``floor(n / factor)`` pixels sits in the middle of the fine
grid, so the footprint centre (the origin of atom positions) does not move. Only whole coarse pixels
are made; a margin narrower than one coarse pixel is dropped evenly on both sides.
"""

from __future__ import annotations

import math

import numpy as np

from atomizer.errors import SimulationError

#: Relative tolerance when comparing GSDs (20.0 vs 19.9999999 m).
GSD_RTOL = 1e-6
#: A coarse pixel whose footprint is less than this fraction valid (finite) becomes no data.
MIN_VALID_FRACTION = 0.5


def output_size(n_in: int, factor: float) -> int:
    """How many whole coarse pixels of ``factor`` fine pixels fit in ``n_in`` fine pixels."""
    return int(math.floor(n_in / factor + GSD_RTOL))


def overlap_weights(start: float, factor: float, n_out: int) -> tuple[int, np.ndarray]:
    """Weights of coarse pixels ``[start + o*factor, start + (o+1)*factor)`` (fine-pixel units).

    Returns ``(first, A)``: ``A[o, i]`` is the fraction of coarse pixel ``o`` covered by fine pixel
    ``first + i``; every row sums to one.
    """
    if factor <= 0 or n_out <= 0:
        raise SimulationError(f"bad aggregation: factor {factor}, {n_out} output pixels")
    lo = start + np.arange(n_out, dtype=np.float64) * factor
    hi = lo + factor
    first = int(math.floor(start + GSD_RTOL))
    last = int(math.ceil(start + n_out * factor - GSD_RTOL))
    cells = np.arange(first, last, dtype=np.float64)
    overlap = np.minimum(hi[:, None], cells[None, :] + 1) - np.maximum(lo[:, None], cells[None, :])
    weights = np.clip(overlap, 0.0, None) / factor
    weights /= weights.sum(axis=1, keepdims=True)
    return first, weights


def overlap_matrix(n_in: int, factor: float, n_out: int | None = None) -> np.ndarray:
    """The ``(n_out, n_in)`` weight matrix of a centred coarse grid over ``n_in`` fine pixels."""
    if n_out is None:
        n_out = output_size(n_in, factor)
    if n_out < 1:
        raise SimulationError(
            f"{n_in} pixels are fewer than one output pixel {factor:g} times their size; "
            "choose a finer GSD or a larger input"
        )
    start = (n_in - n_out * factor) / 2.0
    first, weights = overlap_weights(start, factor, n_out)
    full = np.zeros((n_out, n_in), dtype=np.float64)
    lo, hi = max(first, 0), min(first + weights.shape[1], n_in)
    full[:, lo:hi] = weights[:, lo - first : hi - first]
    return full


def apply_weights(
    array: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, axes: tuple[int, int] = (0, 1)
) -> np.ndarray:
    """``rows @ array @ cols.T`` over the two spatial ``axes``; NaN-aware (see module docstring).

    Non-finite inputs are left out of each weighted mean; a coarse pixel less than
    :data:`MIN_VALID_FRACTION` valid becomes NaN. Returns float32.
    """
    a = np.moveaxis(np.asarray(array, dtype=np.float32), axes, (0, 1))
    r = rows.astype(np.float32)
    c = cols.astype(np.float32)
    finite = np.isfinite(a)
    if finite.all():
        out = np.tensordot(r, a, axes=(1, 0))
        out = np.moveaxis(np.tensordot(c, out, axes=(1, 1)), 0, 1)
    else:
        filled = np.where(finite, a, 0.0).astype(np.float32)
        num = np.moveaxis(np.tensordot(c, np.tensordot(r, filled, axes=(1, 0)), axes=(1, 1)), 0, 1)
        w = finite.astype(np.float32)
        den = np.moveaxis(np.tensordot(c, np.tensordot(r, w, axes=(1, 0)), axes=(1, 1)), 0, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den >= MIN_VALID_FRACTION, num / np.maximum(den, 1e-12), np.nan)
    return np.moveaxis(out.astype(np.float32, copy=False), (0, 1), axes)


def check_not_finer(source_gsd_m: float, target_gsd_m: float, what: str = "target") -> float:
    """The factor ``target / source``; refuses a target finer than the source."""
    if not target_gsd_m > 0:
        raise SimulationError(f"{what} GSD must be positive, got {target_gsd_m:g} m")
    factor = target_gsd_m / source_gsd_m
    if factor < 1.0 - GSD_RTOL:
        raise SimulationError(
            f"{what} GSD {target_gsd_m:g} m is finer than the source's {source_gsd_m:g} m; "
            "a simulation can only coarsen: ask for a GSD of at least the source's"
        )
    return max(factor, 1.0)


def aggregate(
    array: np.ndarray,
    source_gsd_m: float,
    target_gsd_m: float,
    *,
    axes: tuple[int, int] = (0, 1),
    what: str = "target",
) -> np.ndarray:
    """``array`` (spatial ``axes``) from ``source_gsd_m`` to the coarser ``target_gsd_m``.

    The output has ``floor(n * source / target)`` pixels along each spatial axis, centred on the
    input. Equal GSDs return a float32 copy unchanged.
    """
    factor = check_not_finer(source_gsd_m, target_gsd_m, what)
    array = np.asarray(array)
    if abs(factor - 1.0) <= GSD_RTOL:
        return array.astype(np.float32, copy=True)
    n_rows, n_cols = array.shape[axes[0]], array.shape[axes[1]]
    rows = overlap_matrix(n_rows, factor)
    cols = overlap_matrix(n_cols, factor)
    return apply_weights(array, rows, cols, axes=axes)
