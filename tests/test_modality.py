"""Modalities and the transforms that make them: band subset, GSD change, crop, simulated sensor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from atomizer.atoms.atomset import SceneMeta
from atomizer.data import (
    HyperspectralSample,
    Modality,
    apply_modality,
    atoms_to_rasters,
    change_gsd,
    crop,
)
from atomizer.errors import ModalityError
from atomizer.sensors.spec import Band, SensorSpec
from atomizer.simulate import BandRasters, Simulator, SimulatorCache, SpectralTable

GSDS = {"B02": 10.0, "B05": 20.0, "B01": 60.0}
CENTRES = {"B02": 490.0, "B05": 705.0, "B01": 443.0}


def s2_like() -> SensorSpec:
    return SensorSpec(
        id="s2like",
        name="S2-like",
        sources=["test"],
        bands=[
            Band(name=n, center_wavelength_nm=CENTRES[n], fwhm_nm=15, gsd_m=g)
            for n, g in GSDS.items()
        ],
    )


def ramp_rasters(footprint_m: float = 1200.0) -> BandRasters:
    """Each pixel holds its centre's x in metres: the mean of a crop reveals the crop's centre."""
    spec = s2_like()
    planes = []
    for b in spec.bands:
        n = int(footprint_m / b.gsd_m)
        x = ((np.arange(n) + 0.5) - n / 2) * b.gsd_m
        planes.append(np.tile(x, (n, 1)).astype(np.float32))
    return BandRasters(tuple(planes), tuple(spec.bands), SceneMeta(sensor_id="s2like"))


@pytest.fixture(scope="module")
def spec_host(tmp_path_factory):
    """A host whose registry holds s2like (a YAML file on ATOMIZER_SENSOR_PATH), built once."""
    from atomizer.plugins.host import PluginHost
    from atomizer.sensors import spec_to_yaml

    folder = tmp_path_factory.mktemp("specs")
    (folder / "s2like.yaml").write_text(spec_to_yaml(s2_like()))
    environ = {
        "ATOMIZER_SENSOR_PATH": str(folder),
        "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg")),
    }
    return PluginHost(load_entrypoints=False, environ=environ)


def test_modality_is_strict_and_frozen():
    m = Modality(sensor="sentinel2a", bands=["B02", "B03"], gsd_m=20, size_px=9)
    assert m.bands == ("B02", "B03") and m.gsd_m == 20.0
    assert m.label == "sentinel2a[B02,B03]@20m/9px"
    assert Modality(sensor="x", name="test 1").label == "test 1"
    with pytest.raises(ValidationError):
        m.gsd_m = 30  # frozen
    for bad in (
        {"sensor": "x", "gsd": 20},  # unknown key
        {"sensor": "x", "gsd_m": 0},
        {"sensor": "x", "size_px": "9"},  # strict: no string coercion
        {"sensor": "x", "bands": ["B1", "b1"]},
        {"sensor": "x", "bands": []},
        {"sensor": ""},
    ):
        with pytest.raises(ValidationError):
            Modality(**bad)


def test_modality_sensor_from_a_yaml_file(tmp_path, spec_host):
    from atomizer.sensors import spec_to_yaml

    path = tmp_path / "new-sensor.yaml"
    path.write_text(spec_to_yaml(s2_like()))
    m = Modality(sensor=str(path), bands=["b05"])
    assert m.spec(spec_host).id == "s2like"
    assert m.band_names(m.spec(spec_host)) == ["B05"]
    with pytest.raises(ModalityError, match="no band 'B99'"):
        Modality(sensor=str(path), bands=["B99"]).band_names(m.spec(spec_host))


def test_change_gsd_aggregates_finer_bands_only():
    r = ramp_rasters()
    out = change_gsd(r, 20.0)
    assert [p.shape for p in out.planes] == [(60, 60), (60, 60), (20, 20)]
    assert [b.gsd_m for b in out.bands] == [20.0, 20.0, 60.0]
    assert out.planes[0].mean() == pytest.approx(r.planes[0].mean(), abs=1e-4)
    assert out.planes[2] is r.planes[2]  # untouched, never upsampled
    odd = change_gsd(r, 25.0)  # 120 px at 10 m -> 48 px at 25 m
    assert odd.planes[0].shape == (48, 48) and odd.planes[1].shape == (48, 48)


def test_centre_crop_cuts_every_band_to_one_footprint():
    r = ramp_rasters()
    out = crop(r, 60, gsd_m=10.0)  # 600 m
    assert [p.shape for p in out.planes] == [(60, 60), (30, 30), (10, 10)]
    for p in out.planes:
        assert p.mean() == pytest.approx(0.0, abs=1e-3)  # centred
    with pytest.raises(ModalityError, match="does not fit"):
        crop(r, 130, gsd_m=10.0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([6, 12, 36, 60, 96]))
def test_random_crop_keeps_bands_aligned_and_is_deterministic(seed, size):
    r = ramp_rasters()
    a = crop(r, size, gsd_m=10.0, rng=np.random.default_rng(seed))
    b = crop(r, size, gsd_m=10.0, rng=np.random.default_rng(seed))
    centres = [float(p.mean()) for p in a.planes]
    assert max(centres) - min(centres) < 1e-3  # every band cut around the same point
    for pa, pb in zip(a.planes, b.planes):
        np.testing.assert_array_equal(pa, pb)


def test_random_crops_move():
    r = ramp_rasters()
    centres = {
        round(float(crop(r, 60, gsd_m=10.0, rng=np.random.default_rng(s)).planes[0].mean()))
        for s in range(30)
    }
    assert len(centres) > 3
    assert all(abs(c) % 60 == 0 for c in centres)  # whole pixels of the coarsest (60 m) band


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    gsd=st.sampled_from([1.0, 10.0, 30.0]),
    holes=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=5),
)
def test_atoms_to_rasters_round_trip(h, w, gsd, holes):
    plane = np.arange(h * w, dtype=np.float32).reshape(h, w)
    # Holes inside the grid (keep the outer ring so the extent is unchanged).
    for r, c in holes:
        if 0 < r < h - 1 and 0 < c < w - 1:
            plane[r, c] = np.nan
    b = Band(name="b", center_wavelength_nm=500, fwhm_nm=10, gsd_m=gsd)
    rasters = BandRasters((plane,), (b,), SceneMeta(sensor_id="x"))
    back = atoms_to_rasters(rasters.to_atoms())
    np.testing.assert_array_equal(back.planes[0], plane)


def test_apply_modality_on_rasters_and_on_atoms_agree(spec_host):
    r = ramp_rasters()
    m = Modality(sensor="s2like", bands=["B05", "B01"], gsd_m=30, size_px=20)
    from_rasters = apply_modality(r, m, host=spec_host)
    from_atoms = apply_modality(r.to_atoms(), m, host=spec_host)
    assert from_rasters.band_names == ["B05", "B01"]
    np.testing.assert_array_equal(from_rasters.band_counts(), [400, 100])  # 600 m at 30 m and 60 m
    assert list(from_rasters.gsd_m) == [30.0, 60.0]
    assert from_rasters.same_atoms(from_atoms, atol=1e-4)


def test_apply_modality_refuses_bands_a_multispectral_sample_lacks(spec_host):
    m = Modality(sensor="landsat8", bands=["B5"])
    with pytest.raises(ModalityError, match="hyperspectral"):
        apply_modality(ramp_rasters(), m, host=spec_host)


def test_apply_modality_simulates_a_hyperspectral_sample(spec_host):
    centres = np.arange(400.0, 1000.0, 10.0)
    table = SpectralTable.from_wavelengths(centres, gsd_m=10.0, source_id="hyper")
    cube = np.random.default_rng(3).random((12, 12, centres.size)).astype(np.float32)
    sample = HyperspectralSample(cube, table, SceneMeta(sensor_id="hyper"))
    m = Modality(sensor="s2like", bands=["B02", "B05"], gsd_m=20, size_px=4)
    cache = SimulatorCache()
    atoms = apply_modality(sample, m, cache=cache, host=spec_host)
    np.testing.assert_array_equal(atoms.band_counts(), [16, 16])
    assert atoms.scene.sensor_id == "s2like" and len(cache) == 1
    apply_modality(sample, m, cache=cache, host=spec_host)
    assert len(cache) == 1  # the weights were reused
    sim = Simulator(table, s2_like(), bands=["B02", "B05"], gsd_m=20)
    expected = crop(sim.rasters(cube), 4, gsd_m=20).to_atoms()
    assert atoms.same_atoms(expected, atol=1e-6)
