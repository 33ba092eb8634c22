"""Datasets: Indian Pines (disjoint splits), earthlib, BigEarthNet v1 (real) and v2, EuroSAT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_package, shared_data_path

from atomizer.data import (
    BigEarthNet,
    EarthlibSpectra,
    EuroSAT,
    IndianPines,
    IndianPinesScene,
    Modality,
    read_envi_library,
    stratified_split,
)
from atomizer.data import bigearthnet_labels as nomen
from atomizer.errors import DatasetError
from atomizer.simulate import Simulator, aggregate, simulate_spectra

S2_BANDS_10M = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One plugin host (built-in sensors only) for the whole module: the registry loads once."""
    from atomizer.plugins.host import PluginHost

    return PluginHost(
        load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg"))}
    )


def needs(module: str) -> None:
    """Skip when an optional data package is absent (without importing it); CI fails instead."""
    needs_package(module)


# --- Indian Pines ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pines(host):
    needs("tensorly")
    return IndianPinesScene.load(host=host)


def test_indian_pines_scene(pines):
    assert pines.cube.shape == (145, 145, 200) and pines.cube.dtype == np.float32
    assert int((pines.class_map > 0).sum()) == 10249
    assert set(np.unique(pines.class_map)) == set(range(17))
    assert pines.spec.id == "aviris-indian-pines-1992-corrected" and pines.gsd_m == 20.0
    # Bright-reference relative reflectance: the 99th percentile of every channel is 1.
    np.testing.assert_allclose(
        np.percentile(pines.cube.reshape(-1, 200), 99, axis=0), 1.0, rtol=1e-4
    )


def _footprint_mask(ds: IndianPines) -> np.ndarray:
    mask = np.zeros((145, 145), dtype=bool)
    for i in range(len(ds)):
        r0, r1, c0, c1 = ds.window(i)
        mask[r0:r1, c0:c1] = True
    return mask


def test_indian_pines_splits_are_spatially_disjoint(pines):
    sets = {s: IndianPines(s, scene=pines, seed=3) for s in ("train", "validation", "test")}
    assert all(len(d) > 100 for d in sets.values())
    masks = {s: _footprint_mask(d) for s, d in sets.items()}
    assert not (masks["train"] & masks["test"]).any()
    assert not (masks["train"] & masks["validation"]).any()
    assert not (masks["validation"] & masks["test"]).any()
    # A test modality with a bigger footprint still stays out of the training region.
    big = IndianPines(
        "test",
        scene=pines,
        seed=3,
        modality=Modality(sensor="landsat8", bands=["B4"], gsd_m=60, size_px=5),
    )
    assert len(big) > 0 and not (_footprint_mask(big) & masks["train"]).any()
    # Deterministic given the seed; another seed draws other regions.
    again = IndianPines("train", scene=pines, seed=3)
    np.testing.assert_array_equal(again.centres, sets["train"].centres)
    assert not np.array_equal(
        IndianPines("train", scene=pines, seed=4).regions, sets["train"].regions
    )


def test_indian_pines_items(pines):
    ds = IndianPines("train", scene=pines, patch_size_px=5, stride_px=3)
    atoms, label = ds[0]
    r, c = ds.centres[0]
    assert label == pines.class_map[r, c] - 1 and 0 <= label < 16
    assert atoms.n_bands == 200 and len(atoms) == 200 * 25
    np.testing.assert_allclose(
        atoms.value[atoms.band == 0].reshape(5, 5), pines.cube[r - 2 : r + 3, c - 2 : c + 3, 0]
    )
    assert (ds.centres % 3 == 0).all()
    np.testing.assert_array_equal(ds.labels(), [ds.label(i) for i in range(len(ds))])


