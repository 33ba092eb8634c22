"""Per-band value statistics that merge exactly across chips, shards and workers.

Each band keeps its count, its sum and sum of squares EXACTLY (a float32 value is an integer
mantissa times a power of two: mantissas and squared mantissas are summed as integers per exponent),
and a histogram over the top 16 bits of each float32 value (sign, exponent and 7 mantissa bits: the
bfloat16 code). Everything adds as integers, so merging is exact whatever the order of the parts and
however many workers made them; mean and std are computed from the exact sums. Percentiles read from
the merged histogram are the centre of the bin holding that rank, within 2^-8 (0.4 %), relative
(0 where that bin holds zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

#: Percentiles reported per band.
PERCENTILES = (2.0, 98.0)
CODES = 1 << 16
#: Float32 exponents (the keys of the exact sums).
EXPONENTS = 1 << 8
#: Largest (bands x keys) table counted densely (np.bincount) rather than by sorting (np.unique).
DENSE_KEYS = 1 << 22


#: float32 value = mantissa * 2 ** (exponent - EXP_BIAS) (mantissa with its implicit bit).
EXP_BIAS = 150
_LO_BITS = 24


def _add(into: dict[int, int], part: Mapping[int, int]) -> None:
    for k, n in part.items():
        into[k] = into.get(k, 0) + n


@dataclass
class BandStats:
    count: int = 0
    sums: dict[int, int] = field(default_factory=dict)  # exponent -> sum of signed mantissas
    squares: dict[int, int] = field(default_factory=dict)  # exponent -> sum of squared mantissas
    hist: dict[int, int] = field(default_factory=dict)  # bfloat16 code -> count

    def merge(self, other: BandStats) -> None:
        self.count += other.count
        _add(self.sums, other.sums)
        _add(self.squares, other.squares)
        _add(self.hist, other.hist)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, **{k: sorted(getattr(self, k).items())
                                        for k in ("sums", "squares", "hist")}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BandStats:
        parts = {k: {int(c): int(n) for c, n in data[k]} for k in ("sums", "squares", "hist")}
        return cls(int(data["count"]), **parts)

    @property
    def exact_sum(self) -> Fraction:
        return sum((Fraction(n) * Fraction(2) ** (e - EXP_BIAS) for e, n in self.sums.items()), Fraction(0))

    @property
    def exact_sumsq(self) -> Fraction:
        return sum((Fraction(n) * Fraction(2) ** (2 * (e - EXP_BIAS)) for e, n in self.squares.items()),
                   Fraction(0))

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        codes = np.fromiter(self.hist.keys(), dtype=np.uint32, count=len(self.hist))
        counts = np.fromiter(self.hist.values(), dtype=np.int64, count=len(self.hist))
        order = np.argsort((codes << 16).view(np.float32), kind="stable")
        rank = q / 100.0 * (self.count - 1)
        k = int(np.searchsorted(np.cumsum(counts[order]), rank, side="right"))
        return _code_value(int(codes[order[min(k, codes.size - 1)]]), centre=True)

    def summary(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0}
        mean = self.exact_sum / self.count
        var = max(self.exact_sumsq / self.count - mean * mean, Fraction(0))
        out: dict[str, Any] = {"count": self.count, "mean": float(mean), "std": math.sqrt(float(var))}
        for q in PERCENTILES:
            out[f"p{q:g}"] = self.percentile(q)
        return out


def _code_value(code: int, centre: bool = False) -> float:
    """The value of a bfloat16 code's bin: its lower edge, or with ``centre`` its centre. The
    bins of zero and of subnormals (exponent bits 0) give their edge: 0 stays 0, not 5e-41."""
    normal = (code >> 7) & 0xFF != 0
    bits = (code << 16) | (0x8000 if centre and normal else 0)
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0]) + 0.0  # -0 -> 0


def atom_stats(value: np.ndarray, band: np.ndarray, names: list[str]) -> dict[str, BandStats]:
    """Statistics of one chip's atoms, by band name."""
    out: dict[str, BandStats] = {}
    if value.size == 0:
        return out
    b = band.astype(np.int64)
    counts = np.bincount(b, minlength=len(names))
    bits = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32).astype(np.int64)
    (hists,) = _grouped(b, bits >> 16, CODES, [])
    exp = (bits >> 23) & 0xFF
    mant = (bits & 0x7FFFFF) | np.where(exp > 0, 0x800000, 0)
    exp = np.maximum(exp, 1)  # subnormals: exponent 1 without the implicit bit
    sq = mant * mant  # < 2**48: exact in int64, summed as two 24-bit halves
    sums, hi, lo = _grouped(b, exp, EXPONENTS, [np.where(bits >> 31, -mant, mant), sq >> _LO_BITS,
                                                sq & ((1 << _LO_BITS) - 1)])
    for i, name in enumerate(names):
        if counts[i]:
            squares = {e: (hi[i].get(e, 0) << _LO_BITS) + lo[i].get(e, 0) for e in set(hi[i]) | set(lo[i])}
            out[name] = BandStats(int(counts[i]), sums.get(i, {}), squares, hists.get(i, {}))
    return out


def _grouped(band: np.ndarray, key: np.ndarray, n_keys: int,
             weights: list[np.ndarray]) -> list[dict[int, dict[int, int]]]:
    """band -> key -> count of atoms (``weights`` empty), or for each of ``weights`` band -> key ->
    its exact integer sum over the atoms (keys present, even where a sum is 0). Keys lie in
    ``[0, n_keys)``.

    Weights are below 2**24 in magnitude, so float64 sums of fewer than 2**29 of them are exact.
    """
    combined = band * n_keys + key
    size = (int(band.max()) + 1) * n_keys
    if size <= DENSE_KEYS:  # few bands: count into a dense table
        counts = np.bincount(combined, minlength=size)
        uniq = np.flatnonzero(counts)
        tables = [np.bincount(combined, weights=w.astype(np.float64), minlength=size)[uniq]
                  for w in weights] or [counts[uniq]]
    else:
        uniq, inverse = np.unique(combined, return_inverse=True)
        tables = [np.bincount(inverse, weights=w.astype(np.float64)) for w in weights] or \
            [np.bincount(inverse)]
    keys = [divmod(k, n_keys) for k in uniq.tolist()]
    out = []
    for totals in tables:
        grouped: dict[int, dict[int, int]] = {}
        for (bi, ki), n in zip(keys, totals.tolist()):
            grouped.setdefault(bi, {})[ki] = int(n)
        out.append(grouped)
    return out


def merge_into(total: dict[str, dict[str, BandStats]], sensor: str,
               part: Mapping[str, BandStats]) -> None:
    """Add ``part`` (band -> stats of ``sensor``) to ``total`` (sensor -> band -> stats)."""
    bands = total.setdefault(sensor, {})
    for name, st in part.items():
        bands.setdefault(name, BandStats()).merge(st)


def stats_json(total: Mapping[str, Mapping[str, BandStats]]) -> dict[str, Any]:
    """What ``stats.json`` holds: per sensor, per band, count / mean / std / p2 / p98."""
    return {"sensors": {s: {b: st.summary() for b, st in sorted(bands.items())}
                        for s, bands in sorted(total.items())},
            "percentiles": "bin centres of a histogram of bfloat16 codes (within 0.4 %, relative)"}


def merged(parts: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, BandStats]]:
    """Merge JSON stats parts ``(sensor, {band: BandStats JSON})``."""
    total: dict[str, dict[str, BandStats]] = {}
    for sensor, part in parts:
        merge_into(total, sensor, {b: BandStats.from_json(d) for b, d in part.items()})
    return total
