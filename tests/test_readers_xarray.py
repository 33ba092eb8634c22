"""xarray arrays (stackstac, odc-stac, rioxarray) to atoms: metadata, grid, properties, reader."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_data_path
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.cli.main import build_cli
from atomizer.errors import BandMatchError, ReaderError
from atomizer.readers import ReaderWarning, reader_for
from atomizer.readers.xarray import from_xarray

xr = pytest.importorskip("xarray")
Affine = pytest.importorskip("affine").Affine

X0, Y0 = 500_000.0, 5_800_000.0  # top-left corner, EPSG:32629 (the shared S2 tile's zone)
#: Sentinel-2A B02, B04, B08 as an earth-search item's eo:bands give them (micrometres).
EO_BANDS = {
    "blue": (0.49, 0.098),
    "red": (0.665, 0.038),
    "nir": (0.842, 0.145),
}


def stackstac_like(values: np.ndarray, *, res: float = 10.0, platform: str | None = "sentinel-2a"):
    """A DataArray laid out as ``stackstac.stack`` returns one: dims time, band, y, x; top-left
    x / y coordinates; eo band coordinates in micrometres; item properties as coordinates."""
    _, nb, h, w = values.shape
    names = list(EO_BANDS)[:nb]
    coords = {
        "time": [np.datetime64("2022-10-05T11:54:11")],
        "id": ("time", ["S2A_29UNU_20221005_0_L2A"]),
        "band": names,
        "x": X0 + res * np.arange(w),
        "y": Y0 - res * np.arange(h),
        "common_name": ("band", names),
        "center_wavelength": ("band", [EO_BANDS[n][0] for n in names]),
        "full_width_half_max": ("band", [EO_BANDS[n][1] for n in names]),
        "title": ("band", [f"{n} reflectance" for n in names]),
        "epsg": 32629,
    }
    if platform is not None:
        coords["platform"] = platform
    attrs = {"crs": "epsg:32629", "transform": Affine(res, 0, X0, 0, -res, Y0), "resolution": res}
    return xr.DataArray(values, dims=("time", "band", "y", "x"), coords=coords, attrs=attrs)


def cube(nb: int = 3, h: int = 3, w: int = 4) -> np.ndarray:
    return (np.arange(nb * h * w, dtype=np.float64).reshape(1, nb, h, w) + 1) / 100.0


def test_stackstac_array_detects_the_sensor_and_keeps_the_grid(host):
    values = cube()
    values[0, 1, 0, 0] = np.nan
    reading = from_xarray(stackstac_like(values), host=host)
    atoms, report = reading
    assert report.sensor_id == "sentinel2a-l2a" and "platform" in report.sensor_from
    assert atoms.band_names == ["B02", "B04", "B08"]
    assert len(atoms) == 3 * 12 - 1  # the NaN is dropped
    assert {b.gsd_m for b in atoms.bands} == {10.0}  # the array's grid, not 10 / 20 m native
    # top-left coordinates (stackstac's default): centres are half a pixel in; 4 x 3 pixels
    assert report.reference_centre_m == (X0 + 20.0, Y0 - 15.0)
    blue = atoms.band == 0
    np.testing.assert_array_equal(atoms.x[blue][:4], [-15.0, -5.0, 5.0, 15.0])
    np.testing.assert_array_equal(atoms.y[blue][::4], [10.0, 0.0, -10.0])  # north first
    np.testing.assert_allclose(atoms.value[blue], values[0, 0].ravel().astype(np.float32))
    assert atoms.scene.datetime == dt.datetime(2022, 10, 5, 11, 54, 11, tzinfo=dt.timezone.utc)
    assert atoms.scene.source_id == "S2A_29UNU_20221005_0_L2A"
    assert atoms.scene.crs == "EPSG:32629" and 52 < atoms.scene.lat < 53
    assert any("already resampled onto one grid of 10 m" in w for w in report.warnings)


def test_resampled_grid_is_warned_when_it_differs_from_the_native_one(host):
    with pytest.warns(ReaderWarning, match="resampled onto one grid of 20 m"):
        atoms, _ = from_xarray(stackstac_like(cube(), res=20.0), host=host)
    assert {b.gsd_m for b in atoms.bands} == {20.0}


def test_without_a_platform_the_bands_own_wavelengths_make_the_sensor(host):
    atoms, report = from_xarray(stackstac_like(cube(), platform=None), host=host)
    assert report.sensor_from == "item band metadata"
    assert atoms.band_names == ["blue", "red", "nir"]
    np.testing.assert_allclose([b.center_wavelength_nm for b in atoms.bands], [490, 665, 842])
    np.testing.assert_allclose([b.fwhm_nm for b in atoms.bands], [98, 38, 145])


def test_given_sensor_and_band_selection(host):
    atoms, report = from_xarray(
        stackstac_like(cube()), sensor="sentinel2a-l2a", host=host, bands=["B04"]
    )
    assert atoms.band_names == ["B04"] and report.sensor_from == "given"


def test_integer_dns_are_scaled_by_the_spec_and_its_nodata_dropped(host):
    dn = stackstac_like(np.full((1, 3, 2, 2), 2000, dtype=np.uint16))
    dn[0, 0, 0, 0] = 0  # Sentinel-2 L2A no-data
    atoms, report = from_xarray(dn, host=host)
    assert len(atoms) == 11 and report.bands[0].n_nodata == 1
    np.testing.assert_allclose(atoms.value, 0.1, atol=1e-6)  # (2000 - 1000) / 10000
    physical, _ = from_xarray(dn.astype(np.float32), host=host, values="physical")
    assert len(physical) == 12 and physical.value.max() == 2000.0


def test_cf_scale_factor_and_fill_value_attributes_apply(host):
    da = stackstac_like(np.full((1, 3, 2, 2), 500, dtype=np.int16))
    da[0, 2, 1, 1] = -9999
    da.attrs.update(scale_factor=0.001, add_offset=0.5, _FillValue=-9999)
    atoms, report = from_xarray(da, host=host)
    assert len(atoms) == 11 and report.bands[0].scale_from == "array attributes"
    np.testing.assert_allclose(atoms.value, 1.0)


def test_odc_stac_dataset_reads_like_the_dataarray(host):
    da = stackstac_like(cube()).isel(time=0)
    centres = da.assign_coords(x=da.x + 5.0, y=da.y - 5.0)  # odc-stac: pixel-centre coordinates
    centres.attrs = {}
    ds = xr.Dataset({n: centres.sel(band=n, drop=True) for n in ("red", "nir")})
    ds = ds.drop_vars(["epsg"])
    ds = ds.assign_coords(spatial_ref=xr.DataArray(0, attrs={"crs_wkt": "EPSG:32629"}))
    for name in ds.data_vars:
        ds[name].attrs["nodata"] = 0
    from_ds, report = from_xarray(ds, sensor="sentinel2a-l2a", host=host)
    from_da, _ = from_xarray(da, sensor="sentinel2a-l2a", host=host, bands=["B04", "B08"])
    assert from_ds.band_names == ["B04", "B08"] and report.crs == "EPSG:32629"
    assert from_ds.same_atoms(from_da)
    ds["nir"][0, 0] = 0.0  # the variable's own no-data value
    assert len(from_xarray(ds, sensor="sentinel2a-l2a", host=host).atoms) == len(from_da) - 1
    assert report.reference_centre_m == (X0 + 20.0, Y0 - 15.0)


def test_rioxarray_geotiff_equals_the_geotiff_reader(host):
    rioxarray = pytest.importorskip("rioxarray")
    folder = shared_data_path("bigearthnet_s2_examples", "S2A_MSIL2A_20170613T101031_87_48")
    path = folder / "S2A_MSIL2A_20170613T101031_87_48_B05.tif"
    via_xarray, report = from_xarray(
        rioxarray.open_rasterio(path), sensor="sentinel2a-l2a", host=host, bands=["B05"]
    )
    geotiff = reader_for(path, host.readers)
    via_file, _ = geotiff.read(path, sensor=host.sensors.get("sentinel2a-l2a"))
    assert via_xarray.same_atoms(via_file) and len(via_xarray) == 60 * 60
    assert via_xarray.scene.lon == via_file.scene.lon and report.bands[0].scale_from == "spec"
    assert via_xarray.bands[0].gsd_m == 20.0


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda da: xr.concat([da, da], "time"), ReaderError, "holds 2 times.*isel"),
        (lambda da: da.assign_attrs(crs="EPSG:4326"), ReaderError, "geographic CRS"),
        (lambda da: da.assign_coords(center_wavelength=("band", [490.0, 665.0, 842.0])),
         ReaderError, "looks like nanometres"),
        (lambda da: da.assign_coords(x=[0.0, 10.0, 25.0, 30.0]), ReaderError, "not evenly spaced"),
        (lambda da: da.rename(band="channel"), ReaderError, "needs band, y and x"),
        (lambda da: da.assign_coords(band=["red", "red", "nir"]), ReaderError, "red appear twice"),
    ],
)
def test_bad_arrays_are_one_clear_error(host, change, error, match):
    with pytest.raises(error, match=match):
        from_xarray(change(stackstac_like(cube())), host=host)


def test_a_band_the_sensor_does_not_have_is_named(host):
    da = stackstac_like(cube()).assign_coords(
        band=["blue", "red", "SCL"], common_name=("band", ["blue", "red", ""]),
        center_wavelength=("band", [0.49, 0.665, np.nan]),
        full_width_half_max=("band", [0.098, 0.038, np.nan]),
    )
    with pytest.raises(BandMatchError, match="'SCL'.*matches no band of sensor 'landsat8'"):
        from_xarray(da, sensor="landsat8", host=host)


def test_numbered_bands_without_metadata_need_a_sensor(host):
    eo = ["common_name", "center_wavelength", "full_width_half_max"]
    da = stackstac_like(cube()).drop_vars(eo)
    da = da.assign_coords(band=[1, 2, 3])
    with pytest.raises(BandMatchError, match="pass sensor="):
        from_xarray(da, host=host)
    atoms, _ = from_xarray(da, sensor="sentinel2a-l2a", host=host, bands=["B02", "-", "B08"])
    assert atoms.band_names == ["B02", "B08"]


@pytest.fixture(scope="module")
def module_host(tmp_path_factory):
    from atomizer.plugins.host import PluginHost

    xdg = tmp_path_factory.mktemp("xdg")
    return PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(xdg)})


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 3), st.integers(2, 5), st.integers(2, 5)),
)
def test_atoms_are_the_finite_pixels_whatever_the_dim_order(module_host, data, shape):
    nb, h, w = shape
    values = data.draw(
        st.lists(
            st.one_of(st.floats(-1.0, 2.0, width=32), st.just(float("nan"))),
            min_size=nb * h * w,
            max_size=nb * h * w,
        )
    )
    arr = np.asarray(values, dtype=np.float32).reshape(1, nb, h, w)
    if not np.isfinite(arr).any():
        arr[0, 0, 0, 0] = 0.5
    da = stackstac_like(arr)
    host = module_host
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReaderWarning)
        base, _ = from_xarray(da, host=host)
        order = data.draw(st.permutations(["time", "band", "y", "x"]))
        flipped = da.transpose(*order).isel(y=slice(None, None, -1))  # y ascending: south first
        other, _ = from_xarray(flipped, host=host)
    assert len(base) == int(np.isfinite(arr).sum())
    assert other.same_atoms(base)


def test_tokenize_reads_a_netcdf_file(host, tmp_path):
    path = tmp_path / "scene.nc"
    da = stackstac_like(cube()).isel(time=0)
    da.attrs = {"crs": "EPSG:32629"}
    da.drop_vars(["title"]).rename("reflectance").to_netcdf(path)
    out = tmp_path / "scene.atoms"
    result = CliRunner().invoke(
        build_cli(host), ["tokenize", str(path), "--sensor", "sentinel2a-l2a", "-o", str(out),
                          "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"] == "xarray" and report["n_atoms"] == 36 and out.exists()
    bad = CliRunner().invoke(build_cli(host), ["tokenize", str(path), "--window", "0,0,1,1"])
    assert bad.exit_code != 0 and "crop it with xarray" in bad.output
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"CDF\x01" + b"\x00" * 7)
    bad = CliRunner().invoke(build_cli(host), ["tokenize", str(corrupt), "--sensor", "landsat8"])
    lines = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
    assert bad.exit_code != 0 and len(lines) == 1 and "xarray cannot open it" in lines[0]
