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
    SpectralEncoder,
    TimeEncoder,
    Tokenizer,
    max_factorisation_error,
    project_parts,
)
from atomizer.plugins.host import PluginHost
from atomizer.readers.geotiff import GeoTiffReader
from atomizer.readers.synthetic import write_geotiff
from atomizer.sensors.spec import Band, SensorSpec, SpectralResponse
from atomizer.testing import strategies as ats

PROPERTY = settings(max_examples=50, deadline=None)
#: Per registered encoder name: the token part it fills and small parameters for the properties.
#: A newly registered encoder must get a row here (test_every_registered_encoder_has_a_property_config).
ENCODER_CONFIGS: dict[str, tuple[str, dict]] = {
    "fourier_value": ("value", {}),
    "position": ("position", {}),
    "spectral": ("spectral", {}),
    "time": ("time", {}),
    "location": ("location", {}),
}
#: The built-in encoder of each part: the tokenizer most properties use.
ALL_PARTS = {part: {"name": name, **params} for name, (part, params) in ENCODER_CONFIGS.items()}


def _registered_encoder_names() -> list[str]:
    """The encoder registry's names (import strings only: listing them imports no encoder)."""
    return PluginHost(load_entrypoints=False, environ={}).encoders.names()


REGISTERED_ENCODERS = _registered_encoder_names()
#: float32 vs float64: positions reach |x| / G * pi * f_max ~ 1e3 rad, where float32 phases are
#: good to about 1e-4; everything else agrees to about 1e-6.
FLOAT32_ATOL = 1e-3
#: atom coordinates are float32: relative to the scene's extent they are good to a few ulps.
COORD_F32_RTOL = 1e-6


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
def _grid_spec(n_bands: int) -> SensorSpec:
    """A toy sensor whose bands share one native grid and have no no-data value."""
    return SensorSpec(
        id="gsdtoy", name="GSD toy", sources=["test"],
        bands=[Band(name=f"B{i}", center_wavelength_nm=500.0 + 100.0 * i, fwhm_nm=40.0, gsd_m=10.0)
               for i in range(n_bands)],
    )


