"""Real data: the Sentinel-2 L2A tile T29UNU at 60 m and the 14 BigEarthNet patches.

STAC items are generated at run time (in tmp_path, with pystac); the data itself is read from the
shared folder and never copied. Full-scene reads of the tile are marked slow.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pystac
import pytest
import rasterio
from conftest import shared_data_path
from rasterio.windows import Window

from atomizer.readers import PixelWindow, ReadOptions
from atomizer.readers.stac import StacReader
from atomizer.readers.stac_build import build_stac_item, sentinel2_l2a_item

pytestmark = pytest.mark.data

S2_TILE = "s2_l2a_T29UNU_20221005_60m"
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"]
TILE_PX = 1830
WINDOW = PixelWindow(1040, 990, 48, 24)  # crosses the swath edge: no-data (DN 0) east of col ~1065
BEN_ATOMS = 4 * 120**2 + 6 * 60**2 + 2 * 20**2
BEN_GSD_M = {
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B08": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B8A": 20,
    "B11": 20,
    "B12": 20,
    "B01": 60,
    "B09": 60,
}


@pytest.fixture(scope="module")
def l2a_spec():
    from atomizer.plugins.host import PluginHost

    host = PluginHost(load_entrypoints=False, environ={})
    return host.sensors.get("sentinel2a-l2a")


@pytest.fixture(scope="module")
def s2_item(tmp_path_factory) -> str:
    folder = shared_data_path(S2_TILE)
    out = tmp_path_factory.mktemp("s2") / "item.json"
    sentinel2_l2a_item(folder).save_object(dest_href=str(out), include_self_link=False)
    return str(out)


def _band_file(band: str):
    return next(shared_data_path(S2_TILE).glob(f"*_{band}_60m.jp2"))


def test_generated_item_describes_the_tile(s2_item):
    item = pystac.Item.from_file(s2_item)
    assert item.properties["platform"] == "sentinel-2a"
    assert item.datetime == dt.datetime(2022, 10, 5, 11, 54, 11, 24000, tzinfo=dt.timezone.utc)
    assert sorted(k for k in item.assets if k != "SCL") == sorted(S2_BANDS)
    raster = item.assets["B04"].extra_fields["raster:bands"][0]
    assert (raster["scale"], raster["offset"], raster["nodata"]) == (0.0001, -0.1, 0)
    assert item.assets["B04"].extra_fields["eo:bands"][0]["center_wavelength"] == pytest.approx(
        0.6646
    )


def test_window_gives_60m_atoms_of_all_11_bands_with_l2a_reflectance(s2_item, l2a_spec):
    atoms, report = StacReader().read(s2_item, options=ReadOptions(window=WINDOW))
    assert report.sensor_id == "sentinel2a-l2a"  # detected: the item has no B10, so not sentinel2a
    assert atoms.band_names == S2_BANDS
    assert atoms.gsd_m.tolist() == [60.0] * 11
    assert "SCL" in report.ignored_assets
    for i, band in enumerate(S2_BANDS):
        with rasterio.open(_band_file(band)) as ds:
            dn = ds.read(
                1, window=Window(WINDOW.col_off, WINDOW.row_off, WINDOW.width, WINDOW.height)
            )
        valid = dn != 0
        expected = ((dn[valid].astype(np.float64) - 1000.0) / 10000.0).astype(np.float32)
        np.testing.assert_allclose(atoms.value[atoms.band == i], expected, rtol=0, atol=1e-7)
        assert report.bands[i].n_nodata == int(np.count_nonzero(~valid)) > 0


def test_dn_zero_is_dropped(s2_item):
    # east of the swath edge the tile is no-data (DN 0): a window across it loses those pixels
    window = PixelWindow(1030, 1000, 64, 16)
    with rasterio.open(_band_file("B04")) as ds:
        dn = ds.read(1, window=Window(1030, 1000, 64, 16))
    assert np.count_nonzero(dn == 0) > 0, "the chosen window should contain no-data pixels"
    atoms, report = StacReader().read(s2_item, options=ReadOptions(window=window, bands=("B04",)))
    assert len(atoms) == int(np.count_nonzero(dn)) and report.n_nodata == int(
        np.count_nonzero(dn == 0)
    )
    assert atoms.value.min() >= -0.1 + 1e-4  # DN 0 would be exactly -0.1


def test_spec_scaling_applies_to_an_item_without_raster_bands(tmp_path, l2a_spec):
    paths = {band: _band_file(band) for band in ("B02", "B8A")}
    item = build_stac_item("bare", paths, datetime=dt.datetime(2022, 10, 5, tzinfo=dt.timezone.utc))
    item.save_object(dest_href=str(tmp_path / "bare.json"), include_self_link=False)
    atoms, report = StacReader().read(
        tmp_path / "bare.json", sensor=l2a_spec, options=ReadOptions(window=WINDOW)
    )
    assert [b.scale_from for b in report.bands] == ["spec", "spec"]
    with rasterio.open(paths["B8A"]) as ds:
        dn = ds.read(1, window=Window(WINDOW.col_off, WINDOW.row_off, WINDOW.width, WINDOW.height))
    expected = (dn[dn != 0].astype(np.float64) * 0.0001 - 0.1).astype(np.float32)
    np.testing.assert_array_equal(atoms.value[atoms.band == 1], expected)


@pytest.mark.slow
def test_full_tile_and_window_subset(s2_item):
    full, report = StacReader().read(s2_item)
    counts = dict(zip(full.band_names, full.band_counts().tolist()))
    for band in S2_BANDS:
        with rasterio.open(_band_file(band)) as ds:
            assert counts[band] == int(np.count_nonzero(ds.read(1)))
    assert report.n_nodata + len(full) == 11 * TILE_PX**2
    cx, cy = full.scene.extra["reference_centre_m"]
    part = StacReader().read(s2_item, options=ReadOptions(window=WINDOW)).atoms
    x0 = (WINDOW.col_off - TILE_PX / 2) * 60.0
    y1 = (TILE_PX / 2 - WINDOW.row_off) * 60.0
    subset = full.window(x0, y1 - WINDOW.height * 60.0, x0 + WINDOW.width * 60.0, y1)
    assert part.same_atoms(subset)
    assert part.scene.extra["reference_centre_m"] == [cx, cy]


def _patch_item(folder, tmp_path) -> str:
    assets = {}
    for tif in sorted(folder.glob("*.tif")):
        band = re.search(r"_(B\d[\dA])\.tif$", tif.name).group(1)
        assets[band] = tif
    meta = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
    when = dt.datetime.fromisoformat(meta["acquisition_date"]).replace(tzinfo=dt.timezone.utc)
    properties = {
        "platform": "sentinel-2a" if folder.name.startswith("S2A") else "sentinel-2b",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
    }
    item = build_stac_item(folder.name, assets, datetime=when, properties=properties)
    out = tmp_path / f"{folder.name}.json"
    item.save_object(dest_href=str(out), include_self_link=False)
    return str(out)


def test_bigearthnet_patches_tokenize_at_native_resolution(tmp_path, l2a_spec):
    root = shared_data_path("bigearthnet_s2_examples")
    patches = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(patches) == 14
    for folder in patches:
        atoms, report = StacReader().read(_patch_item(folder, tmp_path), sensor=l2a_spec)
        assert len(atoms) == BEN_ATOMS, folder.name
        assert {b.name: b.gsd_m for b in atoms.bands} == BEN_GSD_M
        counts = dict(zip(atoms.band_names, atoms.band_counts().tolist()))
        assert counts == {b: int((120 * 10 / g) ** 2) for b, g in BEN_GSD_M.items()}
        assert {b.matched_by for b in report.bands} == {"asset key"}
        # every band's atoms cover the same 1.2 km x 1.2 km footprint around one centre
        for i, band in enumerate(atoms.bands):
            xs = atoms.x[atoms.band == i]
            assert xs.min() == -600 + band.gsd_m / 2 and xs.max() == 600 - band.gsd_m / 2


def test_bigearthnet_sensor_is_detected_per_platform(tmp_path):
    root = shared_data_path("bigearthnet_s2_examples")
    folder = next(p for p in sorted(root.iterdir()) if p.name.startswith("S2B"))
    _, report = StacReader().read(_patch_item(folder, tmp_path))
    assert report.sensor_id == "sentinel2b-l2a"


def test_parallel_decoding_reads_what_one_thread_reads(s2_item, monkeypatch):
    from atomizer.readers import pixels

    monkeypatch.setattr(pixels, "_decode_workers", lambda n_files: n_files)
    parallel, report = StacReader().read(s2_item, options=ReadOptions(window=WINDOW))
    monkeypatch.setattr(pixels, "_decode_workers", lambda n_files: 1)
    serial, serial_report = StacReader().read(s2_item, options=ReadOptions(window=WINDOW))
    assert parallel.same_atoms(serial) and report.bands == serial_report.bands


def test_a_truncated_jpeg2000_among_parallel_reads_is_an_error(tmp_path, l2a_spec, monkeypatch):
    # the bands are decoded on worker threads: a failed decode must still raise, not read as zeros
    from atomizer.errors import ReaderError
    from atomizer.readers import pixels

    monkeypatch.setattr(pixels, "_decode_workers", lambda n_files: n_files)
    paths = {band: _band_file(band) for band in ("B01", "B03", "B09")}
    data = _band_file("B02").read_bytes()
    paths["B02"] = tmp_path / "T29UNU_B02_60m.jp2"
    paths["B02"].write_bytes(data[: len(data) // 2])
    item = build_stac_item("cut", paths, datetime=dt.datetime(2022, 10, 5, tzinfo=dt.timezone.utc))
    item.save_object(dest_href=str(tmp_path / "cut.json"), include_self_link=False)
    with pytest.raises(ReaderError, match="B02.*corrupt or truncated"):
        StacReader().read(tmp_path / "cut.json", sensor=l2a_spec)


def test_gdal_worker_thread_failures_are_counted(tmp_path):
    # GDAL's own decoding threads report a failed decode to the process-wide handler only; the
    # watcher is what lets the reader decode on GDAL's threads and still refuse a truncated file
    import rasterio

    from atomizer.readers.gdal_errors import watcher

    seen = watcher()
    assert seen is not None, "the GDAL library rasterio loaded was not found"
    data = _band_file("B02").read_bytes()
    cut = tmp_path / "cut.jp2"
    cut.write_bytes(data[: len(data) // 2])
    before = seen.count()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(cut) as ds:
        ds.read(1)  # no exception here: the failed blocks read as zeros or leftover memory
    assert seen.count() > before
    before = seen.count()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(_band_file("B02")) as ds:
        assert ds.read(1).any()
    assert seen.count() == before


def test_a_failure_on_another_thread_costs_a_reread_not_an_error(s2_item, monkeypatch):
    # the count is process-wide: a change during a good read (another read failing at the same
    # time) makes the reader re-read on one thread, with the same atoms, never raise
    from atomizer.readers import gdal_errors, pixels

    real = gdal_errors.watcher()
    clean, _ = StacReader().read(s2_item, options=ReadOptions(window=WINDOW))

    class Noisy:
        calls = 0

        def count(self) -> int:
            Noisy.calls += 1
            return Noisy.calls  # a new failure somewhere between every two looks

    rereads = []
    verified = pixels._read_verified
    monkeypatch.setattr(pixels, "watcher", lambda: Noisy())
    monkeypatch.setattr(pixels, "_read_verified", lambda *a: rereads.append(a) or verified(*a))
    noisy, _ = StacReader().read(s2_item, options=ReadOptions(window=WINDOW))
    assert noisy.same_atoms(clean) and len(rereads) == len(clean.bands)
    assert real is not None
