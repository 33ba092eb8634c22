"""Rasterising atoms for the baselines: band matching, footprints, normalisation, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import collate_atoms
from atomizer.errors import ConfigError, ModalityError
from atomizer.models.config import RasterLayoutConfig, validate_config
from atomizer.models.rasterize import RasterLayout, layout_for_bands, resolve_layout
from atomizer.sensors.spec import Band, BandStats, SensorSpec


def band(name, centre, gsd, common=None, fwhm=20.0, stats=None):
    return Band(
        name=name,
        common_name=common,
        center_wavelength_nm=centre,
        fwhm_nm=fwhm,
        gsd_m=gsd,
        stats=stats,
    )


SPEC = SensorSpec(
    id="rastersat",
    name="Raster test satellite",
    sources=["tests"],
    bands=[
        band("B02", 490.0, 10.0, "blue"),
        band("B04", 665.0, 10.0, "red", stats=BandStats(mean=0.1, std=0.5)),
        band("B05", 705.0, 20.0, "rededge"),
        band("B09", 945.0, 60.0),
    ],
)
RNG = np.random.default_rng(0)
B02 = RNG.uniform(0, 1, (1, 12, 12))
B04 = RNG.uniform(0, 1, (1, 12, 12))
B05 = RNG.uniform(0, 1, (1, 6, 6))
B09 = RNG.uniform(0, 1, (1, 2, 2))


def atoms() -> AtomSet:
    return AtomSet.concat(
        [
            AtomSet.from_array(B02, SPEC, bands=["B02"]),
            AtomSet.from_array(B04, SPEC, bands=["B04"]),
            AtomSet.from_array(B05, SPEC, bands=["B05"]),
            AtomSet.from_array(B09, SPEC, bands=["B09"]),
        ]
    )


def test_native_grid_is_reproduced_and_coarse_bands_fill_their_footprint():
    layout = layout_for_bands(SPEC.bands, size_px=12)
    raster = layout(collate_atoms([atoms()]))
    values = raster.values[0].numpy()
    assert values.shape == (4, 12, 12)
    np.testing.assert_allclose(values[0], B02[0], atol=1e-6)
    np.testing.assert_allclose(values[1], (B04[0] - 0.1) / 0.5, atol=1e-5)  # band stats normalise
    np.testing.assert_allclose(values[2], np.kron(B05[0], np.ones((2, 2))), atol=1e-6)
    np.testing.assert_allclose(values[3], np.kron(B09[0], np.ones((6, 6))), atol=1e-6)
    assert raster.present.all()
    torch.testing.assert_close(raster.gsd_m, torch.tensor([10.0]))


def test_finer_atoms_are_averaged_onto_a_coarser_grid():
    layout = layout_for_bands(SPEC.bands, size_px=6)
    raster = layout(collate_atoms([atoms()]))
    np.testing.assert_allclose(
        raster.values[0, 0].numpy(), B02[0].reshape(6, 2, 6, 2).mean(axis=(1, 3)), atol=1e-6
    )
    np.testing.assert_allclose(raster.values[0, 2].numpy(), B05[0], atol=1e-6)
    torch.testing.assert_close(raster.gsd_m, torch.tensor([20.0]))


def test_missing_bands_are_zero_filled_and_padding_is_ignored():
    refs = [*SPEC.bands, band("B12", 2190.0, 20.0, "swir22")]
    layout = layout_for_bands(refs, size_px=12)
    small = atoms().select_bands(["B02"])
    batch = collate_atoms([atoms(), small])
    batch.value[~batch.mask] = 99.0
    raster = layout(batch)
    assert raster.present.tolist() == [[True] * 4 + [False], [True] + [False] * 4]
    assert (raster.values[:, 4] == 0).all() and (raster.values[1, 1:] == 0).all()
    np.testing.assert_allclose(raster.values[1, 0].numpy(), B02[0], atol=1e-6)


def test_band_matching_uses_name_then_common_name_then_nearest_centre():
    layout = RasterLayout(
        RasterLayoutConfig(
            bands=[
                {"name": "B05", "common_name": "rededge", "center_wavelength_nm": 705.0},
                {"name": "B06", "common_name": "rededge", "center_wavelength_nm": 740.0},
                {"name": "B8A", "common_name": "nir08", "center_wavelength_nm": 865.0},
            ],
            size_px=4,
            wavelength_tolerance_nm=30.0,
        )
    )
    inputs = [
        band(
            "b06", 722.0, 10.0
        ),  # name wins (case-insensitive) over the nearer B05... within tolerance
        band("RE1", 722.0, 10.0, "rededge"),  # common name: both, nearest of those
        band("N", 850.0, 10.0, "nir08"),
        band("B05", 865.0, 30.0, "nir08"),  # another sensor's B05 is a NIR band: name must not win
        band("SWIR", 1610.0, 20.0, "swir16"),  # nothing within tolerance
    ]
    assert layout.match(inputs) == [1, 0, 2, 2, -1]


def test_fixed_grid_places_atoms_in_metres_and_leaves_the_rest_empty():
    cfg = RasterLayoutConfig(
        bands=[{"name": "B02", "center_wavelength_nm": 490.0}], size_px=24, grid="fixed", gsd_m=10.0
    )
    raster = RasterLayout(cfg)(collate_atoms([atoms()]))
    np.testing.assert_allclose(raster.values[0, 0, 6:18, 6:18].numpy(), B02[0], atol=1e-6)
    assert raster.values[0, 0, :6].abs().sum() == 0 and raster.values[0, 0, :, 18:].abs().sum() == 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_raster_does_not_depend_on_atom_order(seed):
    layout = layout_for_bands(SPEC.bands, size_px=9)
    a = atoms()
    perm = np.random.default_rng(seed).permutation(len(a))
    torch.testing.assert_close(
        layout(collate_atoms([a])).values,
        layout(collate_atoms([a.take(perm)])).values,
        atol=1e-6,
        rtol=1e-6,
    )


@settings(max_examples=15, deadline=None)
@given(size=st.integers(1, 30))
def test_every_pixel_of_a_full_scene_is_filled_at_any_size(size):
    raster = layout_for_bands(SPEC.bands, size_px=size)(collate_atoms([atoms()]))
    assert raster.values.shape == (1, 4, size, size)
    assert torch.isfinite(raster.values).all()
    assert (raster.values[0, 0] != 0).all()  # B02 covers the whole footprint


def test_layout_from_a_registered_sensor_is_expanded(host):
    spec_id = "sentinel2a-l2a"  # a built-in: it must be registered
    cfg = RasterLayoutConfig(sensor=spec_id, sensor_bands=["B04", "B08"], size_px=8)
    resolved = resolve_layout(cfg, host=host)
    assert resolved.sensor is None and [b.name for b in resolved.bands] == ["B04", "B08"]
    assert (
        resolved.bands[0].center_wavelength_nm
        == host.sensors.get(spec_id).band("B04").center_wavelength_nm
    )
    with pytest.raises(ModalityError, match="no band 'B99'"):
        resolve_layout(RasterLayoutConfig(sensor=spec_id, sensor_bands=["B99"]), host=host)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"size_px": 8}, "exactly one of 'bands'"),
        ({"bands": [], "size_px": 8}, "empty"),
        ({"bands": [{"name": "a", "center_wavelength_nm": 500.0}], "grid": "fixed"}, "gsd_m"),
        ({"bands": [{"name": "a", "center_wavelength_nm": 500.0}] * 2}, "twice"),
        ({"bands": [{"name": "a", "center_wavelength_nm": 500.0}], "colour": "red"}, "unknown key"),
    ],
)
def test_bad_layouts_are_clear_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(RasterLayoutConfig, bad)
