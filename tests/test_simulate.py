"""Sensor simulation: band integration vs direct numerical integration, aggregation, refusals."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.atoms.atomset import SceneMeta
from atomizer.errors import OutputError, SimulationError
from atomizer.sensors.spec import Band, SensorSpec, SpectralResponse
from atomizer.simulate import (
    SimulationWarning,
    Simulator,
    SimulatorCache,
    SpectralTable,
    aggregate,
    band_weights,
    coverage_fraction,
    overlap_matrix,
    simulate,
    simulate_spectra,
)
from atomizer.simulate.spectral import band_response, gaussian_response

FINE_STEP_NM = 0.05


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One plugin host (built-in sensors only) for the whole module: the registry loads once."""
    from atomizer.plugins.host import PluginHost

    return PluginHost(
        load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg"))}
    )


FINE_GRID_NM = np.arange(300.0, 2700.0, FINE_STEP_NM)


def uniform_table(lo=400.0, hi=2500.0, step=10.0, fwhm=10.0, gsd_m=20.0) -> SpectralTable:
    centres = np.arange(lo, hi + step / 2, step)
    return SpectralTable(
        centres,
        np.full(centres.size, fwhm),
        tuple(f"c{i}" for i in range(centres.size)),
        gsd_m=gsd_m,
        source_id="synthetic",
    )


def spec(bands, sid="target") -> SensorSpec:
    return SensorSpec(id=sid, name=sid, sources=["test"], bands=bands)


def band(name, centre, fwhm, gsd=30.0, **kw) -> Band:
    return Band(name=name, center_wavelength_nm=centre, fwhm_nm=fwhm, gsd_m=gsd, **kw)


def channel_values(table: SpectralTable, spectrum: np.ndarray) -> np.ndarray:
    """What each source channel measures: the spectrum averaged under its Gaussian response."""
    out = []
    for c, f in zip(table.center_nm, table.fwhm_nm):
        r = gaussian_response(c, f, FINE_GRID_NM)
        out.append(np.sum(r * spectrum) / np.sum(r))
    return np.array(out)


def band_average(b: Band, spectrum: np.ndarray) -> float:
    r = band_response(b, FINE_GRID_NM)
    return float(np.sum(r * spectrum) / np.sum(r))


TARGET = spec(
    [
        band("blue", 490, 60),
        band("red", 665, 30),
        band("nir", 842, 115),
        band("swir1", 1610, 90),
        band("swir2", 2200, 180),
    ]
)


def test_weights_are_a_weighted_average():
    table = uniform_table()
    w = band_weights(table, TARGET.bands)
    assert w.shape == (TARGET.n_bands, len(table))
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    # Weight sits on channels near the band centre.
    for row, b in zip(w, TARGET.bands):
        assert abs(float(row @ table.center_nm) - b.center_wavelength_nm) < 1.0


def test_linear_spectrum_gives_the_analytic_band_average():
    table = uniform_table()
    a, slope = 0.1, 2e-4  # reflectance = a + slope * wavelength
    x = a + slope * table.center_nm  # exact channel averages (symmetric Gaussians)
    y = Simulator(table, TARGET).spectra(x)
    expected = a + slope * np.array([b.center_wavelength_nm for b in TARGET.bands])
    np.testing.assert_allclose(y, expected, rtol=5e-4)


def test_smooth_spectrum_matches_direct_numerical_integration():
    table = uniform_table()
    spectrum = (
        0.3
        + 0.15 * np.sin(FINE_GRID_NM / 170.0)
        + 0.1 * np.exp(-(((FINE_GRID_NM - 1100) / 250) ** 2))
    )
    y = Simulator(table, TARGET).spectra(channel_values(table, spectrum))
    expected = [band_average(b, spectrum) for b in TARGET.bands]
    np.testing.assert_allclose(y, expected, rtol=3e-3)


def test_a_tabulated_response_is_used_instead_of_the_gaussian():
    table = uniform_table()
    step = np.where(FINE_GRID_NM < 600.0, 0.1, 0.5)  # a sharp edge inside the Gaussian's reach
    narrow = SpectralResponse(wavelength_nm=[612, 614, 636, 638], value=[0, 1, 1, 0])
    tabulated = band("t", 625, 120, response=narrow)
    gaussian = band("g", 625, 120)
    x = channel_values(table, step)
    y_tab, y_gauss = Simulator(table, spec([tabulated, gaussian])).spectra(x)
    assert y_tab == pytest.approx(band_average(tabulated, step), abs=2e-3)
    assert y_tab == pytest.approx(0.5, abs=2e-3)  # the response never sees the dark side
    assert y_gauss < 0.45  # the wide Gaussian does


@settings(max_examples=25, deadline=None)
@given(
    level=st.floats(0.0, 1.0),
    centres=st.lists(st.floats(520, 2300), min_size=1, max_size=6),
    widths=st.lists(st.floats(5, 100), min_size=6, max_size=6),
    step=st.floats(5, 15),
)
def test_flat_spectrum_stays_flat_in_every_band(level, centres, widths, step):
    table = uniform_table(step=step, fwhm=step)
    bands = [band(f"b{i}", c, w) for i, (c, w) in enumerate(zip(centres, widths))]
    sim = Simulator(table, spec(bands))
    y = sim.spectra(np.full(len(table), level, dtype=np.float32))
    np.testing.assert_allclose(y, level, rtol=1e-5, atol=1e-6)