def test_indian_pines_simulated_modality_is_block_mean_of_the_simulated_scene(pines, host):
    m = Modality(sensor="sentinel2a", bands=list(S2_BANDS_10M), gsd_m=40, size_px=4)
    ds = IndianPines("validation", scene=pines, modality=m, host=host)
    atoms, _ = ds[5]
    assert atoms.band_names == list(S2_BANDS_10M) and set(atoms.gsd_m) == {40.0}
    assert len(atoms) == 4 * 16 and atoms.scene.sensor_id == "sentinel2a"
    r0, r1, c0, c1 = ds.window(5)
    assert (r1 - r0, c1 - c0) == (8, 8)
    sim = Simulator(pines.spec, host.sensors.get("sentinel2a"), bands=list(S2_BANDS_10M), gsd_m=40)
    expected = aggregate(sim.spectra(pines.cube[r0:r1, c0:c1]), 20, 40)
    np.testing.assert_allclose(np.stack(ds.patch(5), -1), expected, rtol=1e-4, atol=1e-6)
    assert len(pines.simulators) >= 1 and ds.simulator is pines.simulator(m, host=host)


def test_indian_pines_bad_path(tmp_path):
    with pytest.raises(DatasetError, match="Indian_pines_corrected.npy") as err:
        IndianPinesScene.load(tmp_path / "nowhere")
    assert "\n" not in str(err.value)


# --- earthlib and ENVI ----------------------------------------------------------------------------
def test_envi_reader_on_a_synthetic_library(tmp_path):
    spectra = (np.arange(12).reshape(3, 4) / 10).astype(">f8")  # big-endian float64
    (tmp_path / "lib.sli").write_bytes(spectra.tobytes())
    (tmp_path / "lib.hdr").write_text(
        "ENVI\nsamples = 4\nlines = 3\nbands = 1\nheader offset = 0\n"
        "file type = ENVI Spectral Library\ndata type = 5\ninterleave = bsq\nbyte order = 1\n"
        "wavelength units = Micrometers\nwavelength = { 0.5, 0.6,\n 0.7, 0.8 }\n"
        "fwhm = {0.01, 0.01, 0.01, 0.01}\nspectra names = { a , b , c }\n"
    )
    lib = read_envi_library(tmp_path / "lib.sli")
    np.testing.assert_allclose(lib.spectra, spectra)
    np.testing.assert_allclose(lib.wavelength_nm, [500, 600, 700, 800])
    np.testing.assert_allclose(lib.fwhm_nm, 10.0)
    assert (
        lib.names == ("a", "b", "c") and read_envi_library(tmp_path / "lib.hdr").names == lib.names
    )
    (tmp_path / "lib.sli").write_bytes(spectra.tobytes()[:40])
    with pytest.raises(DatasetError, match="truncated"):
        read_envi_library(tmp_path / "lib.sli")
    with pytest.raises(DatasetError, match="not found"):
        read_envi_library(tmp_path / "missing.sli")


def test_earthlib_library_and_simulation(host):
    needs("earthlib")
    full = EarthlibSpectra()
    assert len(full) == 7261 and full.library.spectra.shape == (7261, 180)
    assert full.class_names == ("bare", "built", "burned", "npv", "vegetation")
    assert full.table.describe_coverage() == "395-2455 nm with gaps 1355-1455, 1795-1955"
    atoms, label = full[0]
    assert len(atoms) == 180 and label == 0
    parts = [EarthlibSpectra(s, seed=1).indices for s in ("train", "validation", "test")]
    assert sum(map(len, parts)) == 7261 and len(np.unique(np.concatenate(parts))) == 7261
    m = Modality(sensor="landsat8", bands=["B2", "B3", "B4", "B5", "B6", "B7"], gsd_m=30, size_px=3)
    test = EarthlibSpectra("test", seed=1, modality=m, host=host)
    atoms, label = test[2]
    assert len(atoms) == 6 * 9 and atoms.scene.sensor_id == "landsat8"
    expected, _ = simulate_spectra(
        full.library.spectra[test.indices[2]],
        full.table,
        host.sensors.get("landsat8"),
        bands=m.bands,
    )
    np.testing.assert_allclose(
        atoms.value.reshape(6, 9), np.repeat(expected[:, None], 9, axis=1), rtol=1e-5
    )
    assert label == test.labels()[2]


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(100))
    np.testing.assert_array_equal(np.bincount(labels[parts["train"]]), [30, 18, 12])
    again = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    with pytest.raises(DatasetError, match="sum"):
        stratified_split(labels, (0.5, 0.2, 0.2))


