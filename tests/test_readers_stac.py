"""The STAC item reader: band matching, scaling, no-data, multi-resolution grids, sensors."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pystac
import pytest

from atomizer.errors import BandMatchError, ReaderError, WindowError
from atomizer.readers import BandMetadataWarning, PixelWindow, ReadOptions, StacReader, reader_for
from atomizer.readers.stac_build import build_stac_item
from atomizer.readers.synthetic import DEFAULT_ORIGIN_M, write_geotiff
from atomizer.sensors.spec import Band, SensorSpec, StacHints

WHEN = dt.datetime(2021, 6, 1, 10, 30, tzinfo=dt.timezone.utc)


def toy_spec(
    id_: str = "toy", *, platform: str = "toysat-1", extra_band: bool = False, **band_kw
) -> SensorSpec:
    """Blue and red at 10 m, nir at 20 m; DN * 0.001, no-data 0 (unless overridden)."""
    kw = {"scale": 0.001, "nodata": 0, **band_kw}
    bands = [
        Band(name="B02", common_name="blue", center_wavelength_nm=490, fwhm_nm=65, gsd_m=10, **kw),
        Band(
            name="B04",
            common_name="red",
            center_wavelength_nm=665,
            fwhm_nm=30,
            gsd_m=10,
            asset_keys=["red"],
            **kw,
        ),
        Band(name="B08", common_name="nir", center_wavelength_nm=842, fwhm_nm=115, gsd_m=20, **kw),
    ]
    if extra_band:
        bands.append(
            Band(name="B10", common_name="cirrus", center_wavelength_nm=1375, fwhm_nm=30, gsd_m=60)
        )
    return SensorSpec(
        id=id_,
        name=id_,
        sources=["test"],
        bands=bands,
        stac=StacHints(platform=[platform], constellation=["toysat"], instruments=["toycam"]),
    )


def eo(name, common, center_um, fwhm_um):
    return {
        "name": name,
        "common_name": common,
        "center_wavelength": center_um,
        "full_width_half_max": fwhm_um,
    }


@pytest.fixture
def rasters(tmp_path):
    """Blue, red (8 x 6 at 10 m) and nir (4 x 3 at 20 m) over the same 80 x 60 m footprint."""
    rng = np.random.default_rng(1)
    arrays = {
        "B02": rng.integers(1, 3000, (6, 8)).astype(np.uint16),
        "B04": rng.integers(1, 3000, (6, 8)).astype(np.uint16),
        "B08": rng.integers(1, 3000, (3, 4)).astype(np.uint16),
    }
    arrays["B04"][0, 0] = 0
    paths = {
        k: write_geotiff(tmp_path / f"{k}.tif", a, gsd_m=10.0 if a.shape == (6, 8) else 20.0)
        for k, a in arrays.items()
    }
    return arrays, paths


def save(item: pystac.Item, path) -> str:
    item.save_object(dest_href=str(path), include_self_link=False)
    return str(path)


def legacy_item(tmp_path, rasters, **props) -> str:
    arrays, paths = rasters
    fields = {
        "B02": {
            "eo:bands": [eo("B02", "blue", 0.49, 0.065)],
            "raster:bands": [{"nodata": 0, "scale": 0.001}],
        },
        "B04": {
            "eo:bands": [eo("B04", "red", 0.665, 0.03)],
            "raster:bands": [{"nodata": 0, "scale": 0.001}],
        },
        "B08": {
            "eo:bands": [eo("B08", "nir", 0.842, 0.115)],
            "raster:bands": [{"nodata": 0, "scale": 0.001}],
        },
    }
    properties = {
        "platform": "toysat-1",
        "constellation": "toysat",
        "instruments": ["toycam"],
        **props,
    }
    item = build_stac_item(
        "item-1", paths, datetime=WHEN, properties=properties, asset_fields=fields
    )
    return save(item, tmp_path / "item.json")


def read(source, spec=None, sensors=None, **options):
    return StacReader().read(source, sensor=spec, sensors=sensors, options=ReadOptions(**options))


def test_each_band_on_its_own_grid_relative_to_one_centre(tmp_path, rasters):
    arrays, _ = rasters
    atoms, report = read(legacy_item(tmp_path, rasters), toy_spec())
    assert atoms.band_names == ["B02", "B04", "B08"]
    assert list(atoms.band_counts()) == [48, 47, 12]
    assert atoms.gsd_m.tolist() == [10.0, 10.0, 20.0]
    assert atoms.scene.extra["reference_centre_m"] == [
        DEFAULT_ORIGIN_M[0] + 40,
        DEFAULT_ORIGIN_M[1] - 30,
    ]
    nir = atoms.band == 2
    assert sorted(set(atoms.x[nir].tolist())) == [-30.0, -10.0, 10.0, 30.0]
    assert sorted(set(atoms.y[nir].tolist())) == [-20.0, 0.0, 20.0]
    blue = atoms.band == 0
    assert sorted(set(atoms.x[blue].tolist())) == [-35.0, -25.0, -15.0, -5.0, 5.0, 15.0, 25.0, 35.0]
    np.testing.assert_array_equal(
        atoms.value[nir], (arrays["B08"].ravel().astype(np.float64) * 0.001).astype(np.float32)
    )
    assert report.sensor_from == "given"
    assert {b.matched_by for b in report.bands} == {"band name"}
    assert report.bands[1].n_nodata == 1
    assert atoms.scene.datetime == WHEN and atoms.scene.source_id == "item-1"
    assert atoms.scene.lon == pytest.approx(3.0, abs=0.01) and 45 < atoms.scene.lat < 45.2


def test_stac_11_bands_with_scale_offset_and_nodata(tmp_path, rasters):
    arrays, paths = rasters
    fields = {
        key: {
            "bands": [
                {
                    "name": key,
                    "eo:common_name": common,
                    "eo:center_wavelength": c,
                    "nodata": 7,
                    "raster:scale": 0.5,
                    "raster:offset": -1.0,
                }
            ]
        }
        for key, common, c in (("B02", "blue", 0.49), ("B04", "red", 0.665), ("B08", "nir", 0.842))
    }
    arrays["B02"].flat[3] = 7  # the rasters fixture wrote B02 before this: rewrite it
    write_geotiff(paths["B02"], arrays["B02"])
    item = build_stac_item("i", paths, datetime=WHEN, asset_fields=fields)
    atoms, report = read(save(item, tmp_path / "i.json"), toy_spec())
    assert report.bands[0].scale_from == "STAC bands" and report.bands[0].nodata == [0.0, 7.0]
    assert list(atoms.band_counts()) == [47, 47, 12]
    np.testing.assert_array_equal(atoms.value[atoms.band == 2], arrays["B08"].ravel() * 0.5 - 1.0)


def test_spec_scale_applies_without_raster_metadata_and_keys_match(tmp_path, rasters):
    arrays, paths = rasters
    item = build_stac_item(
        "i", {"blue": paths["B02"], "red": paths["B04"], "B8": paths["B08"]}, datetime=WHEN
    )
    atoms, report = read(save(item, tmp_path / "i.json"), toy_spec(scale=0.002, offset=0.1))
    assert [b.asset for b in report.bands] == ["blue", "red", "B8"]
    assert {b.matched_by for b in report.bands} == {"asset key"}
    assert report.bands[0].scale_from == "spec"
    np.testing.assert_array_equal(
        atoms.value[atoms.band == 0], (arrays["B02"].ravel() * 0.002 + 0.1).astype(np.float32)
    )


def test_common_name_shared_by_two_spec_bands_picks_the_nearest_centre(tmp_path, rasters):
    _, paths = rasters
    spec = toy_spec()
    spec = spec.model_copy(
        update={
            "bands": [
                *spec.bands,
                Band(name="B8A", common_name="nir", center_wavelength_nm=865, fwhm_nm=20, gsd_m=20),
            ]
        }
    )
    fields = {"x": {"eo:bands": [eo(None, "nir", 0.864, 0.02)]}}
    item = build_stac_item("i", {"x": paths["B08"]}, datetime=WHEN, asset_fields=fields)
    _, report = read(save(item, tmp_path / "i.json"), spec)
    assert [(b.band, b.matched_by) for b in report.bands] == [("B8A", "common name")]


def test_multiband_asset_and_band_order(tmp_path, rasters):
    arrays, paths = rasters
    stack = np.stack([arrays["B04"], arrays["B02"]])
    multi = write_geotiff(tmp_path / "rb.tif", stack)
    fields = {"rb": {"eo:bands": [eo("B04", "red", 0.665, 0.03), eo("B02", "blue", 0.49, 0.065)]}}
    item = build_stac_item(
        "i", {"rb": multi, "B08": paths["B08"]}, datetime=WHEN, asset_fields=fields
    )
    atoms, report = read(save(item, tmp_path / "m.json"), toy_spec())
    assert [(b.band, b.asset, b.asset_band) for b in report.bands] == [
        ("B02", "rb", 2),
        ("B04", "rb", 1),
        ("B08", "B08", 1),
    ]
    assert atoms.same_atoms(read(legacy_item(tmp_path, rasters), toy_spec()).atoms)


def test_a_multiband_asset_without_band_metadata_is_refused(tmp_path, rasters):
    arrays, _ = rasters
    stack = write_geotiff(tmp_path / "stack.tif", np.stack([arrays["B02"], arrays["B04"]]))
    item = build_stac_item("s", {"red": stack}, datetime=WHEN)
    with pytest.raises(BandMatchError, match="has 2 bands but the asset has no band metadata"):
        read(save(item, tmp_path / "s.json"), toy_spec())


def test_non_band_assets_are_ignored(tmp_path, rasters):
    _, paths = rasters
    scl = write_geotiff(tmp_path / "SCL.tif", np.ones((3, 4), np.uint8), gsd_m=20.0)
    (tmp_path / "meta.xml").write_text("<xml/>")
    item = pystac.Item.from_file(legacy_item(tmp_path, rasters))
    item.add_asset(
        "SCL",
        pystac.Asset(
            href=str(scl),
            media_type=pystac.MediaType.GEOTIFF,
            roles=["data"],
            extra_fields={"raster:bands": [{"nodata": 0}]},
        ),
    )
    item.add_asset(
        "thumbnail",
        pystac.Asset(
            href=str(paths["B02"]), media_type=pystac.MediaType.GEOTIFF, roles=["thumbnail"]
        ),
    )
    item.add_asset(
        "metadata",
        pystac.Asset(
            href=str(tmp_path / "meta.xml"), media_type=pystac.MediaType.XML, roles=["metadata"]
        ),
    )
    atoms, report = read(save(item, tmp_path / "x.json"), toy_spec())
    assert atoms.band_names == ["B02", "B04", "B08"]
    assert set(report.ignored_assets) == {"SCL", "thumbnail", "metadata"}


def test_a_duplicate_asset_of_a_band_is_read_once(tmp_path, rasters):
    _, paths = rasters
    item = pystac.Item.from_file(legacy_item(tmp_path, rasters))
    item.add_asset(
        "B04-copy",
        pystac.Asset(
            href=str(paths["B04"]),
            media_type=pystac.MediaType.GEOTIFF,
            roles=["data"],
            extra_fields={"eo:bands": [eo(None, "red", 0.665, 0.03)]},
        ),
    )
    atoms, report = read(save(item, tmp_path / "d.json"), toy_spec())
    assert atoms.band_names == ["B02", "B04", "B08"] and report.bands[1].asset == "B04"
    assert "B04-copy" in report.ignored_assets


def test_relative_hrefs_resolve_against_the_item(tmp_path, rasters):
    path = legacy_item(tmp_path, rasters)
    data = json.loads(open(path).read())
    for asset in data["assets"].values():
        asset["href"] = "./" + asset["href"].rsplit("/", 1)[1]
    (tmp_path / "rel.json").write_text(json.dumps(data))
    assert len(read(tmp_path / "rel.json", toy_spec()).atoms) == 107


def test_sensor_detected_from_properties_and_band_fit(tmp_path, rasters):
    item = legacy_item(tmp_path, rasters)
    l1 = toy_spec("toy-l1", extra_band=True)  # claims the item too, but has a band the item lacks
    other = toy_spec("othersat", platform="othersat-1").model_copy(
        update={"stac": StacHints(platform=["othersat-1"])}
    )
    atoms, report = read(item, sensors=[l1, toy_spec("toy-l2"), other])
    assert atoms.scene.sensor_id == "toy-l2" and report.sensor_id == "toy-l2"
    assert report.sensor_from.startswith("detected from item properties")
    with pytest.raises(BandMatchError, match="equally well"):
        read(item, sensors=[toy_spec("a"), toy_spec("b")])


def test_no_sensor_claims_and_no_band_metadata_is_an_error(tmp_path, rasters):
    _, paths = rasters
    item = build_stac_item("bare", paths, datetime=WHEN, properties={"platform": "mystery-1"})
    with pytest.raises(
        BandMatchError, match="cannot tell which sensor.*platform='mystery-1'.*pass --sensor"
    ):
        read(save(item, tmp_path / "bare.json"), sensors=[toy_spec()])


def test_unknown_sensor_with_full_band_metadata_builds_its_own_spec(tmp_path, rasters):
    source = legacy_item(tmp_path, rasters, platform="newsat-7")
    unrelated = toy_spec("other").model_copy(update={"stac": StacHints(platform=["othersat-1"])})
    atoms, report = read(source, sensors=[unrelated])
    assert report.sensor_id == "newsat-7" and report.sensor_from == "item band metadata"
    assert atoms.band_names == ["B02", "B04", "B08"]
    assert atoms.center_wavelength_nm.tolist() == pytest.approx([490, 665, 842])
    assert len(atoms) == 107


def test_item_wavelengths_disagreeing_with_the_spec_warn(tmp_path, rasters):
    _, paths = rasters
    fields = {"B04": {"eo:bands": [eo("B04", "red", 0.700, 0.03)]}}
    item = build_stac_item("w", {"B04": paths["B04"]}, datetime=WHEN, asset_fields=fields)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, report = read(save(item, tmp_path / "w.json"), toy_spec())
    msgs = [str(w.message) for w in caught if issubclass(w.category, BandMetadataWarning)]
    assert len(msgs) == 1 and "700 nm" in msgs[0] and "665 nm" in msgs[0]
    assert report.warnings == msgs


@pytest.mark.parametrize(
    ("center", "fwhm", "message"),
    [
        (665, 30, "looks like nanometres"),
        (0.665, 0.9, "not below the centre"),
        (0.665, 30, "not below"),
        (42.0, None, "not a plausible number of micrometres"),
    ],
)
def test_unit_slips_in_item_wavelengths_are_errors(tmp_path, rasters, center, fwhm, message):
    _, paths = rasters
    fields = {"B04": {"eo:bands": [eo("B04", "red", center, fwhm)]}}
    item = build_stac_item("u", {"B04": paths["B04"]}, datetime=WHEN, asset_fields=fields)
    with pytest.raises(ReaderError, match=message):
        read(save(item, tmp_path / "u.json"), toy_spec())


def test_an_asset_no_band_matches_is_named(tmp_path, rasters):
    _, paths = rasters
    fields = {"B10": {"eo:bands": [eo("B10", "cirrus", 1.375, 0.03)]}}
    item = build_stac_item("c", {**paths, "B10": paths["B08"]}, datetime=WHEN, asset_fields=fields)
    source = save(item, tmp_path / "c.json")
    with pytest.raises(
        BandMatchError,
        match=r"asset 'B10' \(B10, cirrus, 1375 nm\) matches no band.*expects B02 \(blue, 490 nm\)",
    ):
        read(source, toy_spec())
    atoms, report = read(source, toy_spec(), bands=("B02", "red"))  # a selection ignores it
    assert atoms.band_names == ["B02", "B04"] and "B10" in report.ignored_assets
    with pytest.raises(BandMatchError, match="no asset holds band"):
        read(legacy_item(tmp_path, rasters), toy_spec(extra_band=True), bands=("B10", "B02"))


def test_missing_asset_file(tmp_path, rasters):
    path = legacy_item(tmp_path, rasters)
    rasters[1]["B08"].unlink()
    with pytest.raises(ReaderError, match="asset 'B08': file .*B08.tif does not exist"):
        read(path, toy_spec())


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "invalid JSON"), ('{"type": "FeatureCollection", "features": []}', "not a")],
)
def test_bad_item_files(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ReaderError, match=message):
        read(tmp_path / "bad.json", toy_spec())
    with pytest.raises(ReaderError, match="no such STAC item"):
        read(tmp_path / "nope.json", toy_spec())


def test_pixel_window_on_the_finest_grid_keeps_the_full_scene_frame(tmp_path, rasters):
    source = legacy_item(tmp_path, rasters)
    full = read(source, toy_spec()).atoms
    part, report = read(source, toy_spec(), window=PixelWindow(2, 2, 4, 2))
    # columns 2-5 and rows 2-3 of the 10 m grid: x in [-20, 20), y in [-10, 10)
    assert part.same_atoms(full.window(-20.0, -10.0, 20.0, 10.0))
    assert list(part.band_counts()) == [8, 8, 2]
    assert report.window["grid_gsd_m"] == 10.0
    with pytest.raises(WindowError):
        read(source, toy_spec(), window=PixelWindow(0, 6, 1, 1))


def test_reader_for_picks_by_suffix(host):
    assert reader_for("a/item.json", host.readers).name == "stac"
    assert reader_for("scene.TIF", host.readers).name == "geotiff"
    assert reader_for("b.jp2", host.readers).name == "geotiff"
    with pytest.raises(ReaderError, match="no reader accepts"):
        reader_for("notes.txt", host.readers)


def test_names_contradicted_by_wavelengths_do_not_match(tmp_path, rasters):
    """An asset called B05 at 704 nm is not a spec's B05 at 865 nm: it is matched by wavelength."""
    _, paths = rasters
    spec = toy_spec()
    red = spec.band("B04")
    # the item calls the red raster "B02" but gives red's wavelength: names lose to physics
    fields = {"B02": {"eo:bands": [eo("B02", None, red.center_wavelength_nm / 1000, red.fwhm_nm / 1000)]}}
    item = build_stac_item("c", {"B02": paths["B04"]}, datetime=WHEN, asset_fields=fields)
    atoms, report = read(save(item, tmp_path / "c.json"), spec)
    assert atoms.band_names == ["B04"]
    assert report.bands[0].matched_by == "centre wavelength"


