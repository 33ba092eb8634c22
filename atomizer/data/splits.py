"""Train / validation / test splits: stratified random (per item) and spatial blocks (per pixel).

Spatial blocks: the scene is cut into a grid of blocks and each block goes to one split, so the
splits are disjoint regions. A patch belongs to a split only when every pixel its footprint touches
lies in that split's region (:class:`RegionIndex`), hence no pixel of a test patch lies in any
training patch. Among ``n_trials`` random block assignments (all drawn from ``seed``) the one that
keeps the most classes present in every split, then the one closest to the requested fractions,
wins; the result depends on the seed only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atomizer.data.base import SPLITS
from atomizer.errors import DatasetError

#: Default fractions of (train, validation, test).
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
#: Block assignments tried by :func:`block_regions`.
DEFAULT_TRIALS = 128


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (len(SPLITS),) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise DatasetError(
            f"split fractions must be {len(SPLITS)} non-negative numbers summing to 1 "
            f"({', '.join(SPLITS)}), got {list(fractions)}"
        )
    return f


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float] = DEFAULT_FRACTIONS, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Item indices per split, class by class in the given fractions (sorted, disjoint, complete).

    ``labels`` are class indices ``(N,)`` or multi-hot ``(N, K)`` (stratified by the rarest
    positive class of each item).
    """
    f = _check_fractions(fractions)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        freq = labels.sum(axis=0)
        rank = np.where(labels > 0, freq[None, :], np.inf)
        strata = np.where(labels.any(axis=1), np.argmin(rank, axis=1), -1)
    else:
        strata = labels
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for value in np.unique(strata):
        idx = np.nonzero(strata == value)[0]
        idx = idx[rng.permutation(idx.size)]
        bounds = np.round(np.cumsum(f)[:-1] * idx.size).astype(int)
        for name, part in zip(SPLITS, np.split(idx, bounds)):
            out[name].append(part)
    return {
        s: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        for s, parts in out.items()
    }


def block_regions(
    shape: tuple[int, int],
    *,
    blocks: tuple[int, int] = (4, 4),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    class_map: np.ndarray | None = None,
    margin_px: int = 0,
    n_trials: int = DEFAULT_TRIALS,
) -> np.ndarray:
    """A ``shape`` int8 map of split indices (0 train, 1 validation, 2 test) made of blocks.

    ``class_map`` (0 = unlabelled) steers the choice among ``n_trials`` random assignments towards
    every class in every split and labelled-pixel fractions close to ``fractions``, counting only
    labelled pixels whose ``(2 * margin_px + 1)``-pixel square lies inside their own region (the
    patches that will fit).
    """
    f = _check_fractions(fractions)
    h, w = shape
    by, bx = blocks
    if by < 1 or bx < 1 or by > h or bx > w:
        raise DatasetError(f"cannot cut a {h}x{w} scene into {by}x{bx} blocks")
    n_blocks = by * bx
    if n_blocks < len(SPLITS):
        raise DatasetError(f"{n_blocks} blocks cannot make {len(SPLITS)} splits; use more blocks")
    row_edges = np.round(np.linspace(0, h, by + 1)).astype(int)
    col_edges = np.round(np.linspace(0, w, bx + 1)).astype(int)
    block_of = (np.searchsorted(row_edges, np.arange(h), side="right")[:, None] - 1) * bx + (
        np.searchsorted(col_edges, np.arange(w), side="right")[None, :] - 1
    )
    counts = np.maximum(np.round(f * n_blocks).astype(int), 1)
    counts[0] = n_blocks - counts[1:].sum()
    base = np.repeat(np.arange(len(SPLITS)), counts)
    rng = np.random.default_rng(seed)
    best, best_score = None, None
    if class_map is not None:
        rows, cols = np.nonzero(class_map > 0)
        classes = class_map[rows, cols]
    for _ in range(max(1, n_trials)):
        assign = base[rng.permutation(n_blocks)]
        regions = assign[block_of]
        if class_map is None:
            return regions.astype(np.int8)
        index = RegionIndex(regions)
        present, kept = 0, np.zeros(len(SPLITS))
        for s in range(len(SPLITS)):
            fits = index.inside(
                s, rows - margin_px, rows + margin_px + 1, cols - margin_px, cols + margin_px + 1
            )
            present += np.unique(classes[fits]).size
            kept[s] = fits.sum()
        share = kept / max(kept.sum(), 1.0)
        score = (present, -float(np.abs(share - f).sum()))
        if best_score is None or score > best_score:
            best, best_score = regions, score
    return best.astype(np.int8)


@dataclass(frozen=True)
class RegionIndex:
    """Answers "does this window lie entirely in split ``s``?" in O(1) (summed-area tables)."""

    regions: np.ndarray  # (H, W) split index per pixel

    def __post_init__(self) -> None:
        tables = []
        for s in range(len(SPLITS)):
            m = (self.regions == s).astype(np.int32)
            table = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int32)
            table[1:, 1:] = m.cumsum(0).cumsum(1)
            tables.append(table)
        object.__setattr__(self, "_tables", tuple(tables))

    def inside(
        self, split: int, r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray
    ) -> np.ndarray:
        """True where rows ``[r0, r1)`` x cols ``[c0, c1)`` lie in the scene, all in ``split``."""
        h, w = self.regions.shape
        r0, r1, c0, c1 = (np.asarray(a, dtype=np.int64) for a in (r0, r1, c0, c1))
        ok = (r0 >= 0) & (c0 >= 0) & (r1 <= h) & (c1 <= w) & (r1 > r0) & (c1 > c0)
        a, b = np.clip(r0, 0, h), np.clip(r1, 0, h)
        c, d = np.clip(c0, 0, w), np.clip(c1, 0, w)
        t = self._tables[split]  # type: ignore[attr-defined]
        total = t[b, d] - t[a, d] - t[b, c] + t[a, c]
        return ok & (total == (b - a) * (d - c))
