"""Hypothesis properties of the encoders and the tokenizer (issue 3, part 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import collate_atoms
from atomizer.encoders import (
    LocationEncoder,
    PositionEncoder,
    SpectralEncoder,
    TimeEncoder,
    Tokenizer,
    max_factorisation_error,
    pixel_center_m,
    project_parts,
)
from atomizer.plugins.host import PluginHost
from atomizer.sensors.spec import SpectralResponse
from atomizer.testing import strategies as ats

PROPERTY = settings(max_examples=50, deadline=None)
ALL_PARTS = {
    "value": {"name": "fourier_value"},
    "position": {"name": "position"},
    "spectral": {"name": "spectral"},
    "time": {"name": "time"},
    "location": {"name": "location"},
}
#: float32 vs float64: positions reach |x| / G * pi * f_max ~ 1e3 rad, where float32 phases are
#: good to about 1e-4; everything else agrees to about 1e-6.
FLOAT32_ATOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    """Tiny tensors: on a shared, busy machine torch's intra-op threads only add spin-wait
    overhead (50 ms per small matmul measured with 2 threads vs 6 us with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_config(ALL_PARTS, host=PluginHost(load_entrypoints=False, environ={}))


@pytest.fixture(scope="module")
def spectral() -> SpectralEncoder:
    return SpectralEncoder()


def _min_sigma_nm(encoder: SpectralEncoder) -> float:
    return float(encoder.sigma_nm.min())


# --- position ----------------------------------------------------------------------------------------
@PROPERTY
@given(
    width=st.integers(1, 64), gsd=st.floats(0.3, 500.0), factor=st.integers(1, 6),
    reference=st.floats(10.0, 5000.0),
)
def test_positional_encoding_is_gsd_equivariant(width, gsd, factor, reference):
    """The same extent at GSD g and g / k spans the same normalised range, point for point."""
    enc = PositionEncoder(num_bands=8, max_freq=16.0, reference_m=reference)
    fine_width, fine_gsd = width * factor, gsd / factor
    edges = torch.tensor([-0.5, width - 0.5], dtype=torch.float64)
    fine_edges = torch.tensor([-0.5, fine_width - 0.5], dtype=torch.float64)
    coarse_range = enc.scale(pixel_center_m(edges, width, gsd))
    fine_range = enc.scale(pixel_center_m(fine_edges, fine_width, fine_gsd))
    assert torch.allclose(coarse_range, fine_range, rtol=1e-12, atol=1e-12)
    assert coarse_range[1] == pytest.approx(width * gsd / 2 / reference)
    # every coarse pixel centre is a point of the fine grid's frame with the same features
    i = torch.arange(width, dtype=torch.float64)
    coarse = enc.encode_1d(pixel_center_m(i, width, gsd))
    fine = enc.encode_1d(pixel_center_m(i * factor + (factor - 1) / 2, fine_width, fine_gsd))
    assert torch.allclose(coarse, fine, atol=1e-9)


@PROPERTY
@given(atoms=ats.atom_sets(max_atoms=24), scale=st.sampled_from([0.5, 2.0, 4.0]))
def test_positions_enter_only_through_metres(tokenizer, atoms, scale):
    """Changing the bands' GSD without moving the atoms leaves the positional part unchanged."""
    regridded = AtomSet(
        value=atoms.value, band=atoms.band, x=atoms.x, y=atoms.y, scene=atoms.scene,
        bands=tuple(b.model_copy(update={"gsd_m": b.gsd_m * scale}) for b in atoms.bands),
    )
    assert torch.equal(tokenizer.tokens(atoms), tokenizer.tokens(regridded))


# --- spectral ----------------------------------------------------------------------------------------
@PROPERTY
@given(band=ats.bands(with_response=None))
def test_spectral_encodings_have_unit_norm(spectral, band):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        row = spectral([band], dtype=dtype)[0]
        assert row.dtype == dtype
        assert abs(float(row.norm()) - 1.0) < tol
        assert bool((row >= 0).all())


@PROPERTY
@given(
    center=st.floats(420.0, 14000.0), rel_width=st.floats(0.002, 0.3),
    d_center=st.floats(-2.0, 2.0), d_width_rel=st.floats(-0.5, 0.5),
)
def test_spectral_encoding_is_lipschitz_in_centre_and_width(spectral, center, rel_width, d_center, d_width_rel):
    """||phi(c + dc, w) - phi(c, w)|| <= |dc| / sigma_min; ||phi(c, w + dw) - phi(c, w)|| <= |dw| / (2 sigma_min)."""
    width = center * rel_width
    d_width = width * d_width_rel
    c = torch.tensor([center, center + d_center, center], dtype=torch.float64)
    w = torch.tensor([width, width, width + d_width], dtype=torch.float64)
    phi = spectral.encode(c, w)
    bound = 1.0 / _min_sigma_nm(spectral)
    assert float((phi[1] - phi[0]).norm()) <= bound * abs(d_center) + 1e-12
    assert float((phi[2] - phi[0]).norm()) <= 0.5 * bound * abs(d_width) + 1e-12


@PROPERTY
@given(band=ats.bands(with_response=True), factor=st.floats(0.01, 100.0), eps=st.floats(-1e-3, 1e-3))
def test_spectral_response_scale_is_irrelevant_and_small_changes_are_small(spectral, band, factor, eps):
    r = band.response
    scaled = band.model_copy(update={"response": SpectralResponse(
        wavelength_nm=r.wavelength_nm, value=[v * factor for v in r.value])})
    nudged_values = [max(0.0, v + eps) for v in r.value]
    assume(max(nudged_values) > 0)
    nudged = band.model_copy(update={"response": SpectralResponse(
        wavelength_nm=r.wavelength_nm, value=nudged_values)})
    out = spectral([band, scaled, nudged], dtype=torch.float64)
    assert torch.allclose(out[0], out[1], atol=1e-12)
    # a relative response change of |eps| / max(r) moves the unit vector by at most ~2x that
    assert float((out[2] - out[0]).norm()) <= 2 * abs(eps) / max(r.value) * len(r.value) + 1e-9


@PROPERTY
@given(
    specs=st.tuples(ats.sensor_specs(max_bands=4), ats.sensor_specs(max_bands=4)),
    shared=ats.bands(with_response=None), gsds=st.tuples(st.floats(1.0, 100.0), st.floats(1.0, 100.0)),
    where=st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_identical_bands_of_two_sensors_encode_identically(tokenizer, specs, shared, gsds, where):
    """The same band physics in two sensors (other name, GSD, neighbours) gives the same row."""
    rows = []
    for spec, gsd, pos in zip(specs, gsds, where):
        name = "shared" if "shared" not in spec.band_names else "shared_"
        table = list(spec.bands)
        table.insert(min(pos, len(table)), shared.model_copy(update={"name": name, "gsd_m": gsd}))
        rows.append(tokenizer.encoder("spectral")(table)[min(pos, len(spec.bands))])
    assert torch.equal(rows[0], rows[1])
    fresh = SpectralEncoder()([shared])[0]  # and an uncached encoder agrees
    assert torch.equal(rows[0], fresh)


# --- tokenizer ---------------------------------------------------------------------------------------
@PROPERTY
@given(atoms=ats.atom_sets(max_atoms=32), perm_seed=st.integers(0, 2**32 - 1))
def test_tokens_of_permuted_atoms_are_the_permuted_rows(tokenizer, atoms, perm_seed):
    perm = np.random.default_rng(perm_seed).permutation(len(atoms))
    assert torch.allclose(tokenizer.tokens(atoms.take(perm)), tokenizer.tokens(atoms)[perm], atol=1e-6, rtol=0)


@PROPERTY
@given(atoms=ats.atom_sets(max_atoms=32), perm_seed=st.integers(0, 2**32 - 1))
def test_tokens_do_not_depend_on_the_order_of_the_band_table(tokenizer, atoms, perm_seed):
    names = atoms.band_names
    order = list(np.random.default_rng(perm_seed).permutation(len(names)))
    shuffled = atoms.select_bands([names[i] for i in order])
    assert torch.allclose(tokenizer.tokens(shuffled), tokenizer.tokens(atoms), atol=1e-6, rtol=0)


@PROPERTY
@given(atoms=ats.atom_sets(max_atoms=32))
def test_encoders_are_deterministic_and_agree_across_float_widths(tokenizer, atoms):
    first = tokenizer.tokens(atoms)
    assert torch.equal(first, tokenizer.tokens(atoms))
    fresh = Tokenizer.from_config(ALL_PARTS, host=PluginHost(load_entrypoints=False, environ={}))
    assert torch.equal(first, fresh.tokens(atoms))
    double = tokenizer.tokens(atoms, dtype=torch.float64)
    assert double.dtype == torch.float64
    assert torch.allclose(first.double(), double, atol=FLOAT32_ATOL, rtol=0)
    assert torch.isfinite(first).all()


@PROPERTY
@given(sets=st.lists(ats.atom_sets(max_atoms=24), min_size=1, max_size=3))
def test_tokens_row_i_equals_the_assembled_parts_of_atom_i(tokenizer, sets):
    batch = collate_atoms(sets)
    parts = tokenizer.parts(batch)
    full = parts.assemble()
    assert full.shape == (len(sets), batch.value.shape[1], tokenizer.dim)
    weight = torch.randn(8, tokenizer.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    projected = project_parts(parts, weight.float())
    for i, atoms in enumerate(sets):
        tokens = tokenizer.tokens(atoms)
        assert torch.allclose(full[i, : len(atoms)], tokens, atol=1e-6, rtol=0)
        assert torch.allclose(projected[i, : len(atoms)], tokens @ weight.float().T, atol=1e-3, rtol=1e-5)
    assert max_factorisation_error(parts, weight.float()) < 1e-3


# --- time and location -------------------------------------------------------------------------------
@PROPERTY
@given(scene=ats.scene_metas())
def test_missing_scene_metadata_gives_zeros_and_an_indicator(scene):
    for enc, present in ((TimeEncoder(), scene.datetime is not None),
                         (LocationEncoder(), scene.lon is not None)):
        row = enc([scene], dtype=torch.float64)[0]
        assert torch.isfinite(row).all()
        assert row[-1] == (0.0 if present else 1.0)
        if not present:
            assert torch.all(row[:-1] == 0)
        elif isinstance(enc, TimeEncoder):
            assert math.isclose(float(row[0] ** 2 + row[1] ** 2), 1.0, abs_tol=1e-12)
            assert math.isclose(float(row[2] ** 2 + row[3] ** 2), 1.0, abs_tol=1e-12)
        else:
            assert math.isclose(float(row[:3].norm()), 1.0, abs_tol=1e-12)


@PROPERTY
@given(lon=st.floats(-180.0, 180.0), lat=st.floats(-90.0, 90.0), turns=st.integers(-2, 2))
def test_location_is_periodic_in_longitude(lon, lat, turns):
    enc = LocationEncoder()
    a = enc.encode_lonlat(torch.tensor([lon], dtype=torch.float64), torch.tensor([lat], dtype=torch.float64))
    b = enc.encode_lonlat(torch.tensor([lon + 360.0 * turns], dtype=torch.float64),
                          torch.tensor([lat], dtype=torch.float64))
    assert torch.allclose(a, b, atol=1e-9)
