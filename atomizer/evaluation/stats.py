"""Mean +/- standard deviation of a score over seeds: the one definition every report uses.

The standard deviation is the sample one (``ddof = 1``, Bessel's correction), as the experiment
READMEs state; a single seed has a standard deviation of 0. Non-finite scores (a metric undefined
on some run) are left out, and ``n`` says how many values remained.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Delta degrees of freedom of the standard deviation over seeds (1: the sample std).
SEED_STD_DDOF = 1


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, sample std, n)`` of the finite ``values``; ``(nan, nan, 0)`` when there are none."""
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    std = float(arr.std(ddof=SEED_STD_DDOF)) if arr.size > SEED_STD_DDOF else 0.0
    return float(arr.mean()), std, int(arr.size)