def test_gaps_in_the_source_are_not_coverage():
    # AVIRIS "corrected" style: no channels in 1350-1450 nm.
    centres = np.concatenate([np.arange(400, 1350, 10.0), np.arange(1450, 2500, 10.0)])
    table = SpectralTable.from_wavelengths(centres, gsd_m=20.0)
    cirrus = band("cirrus", 1375, 30)
    assert coverage_fraction(cirrus, table) < 0.05
    with pytest.raises(SimulationError, match=r"cirrus \(1360-1390 nm\).*gaps 1345-1445"):
        Simulator(table, spec([cirrus]))


def test_out_of_range_bands_are_refused_with_one_clear_line():
    table = uniform_table()
    thermal = band("B10", 10895, 590, gsd=100)
    with pytest.raises(SimulationError) as err:
        Simulator(table, spec([band("red", 665, 30), thermal], sid="landsat"))
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("landsat", "B10", "10600-11190 nm", "395-2505 nm", "0%"):
        assert part in msg


def test_coverage_threshold_at_the_edge_of_the_source():
    table = uniform_table()  # covers 395-2505 nm
    half_out = band("edge", 395, 20)
    mostly_in = band("in", 425, 20)
    assert coverage_fraction(half_out, table) == pytest.approx(0.5, abs=0.02)
    assert coverage_fraction(mostly_in, table) > 0.99
    with pytest.raises(SimulationError, match="edge"):
        Simulator(table, spec([half_out]))
    assert Simulator(table, spec([half_out]), min_coverage=0.45).band_names == ["edge"]


def test_skip_unsupported_drops_bands_with_a_warning():
    table = uniform_table()
    target = spec([band("red", 665, 30), band("B10", 10895, 590), band("pan", 590, 170, gsd=15)])
    with pytest.warns(SimulationWarning) as caught:
        sim = Simulator(table, target, skip_unsupported=True)
    assert sim.band_names == ["red"]
    assert sim.skipped == ("B10", "pan")
    text = " ".join(str(w.message) for w in caught)
    assert "B10" in text and "pan" in text and "finer than the source" in text
    with pytest.raises(SimulationError, match="no band of target"), pytest.warns(SimulationWarning):
        Simulator(table, spec([band("B10", 10895, 590)]), skip_unsupported=True)


def test_finer_gsd_is_refused():
    table = uniform_table(gsd_m=20.0)
    with pytest.raises(SimulationError, match=r"10 m is finer than the source synthetic at 20 m"):
        Simulator(table, spec([band("red", 665, 30, gsd=10)]))
    with pytest.raises(SimulationError, match="finer"):
        Simulator(table, TARGET, gsd_m=15)
    # The same band at a requested coarser GSD is fine.
    assert Simulator(table, spec([band("red", 665, 30, gsd=10)]), gsd_m=40).bands[0].gsd_m == 40


@settings(max_examples=30, deadline=None)
@given(
    factor=st.integers(1, 5),
    blocks=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_integer_aggregation_is_the_block_mean_and_keeps_the_mean(factor, blocks, channels, seed):
    h, w = blocks[0] * factor, blocks[1] * factor
    x = np.random.default_rng(seed).random((h, w, channels)).astype(np.float32)
    out = aggregate(x, 10.0, 10.0 * factor)
    assert out.shape == (blocks[0], blocks[1], channels)
    blockmean = x.reshape(blocks[0], factor, blocks[1], factor, channels).mean(axis=(1, 3))
    np.testing.assert_allclose(out, blockmean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), x.mean(axis=(0, 1)), rtol=1e-5)


