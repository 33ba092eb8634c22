"""The GeoTIFF reader and the raster engine it shares with the STAC reader (tiny files)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio

from atomizer.errors import BandMatchError, ReaderError, WindowError
from atomizer.readers import LonLatBBox, PixelWindow, ReaderWarning, ReadOptions
from atomizer.readers.geotiff import GeoTiffReader
from atomizer.readers.synthetic import DEFAULT_ORIGIN_M, write_geotiff
from atomizer.sensors.spec import Band, SensorSpec

GSD_M = 10.0


@pytest.fixture
def spec() -> SensorSpec:
    """Three bands, DN * 0.01 + 0.5, no-data 0."""
    common = {"gsd_m": GSD_M, "scale": 0.01, "offset": 0.5, "nodata": 0}
    return SensorSpec(
        id="toy3",
        name="Toy three-band sensor",
        sources=["test"],
        bands=[
            Band(name="B1", common_name="blue", center_wavelength_nm=490, fwhm_nm=60, **common),
            Band(name="B2", common_name="green", center_wavelength_nm=560, fwhm_nm=35, **common),
            Band(name="B3", common_name="red", center_wavelength_nm=665, fwhm_nm=30, **common),
        ],
    )


@pytest.fixture
def cube() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 5000, size=(3, 6, 8)).astype(np.uint16)
    data[0, 0, 0] = 0
    data[2, 5, 7] = 0
    return data


def read(path, spec, **options):
    return GeoTiffReader().read(path, sensor=spec, options=ReadOptions(**options))


def expected_xy(rows: int, cols: int, gsd: float = GSD_M) -> tuple[np.ndarray, np.ndarray]:
    xs = (np.arange(cols) + 0.5 - cols / 2) * gsd
    ys = (rows / 2 - (np.arange(rows) + 0.5)) * gsd
    return np.broadcast_to(xs, (rows, cols)), np.broadcast_to(ys[:, None], (rows, cols))


def test_multiband_file_in_spec_order(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "scene.tif", cube, gsd_m=GSD_M)
    atoms, report = read(path, spec)
    assert atoms.band_names == ["B1", "B2", "B3"]
    assert len(atoms) == cube.size - 2
    assert list(atoms.band_counts()) == [47, 48, 47]
    xx, yy = expected_xy(6, 8)
    for i in range(3):
        valid = cube[i] != 0
        sel = atoms.band == i
        np.testing.assert_array_equal(
            atoms.value[sel], (cube[i][valid].astype(np.float64) * 0.01 + 0.5).astype(np.float32)
        )
        np.testing.assert_array_equal(atoms.x[sel], xx[valid].astype(np.float32))
        np.testing.assert_array_equal(atoms.y[sel], yy[valid].astype(np.float32))
    assert [b.matched_by for b in report.bands] == ["spec band order"] * 3
    assert report.n_nodata == 2 and report.bands[0].n_nodata == 1
    assert report.bands[0].scale_from == "spec"
    assert atoms.scene.crs == "EPSG:32631"
    assert atoms.scene.extra["reference_centre_m"] == [
        DEFAULT_ORIGIN_M[0] + 40,
        DEFAULT_ORIGIN_M[1] - 30,
    ]


def test_gsd_comes_from_the_file_not_the_spec(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "coarse.tif", cube, gsd_m=60.0)
    atoms, _ = read(path, spec)
    assert atoms.gsd_m.tolist() == [60.0, 60.0, 60.0]
    assert np.abs(atoms.x).max() == pytest.approx(3.5 * 60)


def test_band_mapping_permutes(tmp_path, spec, cube):
    plain = read(write_geotiff(tmp_path / "a.tif", cube), spec).atoms
    permuted = write_geotiff(tmp_path / "b.tif", cube[[2, 0, 1]])
    mapped = read(permuted, spec, bands=("B3", "B1", "B2")).atoms
    assert mapped.same_atoms(plain)
    unmapped = read(permuted, spec).atoms  # file order taken as spec order: different atoms
    assert not unmapped.same_atoms(plain)


def test_mapping_can_skip_file_bands_and_use_common_names(tmp_path, spec, cube):
    atoms, report = read(write_geotiff(tmp_path / "a.tif", cube), spec, bands=("-", "green", "red"))
    assert atoms.band_names == ["B2", "B3"]
    assert [b.asset_band for b in report.bands] == [2, 3]
    assert report.missing_bands == ["B1"]


def test_band_descriptions_name_spec_bands(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "d.tif", cube[[2, 1]], descriptions=["B3", "B2"])
    atoms, report = read(path, spec)
    assert atoms.band_names == ["B3", "B2"]
    assert {b.matched_by for b in report.bands} == {"band description"}
    np.testing.assert_array_equal(
        atoms.value[atoms.band == 0],
        read(write_geotiff(tmp_path / "f.tif", cube), spec).atoms.select_bands(["B3"]).value,
    )


def test_single_band_file_named_after_its_band(tmp_path, spec, cube):
    atoms, report = read(write_geotiff(tmp_path / "patch_12_B2.tif", cube[1]), spec)
    assert atoms.band_names == ["B2"]
    assert report.bands[0].matched_by == "file name"


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        (None, "has 2 band(s) and sensor 'toy3' has 3"),
        (("B1",), "has 2 band(s) but --bands names 1"),
        (("B1", "B1"), "mapped to two file bands"),
        (("B1", "B9"), "has no band 'B9'"),
        (("-", "-"), "every file band was skipped"),
    ],
)
def test_bad_band_mappings(tmp_path, spec, cube, bands, message):
    path = write_geotiff(tmp_path / "two.tif", cube[:2])
    with pytest.raises(BandMatchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(path, spec, bands=bands)


def test_a_sensor_is_required(tmp_path, cube):
    with pytest.raises(BandMatchError, match="pass --sensor"):
        GeoTiffReader().read(write_geotiff(tmp_path / "a.tif", cube))


def test_file_nodata_nan_and_internal_mask_are_dropped(tmp_path, spec):
    data = np.full((3, 4, 5), 7.0, dtype=np.float32)
    data[0, 0, 0] = -9999.0  # the file's no-data
    data[1, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    mask = np.ones((4, 5), dtype=np.uint8)
    mask[3, 4] = 0
    atoms, report = read(write_geotiff(tmp_path / "f.tif", data, nodata=-9999.0), spec)
    assert len(atoms) == data.size - 3
    assert [b.n_nodata for b in report.bands] == [1, 0, 0]
    assert [b.n_nonfinite for b in report.bands] == [0, 1, 1]
    masked, report = read(write_geotiff(tmp_path / "m.tif", data[:, :, :], mask=mask), spec)
    # no file no-data here: -9999 is a value; the mask drops one pixel of every band
    assert len(masked) == data.size - 2 - 3
    assert np.all(np.isfinite(masked.value))


def test_file_scale_and_offset_win_over_the_spec(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "s.tif", cube, scales=[2.0] * 3, offsets=[-1.0] * 3)
    atoms, report = read(path, spec)
    assert report.bands[0].scale_from == "file"
    np.testing.assert_array_equal(atoms.value[atoms.band == 1], cube[1].ravel() * 2.0 - 1.0)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "int32", "float64"])
def test_value_conversion_for_every_dtype(tmp_path, spec, dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo = max(info.min, -300) if info else -300.5
    hi = min(info.max, 250) if info else 250.25
    data = np.linspace(lo, hi, 3 * 4 * 4).reshape(3, 4, 4).astype(dtype)
    data[data == 0] = 1
    atoms, _ = read(write_geotiff(tmp_path / f"{dtype}.tif", data), spec)
    expected = (data.astype(np.float64) * 0.01 + 0.5).astype(np.float32)
    np.testing.assert_array_equal(atoms.value, expected.ravel())


def test_pixel_window_is_the_matching_subset(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "a.tif", cube)
    full = read(path, spec).atoms
    part = read(path, spec, window=PixelWindow(2, 1, 3, 4)).atoms
    # columns 2..4, rows 1..4 of an 8 x 6 grid centred on 0: x in [-20, 10), y in [-20, 20)
    assert part.same_atoms(full.window(-20.0, -20.0, 10.0, 20.0))
    assert len(part) == 3 * 3 * 4
    assert part.scene.extra["reference_centre_m"] == full.scene.extra["reference_centre_m"]


def test_pixel_window_is_read_through_rasterio_windows(tmp_path, spec, cube, monkeypatch):
    path = write_geotiff(tmp_path / "a.tif", cube)
    calls = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    read(path, spec, window=PixelWindow(1, 1, 2, 2))
    assert len(calls) == 3
    assert all(w is not None and (w.width, w.height) == (2, 2) for w in calls)


def test_window_partly_outside_is_clipped(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "a.tif", cube)
    atoms, report = read(path, spec, window=PixelWindow(6, 4, 100, 100))
    assert len(atoms) == 3 * 2 * 2 - 1
    assert report.window["clipped"] is True


def test_window_outside_the_scene_is_an_error(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "a.tif", cube)
    with pytest.raises(WindowError, match="outside the scene's 8 x 6 pixel grid"):
        read(path, spec, window=PixelWindow(8, 0, 2, 2))
    with pytest.raises(WindowError, match="holds no pixel of the scene"):
        read(path, spec, bbox=LonLatBBox(10.0, 10.0, 10.1, 10.1))


def test_lonlat_bbox_selects_the_pixels_inside(tmp_path, spec, cube):
    from rasterio.warp import transform_bounds

    path = write_geotiff(tmp_path / "a.tif", cube)
    full = read(path, spec).atoms
    cx, cy = full.scene.extra["reference_centre_m"]
    bounds = (cx - 20.0, cy - 10.0, cx + 10.0, cy + 30.0)  # pixel edges of the 10 m grid
    lonlat = transform_bounds("EPSG:32631", "EPSG:4326", *bounds)
    atoms, report = read(path, spec, bbox=LonLatBBox(*lonlat))
    # the lon/lat box, projected back, slightly encloses the metre box: allow 1 m of slack
    expected = full.window(-21.0, -11.0, 11.0, 31.0)
    assert len(expected) == 3 * 3 * 4
    assert atoms.same_atoms(expected)
    assert report.window["kind"] == "bbox"


def test_corrupt_and_truncated_files(tmp_path, spec, cube):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 20)
    with pytest.raises(ReaderError, match="corrupt, truncated or not an image"):
        read(garbage, spec)
    good = write_geotiff(tmp_path / "good.tif", np.ones((3, 64, 64), np.uint16))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ReaderError, match="corrupt or truncated"):
        read(truncated, spec)
    with pytest.raises(ReaderError, match="does not exist"):
        read(tmp_path / "missing.tif", spec)


def test_not_georeferenced_file_warns_and_centres(tmp_path, spec, cube):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms, _ = read(write_geotiff(tmp_path / "plain.tif", cube, crs=None), spec)
    ours = [w for w in caught if issubclass(w.category, ReaderWarning)]
    assert len(ours) == 1 and "not georeferenced" in str(ours[0].message)
    assert not [w for w in caught if "geotransform" in str(w.message)]
    xx, yy = expected_xy(6, 8)
    np.testing.assert_array_equal(atoms.x[atoms.band == 1], xx.ravel())
    assert atoms.scene.crs is None and atoms.scene.lon is None


def test_geographic_crs_is_refused(tmp_path, spec, cube):
    path = write_geotiff(
        tmp_path / "geo.tif", cube, crs="EPSG:4326", origin_m=(3.0, 45.0), gsd_m=0.001
    )
    with pytest.raises(ReaderError, match="geographic"):
        read(path, spec)


def test_progress_callback_reports_pixels(tmp_path, spec, cube):
    calls = []
    read(
        write_geotiff(tmp_path / "a.tif", cube),
        spec,
        progress=lambda d, t, label: calls.append((d, t, label)),
    )
    assert calls == [(0, 144, "B1"), (48, 144, "B2"), (96, 144, "B3"), (144, 144, "")]


def test_tiff_datetime_tag_becomes_the_scene_datetime(tmp_path, spec, cube):
    path = write_geotiff(tmp_path / "t.tif", cube, tags={"TIFFTAG_DATETIME": "2021:06:01 10:30:00"})
    atoms, _ = read(path, spec)
    assert (
        atoms.scene.datetime is not None
        and atoms.scene.datetime.isoformat() == "2021-06-01T10:30:00"
    )
