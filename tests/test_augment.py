"""Augmentation invariants: atom counts, position ranges, GSD scaling, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.pretrain.augment import (
    AugmentConfig,
    Augmenter,
    band_dropout,
    dihedral,
    flip_rotate,
    gsd_jitter,
    random_crop,
    subsample_atoms,
    value_jitter,
)
from atomizer.sensors.spec import Band
from atomizer.testing import strategies as ats

seeds = st.integers(0, 2**32 - 1)


def grid_atoms(size: int = 6, gsds=(10.0, 20.0)) -> AtomSet:
    """Square grids centred on 0, one per band, as readers make them (values = index)."""
    bands = [
        Band(name=f"B{i}", center_wavelength_nm=500.0 + 100 * i, fwhm_nm=20.0, gsd_m=g)
        for i, g in enumerate(gsds)
    ]
    parts = []
    extent = size * gsds[0]
    for i, b in enumerate(bands):
        n = int(round(extent / b.gsd_m))
        c = (np.arange(n) + 0.5 - n / 2) * b.gsd_m
        xx, yy = np.meshgrid(c, c)
        parts.append((np.full(xx.size, i), xx.ravel(), yy.ravel()))
    band = np.concatenate([p[0] for p in parts])
    return AtomSet(
        value=np.arange(len(band), dtype=float),
        band=band,
        x=np.concatenate([p[1] for p in parts]),
        y=np.concatenate([p[2] for p in parts]),
        bands=tuple(bands),
        scene=SceneMeta(sensor_id="test"),
    )


def _positions(a: AtomSet) -> set[tuple[int, float, float]]:
    return {
        (int(b), round(float(x), 3), round(float(y), 3))
        for b, x, y in zip(a.band, a.x, a.y, strict=True)
    }


@settings(max_examples=40, deadline=None)
@given(ats.atom_sets(max_atoms=40), seeds)
def test_flip_rotate_keeps_every_atom_in_range(atoms: AtomSet, seed: int) -> None:
    out = flip_rotate(atoms, np.random.default_rng(seed))
    assert len(out) == len(atoms)
    np.testing.assert_array_equal(np.sort(out.value), np.sort(atoms.value))
    if len(atoms):
        r_in = np.maximum(np.abs(atoms.x), np.abs(atoms.y)).max()
        r_out = np.maximum(np.abs(out.x), np.abs(out.y)).max()
        assert r_out == pytest.approx(r_in, rel=1e-6)
        # distances to the centre are preserved atom by atom
        np.testing.assert_allclose(np.hypot(out.x, out.y), np.hypot(atoms.x, atoms.y), rtol=1e-6)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("mirror", [False, True])
def test_dihedral_maps_a_centred_grid_onto_itself(k: int, mirror: bool) -> None:
    atoms = grid_atoms()
    x, y = dihedral(atoms.x, atoms.y, k, mirror)
    moved = AtomSet(
        value=atoms.value, band=atoms.band, x=x, y=y, bands=atoms.bands, scene=atoms.scene
    )
    assert _positions(moved) == _positions(atoms)
    x4, y4 = atoms.x, atoms.y
    for _ in range(4):
        x4, y4 = dihedral(x4, y4, 1, False)
    np.testing.assert_allclose(x4, atoms.x)
    np.testing.assert_allclose(y4, atoms.y)


@settings(max_examples=40, deadline=None)
@given(seeds, st.floats(0.2, 1.0))
def test_random_crop_stays_inside_its_window(seed: int, low: float) -> None:
    atoms = grid_atoms(size=8)
    out = random_crop(atoms, np.random.default_rng(seed), (low, 1.0))
    assert 0 < len(out) <= len(atoms)
    half = 8 * 10.0 / 2
    assert np.abs(out.x).max() <= half and np.abs(out.y).max() <= half
    # the kept atoms are original atoms: same values, same relative layout
    assert set(out.value.tolist()) <= set(atoms.value.tolist())
    i = np.searchsorted(atoms.value, out.value)
    dx = out.x - atoms.x[i]
    dy = out.y - atoms.y[i]
    np.testing.assert_allclose(dx, dx[0], atol=1e-3)
    np.testing.assert_allclose(dy, dy[0], atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(seeds, st.floats(0.0, 0.95))
def test_band_dropout_keeps_a_band_and_its_atoms(seed: int, p: float) -> None:
    atoms = grid_atoms(gsds=(10.0, 20.0, 60.0))
    out = band_dropout(atoms, np.random.default_rng(seed), p)
    assert 1 <= out.n_bands <= atoms.n_bands
    for name in out.band_names:
        assert (
            out.band_counts()[out.band_names.index(name)]
            == atoms.band_counts()[atoms.band_names.index(name)]
        )


@settings(max_examples=30, deadline=None)
@given(seeds, st.floats(0.25, 1.0), st.floats(1.0, 4.0))
def test_gsd_jitter_scales_positions_and_band_gsd_alike(seed: int, lo: float, hi: float) -> None:
    atoms = grid_atoms()
    out, f = gsd_jitter(atoms, np.random.default_rng(seed), (lo, hi))
    assert lo * (1 - 1e-9) <= f <= hi * (1 + 1e-9)
    np.testing.assert_allclose(out.x, atoms.x * f, rtol=1e-5)
    np.testing.assert_allclose(out.gsd_m, atoms.gsd_m * f, rtol=1e-9)
    assert len(out) == len(atoms)


def test_value_jitter_and_subsample() -> None:
    atoms = grid_atoms()
    rng = np.random.default_rng(0)
    out = value_jitter(atoms, rng, gain_std=0.1, noise_std=0.0)
    ratio = out.value[atoms.value > 0] / atoms.value[atoms.value > 0]
    for b in range(atoms.n_bands):  # one gain per band
        r = ratio[atoms.band[atoms.value > 0] == b]
        np.testing.assert_allclose(r, r[0], rtol=1e-5)
    assert value_jitter(atoms, rng, 0.0, 0.0) is atoms
    sub = subsample_atoms(atoms, rng, 10)
    assert len(sub) == 10 and set(sub.value.tolist()) <= set(atoms.value.tolist())


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_augmenter_is_deterministic_given_a_seed(seed: int) -> None:
    atoms = grid_atoms(gsds=(10.0, 20.0, 60.0))
    aug = Augmenter(AugmentConfig(max_atoms=30))
    a, fa = aug(atoms, np.random.default_rng(seed))
    b, fb = aug(atoms, np.random.default_rng(seed))
    assert fa == fb and a.same_atoms(b)
    assert 1 <= len(a) <= 30
    c, _ = aug(atoms, np.random.default_rng(seed + 1))
    d, _ = aug(atoms, np.random.default_rng(seed + 2))
    assert not (a.same_atoms(c) and a.same_atoms(d))


def test_augment_config_is_strict() -> None:
    with pytest.raises(ValidationError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 0.5))
    with pytest.raises(ValidationError):
        AugmentConfig(colour_jitter=0.4)
    empty = grid_atoms().take(np.zeros(0, dtype=int))
    out, _ = Augmenter()(empty, np.random.default_rng(0))
    assert len(out) == 0