# --- Sentinel-2 L2A product folders (MTD_MSIL2A.xml + band files) ---------------------------------
MTD_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info><Product_Info>
    <PRODUCT_START_TIME>2022-10-05T11:54:11.024Z</PRODUCT_START_TIME>
    <PRODUCT_URI>S2A_MSIL2A_TOY.SAFE</PRODUCT_URI>
    <PROCESSING_BASELINE>04.00</PROCESSING_BASELINE>
    <Datatake><SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Datatake>
  </Product_Info>
  <Product_Image_Characteristics>
    <QUANTIFICATION_VALUES_LIST>{quantification}</QUANTIFICATION_VALUES_LIST>
    <BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id="1">-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>
    <Spectral_Information_List>
      <Spectral_Information bandId="1" physicalBand="B2">
        <Wavelength><CENTRAL>492.7</CENTRAL></Wavelength>
        <Spectral_Response><STEP>1</STEP><VALUES>0.1 0.6 1 0.9 0.4</VALUES></Spectral_Response>
      </Spectral_Information>
    </Spectral_Information_List>
  </Product_Image_Characteristics></n1:General_Info>
  <n1:Quality_Indicators_Info><Cloud_Coverage_Assessment>12.5</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_User_Product>
"""


def s2_product(
    folder, *, quantification="<BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
):
    """A toy L2A product: B02 at 10 m and 60 m, SCL at 60 m, and its MTD_MSIL2A.xml."""
    folder.mkdir()
    (folder / "MTD_MSIL2A.xml").write_text(MTD_TEMPLATE.format(quantification=quantification))
    dn = np.full((6, 6), 1500, np.uint16)
    write_geotiff(folder / "T00TOY_20221005T115411_B02_10m.tif", dn, gsd_m=10.0, nodata=0)
    write_geotiff(folder / "T00TOY_20221005T115411_B02_60m.tif", dn[:1, :1], gsd_m=60.0, nodata=0)
    write_geotiff(folder / "T00TOY_20221005T115411_SCL_60m.tif", dn[:1, :1], gsd_m=60.0)
    return folder


def test_sentinel2_product_metadata_and_band_files(tmp_path):
    from atomizer.readers.stac_build import read_sentinel2_l2a_product, sentinel2_l2a_item

    folder = s2_product(tmp_path / "product")
    product = read_sentinel2_l2a_product(folder)
    assert product.band_files == {"B02": folder / "T00TOY_20221005T115411_B02_10m.tif"}
    assert product.resolution_m == {"B02": 10.0}  # the finest of the band's files
    assert product.scl_file == folder / "T00TOY_20221005T115411_SCL_60m.tif"
    info = product.bands["B02"]
    assert (info.band_id, info.center_nm, info.fwhm_nm, info.add_offset_dn) == (1, 492.7, 3, -1000)
    assert product.spacecraft == "Sentinel-2A" and product.cloud_cover_pct == 12.5
    assert product.start_time == dt.datetime(2022, 10, 5, 11, 54, 11, 24000, tzinfo=dt.timezone.utc)
    at_60 = read_sentinel2_l2a_product(folder, resolution_m=60)
    assert at_60.band_files["B02"].name.endswith("_B02_60m.tif") and at_60.scl_file is not None
    item = sentinel2_l2a_item(folder)
    assert item.id == "S2A_MSIL2A_TOY" and set(item.assets) == {"B02", "SCL"}
    raster = item.assets["B02"].extra_fields["raster:bands"][0]
    assert raster["scale"] == pytest.approx(1e-4) and raster["offset"] == pytest.approx(-0.1)
    assert raster["spatial_resolution"] == 10.0


def test_sentinel2_product_without_quantification_uses_the_default(tmp_path):
    from atomizer.readers.stac_build import DEFAULT_BOA_QUANTIFICATION, sentinel2_l2a_item

    item = sentinel2_l2a_item(s2_product(tmp_path / "product", quantification=""))
    raster = item.assets["B02"].extra_fields["raster:bands"][0]
    assert raster["scale"] == pytest.approx(1.0 / DEFAULT_BOA_QUANTIFICATION)


@pytest.mark.parametrize(
    "text,message",
    [
        (None, "no MTD_MSIL2A.xml; is this a Sentinel-2 L2A product folder"),
        ("<n1:Level-2A_User_Product><unclosed>", "MTD_MSIL2A.xml: not valid XML"),
        ("", "MTD_MSIL2A.xml: not valid XML"),
        (
            MTD_TEMPLATE.format(quantification="").replace("2022-10-05T11", "yesterday"),
            "unexpected metadata value",
        ),
    ],
)
def test_a_missing_or_corrupt_sentinel2_metadata_file_is_one_reader_error(tmp_path, text, message):
    from atomizer.readers.stac_build import read_sentinel2_l2a_product, sentinel2_l2a_item

    folder = s2_product(tmp_path / "product")
    if text is None:
        (folder / "MTD_MSIL2A.xml").unlink()
    else:
        (folder / "MTD_MSIL2A.xml").write_text(text)
    for call in (read_sentinel2_l2a_product, sentinel2_l2a_item):
        with pytest.raises(ReaderError, match=message) as info:
            call(folder)
        assert "\n" not in str(info.value)