def _block_means(atoms: AtomSet, shape: tuple[int, int, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean x and y of each k x k block of the fine atoms (all valid, in from_array's band/row/col order)."""
    b, h, w = shape
    def blocks(coord: np.ndarray) -> np.ndarray:
        return coord.astype(np.float64).reshape(b, h, k, w, k).mean(axis=(2, 4)).ravel()
    return blocks(atoms.x), blocks(atoms.y)


def _normalised_extent(tokenizer: Tokenizer, atoms: AtomSet) -> torch.Tensor:
    """(x_min, x_max, y_min, y_max) of the pixel footprints, in the position encoder's normalised units."""
    half = atoms.atom_gsd_m().astype(np.float64) / 2
    x, y = atoms.x.astype(np.float64), atoms.y.astype(np.float64)
    edges = torch.tensor([(x - half).min(), (x + half).max(), (y - half).min(), (y + half).max()],
                         dtype=torch.float64)
    return tokenizer.encoder("position").scale(edges)


def _assert_gsd_equivariant(tokenizer: Tokenizer, coarse: AtomSet, fine: AtomSet,
                            shape: tuple[int, int, int], k: int, gsd: float) -> None:
    b, h, w = shape
    assert len(coarse) == b * h * w and len(fine) == b * h * w * k * k
    extent_m = max(h, w) * gsd
    scaled_coarse, scaled_fine = _normalised_extent(tokenizer, coarse), _normalised_extent(tokenizer, fine)
    reference_m = tokenizer.encoder("position").reference_m
    assert torch.allclose(scaled_coarse, scaled_fine, rtol=0, atol=COORD_F32_RTOL * extent_m / reference_m)
    expected = torch.tensor([-w, w, -h, h], dtype=torch.float64) * gsd / 2 / reference_m
    assert torch.allclose(scaled_coarse, expected, rtol=0, atol=COORD_F32_RTOL * extent_m / reference_m)
    mean_x, mean_y = _block_means(fine, shape, k)
    np.testing.assert_allclose(coarse.x, mean_x, rtol=0, atol=COORD_F32_RTOL * extent_m)
    np.testing.assert_allclose(coarse.y, mean_y, rtol=0, atol=COORD_F32_RTOL * extent_m)


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    gsd=st.floats(0.3, 500.0), k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
)
def test_atoms_at_gsd_g_and_g_over_k_span_the_same_normalised_extent(tokenizer, shape, gsd, k, seed):
    """AtomSet.from_array of a cube at g and of its k x k upsampling at g / k: same extent, and each
    coarse atom sits at the mean of the k x k fine atoms it covers."""
    cube = np.random.default_rng(seed).uniform(1.0, 2.0, size=shape)
    spec = _grid_spec(shape[0])
    coarse = AtomSet.from_array(cube, spec, gsd_m=gsd)
    fine = AtomSet.from_array(np.kron(cube, np.ones((k, k))), spec, gsd_m=gsd / k)
    _assert_gsd_equivariant(tokenizer, coarse, fine, shape, k, gsd)
    # the same ground point gets the same positional features whatever the pixel size
    mean_x, mean_y = _block_means(fine, shape, k)
    enc = tokenizer.encoder("position")
    phase_atol = math.pi * enc.max_freq / enc.reference_m * COORD_F32_RTOL * max(shape[1:]) * gsd
    assert torch.allclose(enc(torch.from_numpy(coarse.x).double(), torch.from_numpy(coarse.y).double()),
                          enc(torch.from_numpy(mean_x), torch.from_numpy(mean_y)), atol=phase_atol, rtol=0)


@settings(max_examples=8, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
    gsd=st.sampled_from([0.5, 3.0, 10.0, 60.0, 250.0]), k=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
)
def test_geotiffs_at_gsd_g_and_g_over_k_read_back_to_the_same_extent(tokenizer, tmp_path_factory, shape, gsd, k,
                                                                      seed):
    """The same property through write_geotiff and the GeoTIFF reader (GSD from the file's transform)."""
    cube = np.random.default_rng(seed).integers(1, 1000, size=shape).astype(np.uint16)
    spec = _grid_spec(shape[0])
    folder = tmp_path_factory.mktemp("gsd")
    coarse_path = write_geotiff(folder / "coarse.tif", cube, gsd_m=gsd)
    fine_path = write_geotiff(folder / "fine.tif", np.kron(cube, np.ones((k, k), dtype=np.uint16)), gsd_m=gsd / k)
    coarse = GeoTiffReader().read(coarse_path, sensor=spec).atoms
    fine = GeoTiffReader().read(fine_path, sensor=spec).atoms
    assert np.allclose(fine.gsd_m, gsd / k) and np.allclose(coarse.gsd_m, gsd)
    _assert_gsd_equivariant(tokenizer, coarse, fine, shape, k, gsd)
    np.testing.assert_array_equal(coarse.value, fine.value.reshape(shape[0], shape[1], k, shape[2], k)[:, :, 0, :, 0].ravel())


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


def test_every_registered_encoder_has_a_property_config():
    missing = sorted(set(REGISTERED_ENCODERS) - set(ENCODER_CONFIGS))
    assert not missing, (
        f"encoders {missing} are registered but have no row in ENCODER_CONFIGS of {__name__}; add "
        "(part, small params) so that they get the determinism and float-width properties"
    )


def _tokenizer_with(name: str) -> Tokenizer:
    """A fresh tokenizer whose part ``ENCODER_CONFIGS[name][0]`` is filled by encoder ``name``."""
    if name not in ENCODER_CONFIGS:
        pytest.fail(f"encoder {name!r} is registered but has no row in ENCODER_CONFIGS; add one")
    part, params = ENCODER_CONFIGS[name]
    config = {"value": {"name": "fourier_value"}, part: {"name": name, **params}}
    return Tokenizer.from_config(config, host=PluginHost(load_entrypoints=False, environ={}))


@pytest.mark.parametrize("name", REGISTERED_ENCODERS)
@settings(max_examples=20, deadline=None)
@given(atoms=ats.atom_sets(max_atoms=32))
def test_encoders_are_deterministic_and_agree_across_float_widths(name, atoms):
    tokenizer = _tokenizer_with(name)
    first = tokenizer.tokens(atoms)
    assert torch.equal(first, tokenizer.tokens(atoms))
    assert torch.equal(first, _tokenizer_with(name).tokens(atoms))  # a fresh instance agrees
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
