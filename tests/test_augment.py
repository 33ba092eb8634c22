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
        n = round(extent / b.gsd_m)
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


#: The 8 symmetries of the square about the centre, written out independently of ``dihedral``.
SQUARE_SYMMETRIES = {
    "identity": lambda x, y: (x, y),
    "rot90": lambda x, y: (-y, x),
    "rot180": lambda x, y: (-x, -y),
    "rot270": lambda x, y: (y, -x),
    "mirror_x": lambda x, y: (-x, y),
    "mirror_y": lambda x, y: (x, -y),
    "transpose": lambda x, y: (y, x),
    "anti_transpose": lambda x, y: (-y, -x),
}


def _matching_symmetries(before: AtomSet, after: AtomSet) -> list[str]:
    """The square symmetries that map every atom's (x, y) in ``before`` onto the same atom in ``after``."""
    x, y = before.x.astype(np.float64), before.y.astype(np.float64)
    scale = max(1.0, float(np.abs(np.concatenate([x, y])).max(initial=0.0)))
    found = []
    for name, sym in SQUARE_SYMMETRIES.items():
        sx, sy = sym(x, y)
        if np.allclose(after.x, sx, rtol=0, atol=1e-6 * scale) and np.allclose(
            after.y, sy, rtol=0, atol=1e-6 * scale
        ):
            found.append(name)
    return found


@settings(max_examples=40, deadline=None)
@given(ats.atom_sets(max_atoms=40), seeds)
def test_flip_rotate_is_one_symmetry_of_the_square_atom_by_atom(atoms: AtomSet, seed: int) -> None:
    """Order is kept: values and bands are unchanged element-wise, and one dihedral map moves every atom."""
    out = flip_rotate(atoms, np.random.default_rng(seed))
    assert len(out) == len(atoms)
    np.testing.assert_array_equal(out.value, atoms.value)
    np.testing.assert_array_equal(out.band, atoms.band)
    assert out.bands == atoms.bands and out.scene == atoms.scene
    assert _matching_symmetries(atoms, out), "no symmetry of the square maps the input positions to the output"


def test_flip_rotate_is_not_a_scramble_and_draws_all_eight_symmetries() -> None:
    """On an asymmetric layout exactly one symmetry matches each draw, and 64 draws hit all 8."""
    atoms = grid_atoms(size=4, gsds=(10.0,))
    # a rectangle-free, chiral layout: only the identity maps it onto itself
    atoms = atoms.take(np.array([0, 1, 2, 4, 9]))
    seen = set()
    for seed in range(64):
        out = flip_rotate(atoms, np.random.default_rng(seed))
        names = _matching_symmetries(atoms, out)
        assert len(names) == 1, names
        seen.update(names)
    assert seen == set(SQUARE_SYMMETRIES)
    # a scramble that keeps values but permutes positions is told apart
    scrambled = AtomSet(value=atoms.value, band=atoms.band, x=np.roll(atoms.x, 1), y=np.roll(atoms.y, 1),
                        bands=atoms.bands, scene=atoms.scene)
    assert not _matching_symmetries(atoms, scrambled)


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
