"""Band statistics of dataset builds: exact sums whatever the values, the same from every path."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from atomizer.datasets import stats as S

FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@st.composite
def atoms(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[str]]:
    n_bands = draw(st.integers(1, 5))
    n = draw(st.integers(1, 60))
    value = draw(arrays(np.float32, n, elements=FLOATS))
    band = draw(arrays(np.int16, n, elements=st.integers(0, n_bands - 1)))
    return value, band, [f"b{i}" for i in range(n_bands)]


def _as_json(parts: dict[str, S.BandStats]) -> dict[str, object]:
    return {name: st_.to_json() for name, st_ in sorted(parts.items())}


@settings(max_examples=60, deadline=None)
@given(atoms(), st.integers(0, 60))
def test_sums_are_exact_and_merge_in_any_split(case, cut):
    value, band, names = case
    whole = S.atom_stats(value, band, names)
    for i, name in enumerate(names):
        picked = value[band == i]
        if not picked.size:
            assert name not in whole
            continue
        got = whole[name]
        assert got.count == picked.size == sum(got.hist.values())
        assert got.exact_sum == sum((Fraction(float(v)) for v in picked), Fraction(0))
        assert got.exact_sumsq == sum((Fraction(float(v)) ** 2 for v in picked), Fraction(0))
    cut = min(cut, value.size)
    merged: dict[str, S.BandStats] = {}
    for lo, hi in ((0, cut), (cut, value.size)):
        for name, part in S.atom_stats(value[lo:hi], band[lo:hi], names).items():
            merged.setdefault(name, S.BandStats()).merge(part)
    assert _as_json(merged) == _as_json(whole)


@settings(max_examples=30, deadline=None)
@given(atoms())
def test_dense_and_sorted_counting_agree(case):
    value, band, names = case
    dense = _as_json(S.atom_stats(value, band, names))
    saved = S.DENSE_KEYS
    S.DENSE_KEYS = 0  # every table counted by sorting (what many-band sensors take)
    try:
        assert _as_json(S.atom_stats(value, band, names)) == dense
    finally:
        S.DENSE_KEYS = saved


def test_a_sum_that_cancels_keeps_its_key():
    value = np.array([1.5, -1.5], dtype=np.float32)
    got = S.atom_stats(value, np.zeros(2, dtype=np.int16), ["b0"])["b0"]
    assert got.sums == {127: 0} and got.exact_sum == 0
    assert got.summary()["mean"] == 0.0 and got.summary()["std"] == pytest.approx(1.5)


def test_percentiles_are_bin_centres_and_zero_stays_zero():
    value = np.array([0.0] * 10 + [1.0] * 80 + [-0.0] * 10, dtype=np.float32)
    got = S.atom_stats(value, np.zeros(value.size, dtype=np.int16), ["b0"])["b0"].summary()
    assert got["p2"] == 0.0 and math.copysign(1, got["p2"]) == 1
    assert got["p98"] == pytest.approx(1.0, rel=2**-8)


@pytest.mark.parametrize("size", [8, 256])  # 8 x 8: float conversion; 256 x 256: DN lookup table
def test_values_past_float32_are_dropped_on_both_conversion_paths(size):
    """DN * scale past float32's range is no value: dropped as non-finite, never an inf atom."""
    from types import SimpleNamespace

    from atomizer.readers.pixels import _reduce

    plane = (np.arange(size * size) * 37 % 1000 + 1).astype(np.uint16).reshape(size, size)
    plan = SimpleNamespace(nodata=(), scale=1e36, offset=0.0)  # DN >= 341 overflows float32
    reading = SimpleNamespace(min=None, max=None, n_atoms=0, n_nodata=0, n_nonfinite=0)
    piece = _reduce(plane, None, plan, reading)
    want = int(np.count_nonzero(plane.astype(np.float64) * 1e36 > np.finfo(np.float32).max))
    assert want > 0 and reading.n_nonfinite == want
    assert piece.values.size == plane.size - want == reading.n_atoms
    values = piece.lut[piece.values] if piece.lut is not None else piece.values
    assert (piece.lut is not None) == (size == 256)
    assert np.isfinite(values).all() and np.isfinite(reading.max)
    kept = np.unpackbits(piece.packed_mask, count=plane.size).astype(bool)
    assert kept.sum() == piece.values.size and not kept[(plane.ravel() >= 341)].any()
