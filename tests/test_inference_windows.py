"""Sliding-window geometry and blending, without reading any file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.errors import WindowError
from atomizer.inference.predict import StripAccumulator, _first_row, _spread
from atomizer.inference.windows import SceneGeometry, window_grid


def geometry(width: int, height: int, gsd: float = 10.0) -> SceneGeometry:
    return SceneGeometry(
        crs=None,
        x0=1000.0,
        y0=5000.0,
        gsd_m=gsd,
        width=width,
        height=height,
        sensor_id="s",
        source_id=None,
        datetime=None,
        band_names=("b",),
    )


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(8, 90),
    height=st.integers(8, 90),
    size=st.integers(1, 8),
    step=st.integers(1, 8),
)
def test_windows_cover_every_pixel_and_stay_inside(width, height, size, step):
    geo = geometry(width, height)
    rows = window_grid(geo, chip_m=size * 10.0, stride_m=min(step, size) * 10.0)
    hits = np.zeros((height, width), int)
    for row in rows:
        assert len({w.row_off for w in row}) == 1
        for w in row:
            assert 0 <= w.col_off <= width - size and 0 <= w.row_off <= height - size
            hits[w.row_off : w.row_off + size, w.col_off : w.col_off + size] += 1
            xmin, ymin, xmax, ymax = w.bounds
            assert xmin == 1000.0 + w.col_off * 10 and ymax == 5000.0 - w.row_off * 10
            assert xmax - xmin == ymax - ymin == size * 10
    assert (hits > 0).all()


@pytest.mark.parametrize(
    "chip, stride, match",
    [
        (500.0, 100.0, "larger than the scene"),
        (40.0, 50.0, "stride"),
        (2.0, 2.0, "smaller than one pixel"),
    ],
)
def test_impossible_windows_are_refused(chip, stride, match):
    with pytest.raises(WindowError, match=match):
        window_grid(geometry(30, 20), chip_m=chip, stride_m=stride)


def blend(probs: list[np.ndarray], geo: SceneGeometry, chip_m: float, stride_m: float):
    """The blended map of one class-probability vector per window (row-major order)."""
    rows = window_grid(geo, chip_m=chip_m, stride_m=stride_m)
    h, w = geo.height, geo.width
    acc = StripAccumulator(len(probs[0]), int(chip_m / geo.gsd_m) * 2 + 2, w)
    acc.cover(*np.nonzero(np.ones((h, w), bool)))
    out = np.full((len(probs[0]), h, w), np.nan, np.float32)
    it = iter(probs)
    for i, row in enumerate(rows):
        for win in row:
            _spread(acc, win, next(it), geo, geo.gsd_m, h, w)
        until = h if i + 1 == len(rows) else _first_row(geo, rows[i + 1][0].bounds[3], geo.gsd_m)
        if until > acc.top:
            top, p, valid = acc.take(until)
            assert valid.all()
            out[:, top : top + p.shape[1]] = p
        acc.cover(*np.nonzero(np.ones((h, w), bool)))
    return out


def test_overlaps_are_weighted_averages_and_every_row_is_written_once():
    geo = geometry(12, 12)
    # 2 x 2 windows of 8 px every 4 px; window k predicts class k with certainty
    probs = [np.eye(4, dtype=np.float32)[k] for k in range(4)]
    out = blend(probs, geo, 80.0, 40.0)
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)
    assert out[0, 0, 0] == pytest.approx(1.0) and out[3, -1, -1] == pytest.approx(1.0)
    centre = out[:, 5:7, 5:7]  # covered by all four windows, symmetric about the scene centre
    np.testing.assert_allclose(centre.mean(axis=(1, 2)), 0.25, atol=1e-6)
    assert centre[0, 0, 0] > centre[0, 1, 1] and centre[3, 1, 1] > centre[3, 0, 0]  # nearer wins
    same = blend([np.array([0.2, 0.8], np.float32)] * 4, geo, 80.0, 40.0)
    np.testing.assert_allclose(same[1], 0.8, atol=1e-6)
