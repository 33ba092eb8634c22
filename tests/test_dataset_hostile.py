"""Dataset builds on hostile items, labels and folders: one line each, nothing stale or half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from atomizer.cli.main import build_cli
from atomizer.datasets import build_dataset, load_dataset_spec, open_dataset
from atomizer.errors import AtomizerError, DatasetError
from dataset_toys import centre_lonlat, synthetic_item, write_item_collection, write_points, write_spec


@pytest.fixture
def toy(tmp_path):
    """Two good items 20 km apart, three labels in each, and a spec maker."""
    a = synthetic_item(tmp_path / "rasters", "itemA")
    b = synthetic_item(tmp_path / "rasters", "itemB", origin=(520_000.0, 5_800_000.0))
    write_item_collection(tmp_path / "items.json", [a, b])
    points = [(*centre_lonlat(origin, off), "abc"[k])
              for origin in ((500_000.0, 5_800_000.0), (520_000.0, 5_800_000.0))
              for k, off in enumerate(((100, -100), (200, -200), (300, -300)))]
    write_points(tmp_path / "labels.geojson", points)

    def spec(**keys):
        base = {"items": "items.json", "labels": {"path": "labels.geojson", "column": "landcover"},
                "chip_m": 100.0, "shard_chips": 4}
        return write_spec(tmp_path / "spec.yaml", **{**base, **keys})

    return tmp_path, spec, points


def _features(path, rows):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props,
         "geometry": None if lonlat is None else {"type": "Point", "coordinates": list(lonlat)}}
        for lonlat, props in rows]}))


@pytest.mark.parametrize("column", ["class", "land cover", "1abc", "_private"])
def test_any_column_name_is_a_label_column(toy, column):
    tmp, spec, points = toy
    _features(tmp / "labels.geojson", [((lon, lat), {column: v}) for lon, lat, v in points])
    result = build_dataset(load_dataset_spec(spec(labels={"path": "labels.geojson", "column": column})),
                           tmp / "out", workers=0)
    assert result.n_chips == 6


@pytest.mark.parametrize("kind", ["geojson-inf", "csv-blank"])
def test_a_label_at_no_place_is_skipped_with_spatial_blocks(toy, kind):
    tmp, spec, points = toy
    if kind == "geojson-inf":  # 1e999 parses as inf
        _features(tmp / "labels.geojson", [((lon, lat), {"landcover": v}) for lon, lat, v in points])
        text = (tmp / "labels.geojson").read_text()
        (tmp / "labels.geojson").write_text(text.replace(str(points[0][1]), "1e999", 1))
        labels = {"path": "labels.geojson", "column": "landcover"}
    else:  # an empty lat cell reads as NaN
        rows = [f"{lon},{'' if k == 0 else lat},{v}" for k, (lon, lat, v) in enumerate(points)]
        (tmp / "labels.csv").write_text("lon,lat,lc\n" + "\n".join(rows) + "\n")
        labels = {"path": "labels.csv", "column": "lc"}
    result = build_dataset(load_dataset_spec(spec(labels=labels, split={"blocks_m": 1000})),
                           tmp / "out", workers=0)
    assert result.n_chips == 5
    assert "not a place on Earth" in (tmp / "out" / "errors.jsonl").read_text()


def test_tiny_blocks_do_not_overflow(toy):
    tmp, spec, _ = toy
    result = build_dataset(load_dataset_spec(spec(split={"blocks_m": 1e-320})), tmp / "out", workers=0)
    assert result.n_chips == 6


@pytest.mark.parametrize(("others", "value", "message"), [
    ("a", "1e999", "is not a class"),  # inf
    ("a", '{"k": 1}', "is a dict, not a class name"),
    (["a"], '[["b"]]', "is a list, not a class name"),
    (["a"], '["a", null]', "is a NoneType"),
    ("a", '"  "', "empty text"),
])
def test_label_values_that_are_no_class_are_refused(toy, others, value, message):
    tmp, spec, points = toy
    rows = [((lon, lat), {"landcover": "MARK" if k == 0 else others})
            for k, (lon, lat, _) in enumerate(points)]
    _features(tmp / "labels.geojson", rows)
    text = (tmp / "labels.geojson").read_text().replace('"MARK"', value)
    (tmp / "labels.geojson").write_text(text)
    with pytest.raises(DatasetError, match=message):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)


def test_every_label_list_empty_is_refused(toy):
    tmp, spec, points = toy
    _features(tmp / "labels.geojson", [((lon, lat), {"landcover": []}) for lon, lat, _ in points])
    with pytest.raises(DatasetError, match="every label list is empty"):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)


def test_csv_ids_keep_their_text_and_a_blank_pins_nothing(toy):
    tmp, spec, points = toy
    lines = ["lon,lat,lc,item"]
    for k, (lon, lat, v) in enumerate(points):
        lines.append(f"{lon},{lat},{v},{'' if k == 0 else ('itemA' if k < 3 else 'itemB')}")
    (tmp / "labels.csv").write_text("\n".join(lines) + "\n")
    s = spec(labels={"path": "labels.csv", "column": "lc", "item_id_column": "item"})
    assert build_dataset(load_dataset_spec(s), tmp / "out", workers=0).n_chips == 6


@pytest.mark.parametrize("when", ["", "NaT"])
def test_an_empty_label_date_is_no_date(toy, when):
    tmp, spec, points = toy
    _features(tmp / "labels.geojson", [((lon, lat), {"landcover": v, "when": when})
                                       for lon, lat, v in points])
    s = spec(labels={"path": "labels.geojson", "column": "landcover", "datetime_column": "when"},
             match={"max_days": 3})
    assert build_dataset(load_dataset_spec(s), tmp / "out", workers=0).n_chips == 6


def test_now_is_not_a_label_date(toy):
    tmp, spec, points = toy
    _features(tmp / "labels.geojson", [((lon, lat), {"landcover": v, "when": "now"})
                                       for lon, lat, v in points])
    s = spec(labels={"path": "labels.geojson", "column": "landcover", "datetime_column": "when"})
    with pytest.raises(DatasetError, match="'now' is not a date"):
        build_dataset(load_dataset_spec(s), tmp / "out", workers=0)


def test_an_item_time_without_zone_is_utc(toy):
    tmp, spec, points = toy
    doc = json.loads((tmp / "items.json").read_text())
    for f in doc["features"]:
        f["properties"]["datetime"] = "2022-10-05T10:00:00"
    (tmp / "items.json").write_text(json.dumps(doc))
    _features(tmp / "labels.geojson", [((lon, lat), {"landcover": v, "when": "2022-10-06"})
                                       for lon, lat, v in points])
    s = spec(labels={"path": "labels.geojson", "column": "landcover", "datetime_column": "when"},
             match={"max_days": 3})
    assert build_dataset(load_dataset_spec(s), tmp / "out", workers=0).n_chips == 6


_CATALOG = {"type": "Catalog", "id": "c", "description": "d", "stac_version": "1.0.0"}


@pytest.mark.parametrize(("doc", "message"), [
    ({"type": "FeatureCollection", "features": [1]}, "is a JSON int, not a STAC item"),
    ({"type": "FeatureCollection", "features": 5}, "'features' is a JSON int"),
    ({"type": "Catalog"}, "cannot walk the catalog"),
    ({**_CATALOG, "links": [{"rel": "child", "href": "./missing.json"}]}, "cannot walk the catalog"),
    ({**_CATALOG, "links": [{"rel": "child", "href": "/dev/zero"}]}, "cannot walk the catalog"),
    ({**_CATALOG, "links": [{"rel": "child", "href": "./items.json"}]}, "catalog"),  # itself
])
def test_item_documents_of_the_wrong_shape_are_one_error(toy, doc, message):
    tmp, spec, _ = toy
    (tmp / "items.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=message):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)


def test_two_items_with_one_id_are_refused(toy):
    tmp, spec, _ = toy
    doc = json.loads((tmp / "items.json").read_text())
    for f in doc["features"]:
        f["id"] = "same"
    (tmp / "items.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="item id 'same' appears twice"):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)


def test_classes_named_twice_are_refused(toy):
    tmp, spec, _ = toy
    with pytest.raises(AtomizerError, match=r"classes lists \['a'\] more than once"):
        load_dataset_spec(spec(labels={"path": "labels.geojson", "column": "landcover",
                                       "classes": ["a", "a", "b", "c"]}))


def test_a_build_with_no_chip_fails_without_a_manifest(toy):
    tmp, spec, _ = toy
    with pytest.raises(DatasetError, match="no chip was built"):
        build_dataset(load_dataset_spec(spec(min_atoms=10**6)), tmp / "out", workers=0)
    assert not (tmp / "out" / "manifest.json").exists()
    assert (tmp / "out" / "errors.jsonl").read_text().count("min_atoms") == 6


def test_a_failed_rebuild_leaves_no_stale_manifest(toy):
    tmp, spec, _ = toy
    build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)
    assert (tmp / "out" / "manifest.json").exists()
    raster = tmp / "rasters" / "itemB_B04.tif"
    raster.write_bytes(raster.read_bytes()[:300])  # item B now fails
    for shard in (tmp / "out" / "shards").iterdir():
        shard.unlink()
    with pytest.raises(DatasetError, match="shard tasks failed"):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0, max_failures=0)
    assert not (tmp / "out" / "manifest.json").exists()


def test_values_past_float32_are_dropped_as_non_finite(toy, tmp_path):
    import rasterio

    tmp, spec, _ = toy
    for band in ("B04", "B8A"):
        path = tmp / "rasters" / f"itemA_{band}.tif"
        with rasterio.open(path) as ds:
            profile, data = ds.profile, ds.read(1).astype(np.float64)
        profile.update(dtype="float64", nodata=None)
        data[:, : data.shape[1] // 2] = 1e300  # half of every band past float32's range
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data, 1)
    build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)
    ds = open_dataset(tmp / "out")
    for i in range(len(ds)):
        atoms, _ = ds[i]
        assert np.isfinite(atoms.value).all()
    stats = json.loads((tmp / "out" / "stats.json").read_text())  # strict JSON: no NaN
    for bands in stats["sensors"].values():
        for st in bands.values():
            assert all(np.isfinite(v) for k, v in st.items() if k != "count")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(sensors=[]), "'sensors' is not an object"),
    (lambda m: m["chips"][0].pop("label"), "'label' is not one of"),
    (lambda m: m.update(spec=None), "'spec' is not an object"),
    (lambda m: m["chips"][0].update(offset="3"), "'offset' is not a count"),
    (lambda m: m["chips"][0].update(label="zzz"), "'label' is not one of"),
    (lambda m: m["chips"][0].update(shard="../../etc/passwd"), "'shard' is not a file name"),
    (lambda m: m.update(classes=["a", "a"]), "names a class twice"),
])
def test_a_damaged_manifest_is_one_error_everywhere(toy, edit, message):
    tmp, spec, _ = toy
    build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    edit(manifest)
    (tmp / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp / "out")
    res = CliRunner().invoke(build_cli(), ["dataset", "info", str(tmp / "out")])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_a_manifest_offset_past_its_shard_is_one_error(toy):
    tmp, spec, _ = toy
    build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    manifest["chips"][0]["offset"] = 99
    (tmp / "out" / "manifest.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(build_cli(), ["dataset", "stats", str(tmp / "out")])
    assert res.exit_code == 1 and "no chip 99 in this shard" in res.output, res.output


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "localhost:8786x", "foo://x:1"])
def test_a_malformed_scheduler_address_is_one_error(toy, address):
    tmp, spec, _ = toy
    with pytest.raises(DatasetError, match="is not a Dask scheduler address"):
        build_dataset(load_dataset_spec(spec()), tmp / "out", scheduler=address)


@pytest.mark.parametrize(("href", "kind"), [("/dev/zero", "a device"), ("rasters", "a folder")])
def test_an_asset_that_is_a_device_or_folder_is_recorded_as_such(toy, href, kind):
    """GDAL would read /dev/zero without end; both were reported as 'does not exist'."""
    tmp, spec, _ = toy
    items = json.loads((tmp / "items.json").read_text())
    target = href if href.startswith("/") else str(tmp / href)
    items["features"][1]["assets"]["B04"]["href"] = target
    (tmp / "items.json").write_text(json.dumps(items))
    result = build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0, max_failures=0.9)
    assert (result.n_chips, result.n_failed) == (3, 1)
    errors = (tmp / "out" / "errors.jsonl").read_text()
    assert f"{target} is {kind}, not an image file; fix the href" in errors