# --- BigEarthNet ----------------------------------------------------------------------------------
def test_nomenclature_table():
    assert len(nomen.LABELS_43) == 43 and len(nomen.LABELS_19) == 19
    mapped = [i for _, olds in nomen.NOMENCLATURE_19 for i in olds]
    assert len(mapped) == len(set(mapped)) == 32  # each old class in at most one new class
    assert nomen.to_19(["Bare rock", "Airports"]) == []
    assert nomen.to_19(["Sea and ocean", "Estuaries", "Peatbogs"]) == [
        "Inland wetlands",
        "Marine waters",
    ]


@pytest.mark.data
def test_bigearthnet_v1_real_patches(host):
    root = shared_data_path("bigearthnet_s2_examples")
    ds = BigEarthNet(root, host=host)
    assert len(ds) == 14 and ds.layout == "v1" and ds.n_classes == 19
    for i in range(len(ds)):
        atoms, label = ds[i]
        assert len(atoms) == 80_000
        assert label.dtype == np.float32 and label.shape == (19,)
        expected = nomen.indices(nomen.to_19(ds.label_names(i)), 19)
        np.testing.assert_array_equal(np.nonzero(label)[0], expected)
    counts = dict(zip(atoms.band_names, atoms.band_counts()))
    assert counts["B02"] == 14_400 and counts["B05"] == 3_600 and counts["B01"] == 400
    assert set(atoms.gsd_m) == {10.0, 20.0, 60.0}
    assert 0.0 < float(np.median(atoms.value)) < 1.0  # reflectance
    first = ds.records[0].name
    assert first == "S2A_MSIL2A_20170613T101031_87_48" and ds.spec_for(first).id == "sentinel2a"
    assert ds[0][0].scene.crs == "EPSG:32633" and ds[0][0].scene.datetime.year == 2017
    assert [nomen.LABELS_19[k] for k in np.nonzero(ds[0][1])[0]] == [
        "Arable land",
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    ]
    assert BigEarthNet(root, nomenclature=43, host=host)[0][1].shape == (43,)
    halves = [
        BigEarthNet(root, split=s, seed=0, host=host) for s in ("train", "validation", "test")
    ]
    assert sum(len(h) for h in halves) == 14


def _write_tif(path: Path, array: np.ndarray, gsd: float) -> None:
    import rasterio
    from rasterio.transform import Affine

    count, h, w = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype=array.dtype,
        crs="EPSG:32633",
        transform=Affine(gsd, 0, 500000, 0, -gsd, 5000000),
    ) as dst:
        dst.write(array)


def test_bigearthnet_v2_synthetic_tree(tmp_path, host):
    root = tmp_path / "BigEarthNet-S2"
    rows = [
        (
            "S2B_MSIL2A_20170701T102019_N9999_R065_T32UQD_10_20",
            "['Arable land', 'Pastures']",
            "train",
        ),
        ("S2B_MSIL2A_20170701T102019_N9999_R065_T32UQD_11_20", "Marine waters", "test"),
        (
            "S2A_MSIL2A_20180101T102019_N9999_R065_T32UQD_12_20",
            "Urban fabric;Mixed forest",
            "train",
        ),
    ]
    gsd = {"B02": 10, "B05": 20, "B01": 60}
    for pid, _, _ in rows:
        folder = root / pid.rsplit("_", 2)[0] / pid
        folder.mkdir(parents=True)
        for band, g in gsd.items():
            n = 1200 // g
            # DN = 1000 + the pixel centre's x in metres from the west edge / 10
            dn = 1000 + (np.arange(n) + 0.5) * g / 10
            _write_tif(folder / f"{pid}_{band}.tif", np.tile(dn, (1, n, 1)).astype(np.uint16), g)
    with (tmp_path / "metadata.csv").open("w") as fh:
        fh.write("patch_id,labels,split\n" + "".join(f'{p},"{lab}",{s}\n' for p, lab, s in rows))
    ds = BigEarthNet(root, split="train", bands=list(gsd), host=host)
    assert ds.layout == "v2" and len(ds) == 2
    atoms, label = ds[0]
    np.testing.assert_array_equal(atoms.band_counts(), [14_400, 3_600, 400])
    for b in range(3):  # reflectance = DN * 1e-4, mean at the patch centre (600 m)
        assert atoms.value[atoms.band == b].mean() == pytest.approx(0.106, abs=1e-4)
    assert [nomen.LABELS_19[k] for k in np.nonzero(label)[0]] == ["Arable land", "Pastures"]
    assert (
        atoms.scene.datetime.isoformat() == "2017-07-01T10:20:19"
        and atoms.scene.sensor_id == "sentinel2b"
    )
    assert ds.spec_for(ds.records[1].name).id == "sentinel2a"
    assert np.nonzero(ds[1][1])[0].tolist() == [0, 10]
    test = BigEarthNet(root, split="test", bands=list(gsd), host=host)
    assert len(test) == 1 and np.nonzero(test[0][1])[0].tolist() == [18]
    m = Modality(sensor="sentinel2b", bands=["B02", "B01"], gsd_m=20, size_px=30)
    crop = BigEarthNet(root, split="test", bands=list(gsd), modality=m, host=host)[0][0]
    np.testing.assert_array_equal(crop.band_counts(), [900, 100])
    # Random crops: the same item is the same crop until the epoch changes; bands stay aligned.
    ds = BigEarthNet(
        root, split="test", bands=list(gsd), modality=m, crop="random", seed=5, host=host
    )
    first = ds[0][0]
    assert first.same_atoms(ds[0][0])
    centres = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        atoms = ds[0][0]
        means = [float(atoms.value[atoms.band == b].mean()) for b in range(2)]
        assert means[0] == pytest.approx(means[1], abs=2e-4)
        centres.add(round(means[0], 4))
    assert len(centres) > 1