def test_non_integer_aggregation_uses_area_overlaps():
    m = overlap_matrix(30, 1.5)  # 20 m -> 30 m over 30 pixels: 20 output pixels
    assert m.shape == (20, 30)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    np.testing.assert_allclose(m[0, :3], [2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(m[1, :3], [0.0, 1 / 3, 2 / 3])
    ramp = np.arange(30, dtype=np.float64)[:, None] * np.ones((1, 30))  # value = row index
    out = aggregate(ramp, 20.0, 30.0)
    # Each fine pixel is constant over its footprint: integrate that step function directly.
    t = (np.arange(30 * 3000) + 0.5) / 3000  # fine-pixel units, 3000 samples per pixel
    expected = np.floor(t).reshape(20, -1).mean(axis=1)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-4)
    assert out.mean() == pytest.approx(ramp.mean(), rel=1e-6)


def test_aggregation_ignores_nodata_and_refuses_finer():
    x = np.ones((4, 4), dtype=np.float32)
    x[0, 0] = np.nan
    out = aggregate(x, 10, 20)
    np.testing.assert_allclose(out, 1.0)
    x[:2, :2] = np.nan
    assert np.isnan(aggregate(x, 10, 20)[0, 0])
    with pytest.raises(SimulationError, match="finer"):
        aggregate(x, 20, 10)


def test_simulator_atoms_positions_and_commutation():
    table = uniform_table(gsd_m=20.0)
    rng = np.random.default_rng(0)
    cube = rng.random((12, 12, len(table))).astype(np.float32)
    sim = Simulator(table, TARGET)  # all target bands at 30 m
    atoms = sim.atoms(cube, scene=SceneMeta(sensor_id="x", datetime=dt.datetime(2020, 1, 1)))
    assert atoms.n_bands == TARGET.n_bands and len(atoms) == TARGET.n_bands * 8 * 8
    assert set(atoms.gsd_m) == {30.0}
    assert atoms.scene.sensor_id == "target" and atoms.scene.datetime.year == 2020
    assert atoms.scene.extra["simulation"]["source"] == "synthetic"
    np.testing.assert_allclose([atoms.x.mean(), atoms.y.mean()], 0.0, atol=1e-4)
    assert atoms.x.max() == pytest.approx(3.5 * 30)
    # Spatial then spectral equals spectral then spatial.
    rasters = sim.rasters(cube)
    other = sim.spectra(aggregate(cube, 20, 30))
    np.testing.assert_allclose(np.stack(rasters.planes, -1), other, rtol=1e-4, atol=1e-5)


def test_bands_at_their_own_gsd_become_separate_grids():
    table = uniform_table(gsd_m=10.0)
    target = spec([band("red", 665, 30, gsd=10), band("swir", 1610, 90, gsd=20)])
    atoms = Simulator(table, target).atoms(np.ones((8, 8, len(table)), np.float32))
    np.testing.assert_array_equal(atoms.band_counts(), [64, 16])
    assert list(atoms.gsd_m) == [10.0, 20.0]


def test_simulate_spectra_and_the_cache():
    table = uniform_table(gsd_m=None)
    lib = np.random.default_rng(1).random((7, len(table)))
    values, bands = simulate_spectra(lib, table, TARGET)
    assert values.shape == (7, TARGET.n_bands) and len(bands) == TARGET.n_bands
    np.testing.assert_allclose(values, lib @ band_weights(table, TARGET.bands).T, rtol=1e-5)
    cache = SimulatorCache()
    a = cache.get(table, TARGET, bands=["red"])
    assert cache.get(table, TARGET, bands=["red"]) is a and len(cache) == 1
    assert cache.get(table, TARGET) is not a


def test_real_specs_landsat_from_aviris(host):
    aviris = host.sensors.get("aviris-indian-pines-1992-corrected")
    cube = np.ones((6, 6, aviris.n_bands), dtype=np.float32) * 0.25
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        atoms = simulate(
            cube, aviris, host.sensors.get("landsat8"), skip_unsupported=True, host=host
        )
    assert atoms.band_names == [
        "B1",
        "B2",
        "B3",
        "B4",
        "B5",
        "B6",
        "B7",
    ]  # no pan (15 m), cirrus, thermal
    np.testing.assert_allclose(atoms.value, 0.25, rtol=1e-5)
    modis = host.sensors.get("modis-terra")
    land = [f"B0{i}" for i in range(1, 8)]
    atoms = simulate(cube, aviris, modis, bands=land, gsd_m=20, host=host)
    assert atoms.band_names == land
    with pytest.raises(SimulationError, match="B31"):
        Simulator(aviris, modis, bands=["B01", "B31"])
    # WorldView-3 coastal (400-450 nm) as a Gaussian pokes below AVIRIS's 395 nm: 92% inside, kept.
    wv3 = Simulator(aviris, host.sensors.get("worldview3"), bands=["BAND_C", "BAND_B"], gsd_m=24)
    assert wv3.band_names == ["BAND_C", "BAND_B"]


def test_geotiff_and_stac_item(tmp_path):
    import rasterio

    from atomizer.simulate.export import write_geotiff

    table = uniform_table(gsd_m=10.0)
    target = spec([band("red", 665, 30, gsd=10, common_name="red"), band("swir", 1610, 90, gsd=20)])
    cube = np.random.default_rng(2).random((8, 8, len(table))).astype(np.float32)
    rasters = Simulator(table, target).rasters(
        cube, scene=SceneMeta(sensor_id="s", datetime=dt.datetime(2021, 5, 4))
    )
    paths = write_geotiff(rasters, tmp_path / "out.tif", target=target)
    assert [p.name for p in paths] == ["out_10m.tif", "out_20m.tif", "out.json"]
    with rasterio.open(paths[1]) as ds:
        assert ds.res == (20.0, 20.0) and ds.descriptions == ("swir",)
        np.testing.assert_allclose(ds.read(1), rasters.planes[1])
    item = json.loads(paths[2].read_text())
    assert item["properties"]["datetime"].startswith("2021-05-04")
    eo = item["assets"]["data_10m"]["eo:bands"][0]
    assert eo["name"] == "red" and eo["center_wavelength"] == pytest.approx(0.665)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out_10m.tif", "out_20m.tif"]
    no_time = Simulator(table, target).rasters(cube)
    with pytest.raises(OutputError, match="acquisition time"):
        write_geotiff(no_time, tmp_path / "other.tif")