def test_bigearthnet_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match="BigEarthNet not found at .*nowhere"):
        BigEarthNet(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no BigEarthNet v1 patches"):
        BigEarthNet(tmp_path)


# --- EuroSAT --------------------------------------------------------------------------------------
def test_eurosat_synthetic_tree(tmp_path, host):
    order = (
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B09",
        "B10",
        "B11",
        "B12",
        "B8A",
    )
    for k, cls in enumerate(("Forest", "River")):
        (tmp_path / cls).mkdir()
        for i in range(5):
            cube = np.stack([np.full((8, 8), 100 * (b + 1) + k, np.uint16) for b in range(13)])
            _write_tif(tmp_path / cls / f"{cls}_{i}.tif", cube, 10)
    ds = EuroSAT(tmp_path, host=host)
    assert len(ds) == 10 and ds.class_names == ("Forest", "River")
    atoms, label = ds[7]
    assert label == 1 and atoms.n_bands == 13 and len(atoms) == 13 * 64
    b8a = atoms.band_names.index("B8A")
    np.testing.assert_allclose(atoms.value[atoms.band == b8a], (1300 + 1) * 1e-4, rtol=1e-6)
    assert set(atoms.gsd_m) == {10.0}
    swapped = EuroSAT(
        tmp_path,
        band_order=order[:8] + ("B8A", "B09", "B10", "B11", "B12"),
        bands=["B8A"],
        host=host,
    )
    np.testing.assert_allclose(swapped[0][0].value, 900 * 1e-4, rtol=1e-6)
    parts = [
        EuroSAT(tmp_path, split=s, fractions=(0.6, 0.2, 0.2), seed=2, host=host)
        for s in ("train", "validation", "test")
    ]
    assert [len(p) for p in parts] == [6, 2, 2]
    assert all(np.bincount(p.labels(), minlength=2).tolist() == [len(p) // 2] * 2 for p in parts)
    with pytest.raises(DatasetError, match="EuroSAT not found"):
        EuroSAT(tmp_path / "nope", host=host)


def test_datasets_work_with_collate_atoms(tmp_path, host):
    from atomizer.atoms import collate_atoms

    for cls in ("A", "B"):
        (tmp_path / cls).mkdir()
        _write_tif(tmp_path / cls / "x.tif", np.ones((13, 4, 4), np.uint16), 10)
    ds = EuroSAT(tmp_path, bands=["B02", "B04"], host=host)
    batch = collate_atoms([ds[i][0] for i in range(len(ds))])
    assert tuple(batch.value.shape) == (2, 32) and bool(batch.mask.all())
    assert json.dumps(ds[0][0].scene.to_json())
