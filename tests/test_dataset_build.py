"""``atomizer dataset build``: chips on native grids from the real S2 tile, resume, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from atomizer.cli.main import build_cli
from atomizer.datasets import AtomsDataset, build_dataset, load_dataset_spec, open_dataset
from atomizer.datasets.shards import ShardFile
from atomizer.errors import DatasetError
from conftest import shared_data_path
from dataset_toys import (
    S2_FOLDER,
    SCL_NAME,
    centre_lonlat,
    s2_tile_item,
    scl_points,
    synthetic_item,
    write_item_collection,
    write_points,
    write_spec,
)

CHIP_M = 300.0  # 5 x 5 pixels of the 60 m tile


@pytest.fixture(scope="module")
def tile_inputs(tmp_path_factory):
    folder = shared_data_path(*S2_FOLDER)
    tmp = tmp_path_factory.mktemp("tile")
    write_item_collection(tmp / "items.json", [s2_tile_item(folder)])
    points = scl_points(folder / SCL_NAME, per_class=3)
    points.append((-20.0, 40.0, "water"))  # in the Atlantic: outside the tile
    write_points(tmp / "labels.geojson", points)
    spec = write_spec(tmp / "spec.yaml", items="items.json",
                      labels={"path": "labels.geojson", "column": "landcover"},
                      chip_m=CHIP_M, shard_chips=4, split={"blocks_m": 20000})
    return tmp, spec, folder


@pytest.fixture(scope="module")
def built(tile_inputs):
    tmp, spec, _ = tile_inputs
    out = tmp / "out"
    result = build_dataset(load_dataset_spec(spec), out, workers=0)
    return out, result


def run(host, *args):
    return CliRunner().invoke(build_cli(host), [str(a) for a in args])


def test_every_label_inside_the_tile_becomes_one_chip_and_the_outside_one_is_recorded(built):
    out, result = built
    assert (result.n_tasks, result.n_chips, result.n_failed) == (3, 9, 0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "atomizer.dataset" and manifest["version"] == 1
    assert manifest["classes"] == ["cloud", "vegetation", "water"]
    assert "sentinel2a-l2a" in manifest["sensors"]  # embedded: readable without the YAML
    assert sorted(r["label_index"] for r in manifest["chips"]) == list(range(9))
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["label_index"] for e in errors] == [9]
    assert "outside every item's footprint" in errors[0]["error"]


def test_chip_atoms_are_the_native_pixels_of_the_footprint(built, tile_inputs):
    import rasterio
    from rasterio.warp import transform

    out, _ = built
    _, _, folder = tile_inputs
    ds = open_dataset(out)
    atoms, label = ds[0]
    row = ds.row(0)
    assert label == ds.class_names.index(row["label"])
    assert atoms.band_names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"]
    assert set(atoms.gsd_m.tolist()) == {60.0}
    b04 = atoms.select_bands(["B04"])
    with rasterio.open(folder / "T29UNU_20221005T115411_B04_60m.jp2") as src:
        (x,), (y,) = transform("EPSG:4326", src.crs, [row["lon"]], [row["lat"]])
        t = src.transform
        c0 = int(np.ceil((x - CHIP_M / 2 - t.c) / t.a - 0.5))
        r0 = int(np.ceil((t.f - (y + CHIP_M / 2)) / -t.e - 0.5))
        dn = src.read(1, window=((r0, r0 + 5), (c0, c0 + 5)))
    expected = np.sort((dn[dn > 0].astype(np.float64) * 1e-4 - 0.1).astype(np.float32))
    np.testing.assert_allclose(np.sort(b04.value), expected, rtol=1e-6)
    assert np.all(np.abs(b04.x) < CHIP_M / 2) and np.all(np.abs(b04.y) < CHIP_M / 2)


def test_splits_are_per_block_and_stats_merge_exactly(built):
    out, _ = built
    ds = open_dataset(out)
    total = {}
    for i in range(len(ds)):
        atoms, _ = ds[i]
        for b, name in enumerate(atoms.band_names):
            v = atoms.value[atoms.band == b].astype(np.float64)
            c, s = total.get(name, (0, 0.0))
            total[name] = (c + v.size, s + v.sum())
    stats = json.loads((out / "stats.json").read_text())["sensors"]["sentinel2a-l2a"]
    for name, (count, s) in total.items():
        assert stats[name]["count"] == count
        assert stats[name]["mean"] == pytest.approx(s / count, rel=1e-9)
    splits = {ds.row(i)["split"] for i in range(len(ds))}
    assert splits <= {"train", "validation", "test"}
    for split in splits:
        part = AtomsDataset(out, split=split)
        assert all(part.row(i)["split"] == split for i in range(len(part)))


def test_second_build_reuses_every_shard_and_rebuilds_only_missing_or_corrupt(tile_inputs, built):
    tmp, spec, _ = tile_inputs
    out = tmp / "resume"
    spec_model = load_dataset_spec(spec)
    build_dataset(spec_model, out, workers=0)
    shards = sorted((out / "shards").iterdir())
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    outputs = {name: (out / name).read_bytes() for name in ("manifest.json", "stats.json", "errors.jsonl")}
    again = build_dataset(spec_model, out, workers=0)
    assert (again.n_reused, again.n_built) == (3, 0)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards} == before
    shards[0].unlink()
    shards[1].write_bytes(shards[1].read_bytes()[:500])  # truncated: header check fails
    third = build_dataset(spec_model, out, workers=0)
    assert (third.n_reused, third.n_built) == (1, 2)
    assert {p.name: p.read_bytes() for p in shards} == {k: v[0] for k, v in before.items()}
    # headers read back from reused shards and those returned by fresh tasks make the same files
    assert {name: (out / name).read_bytes() for name in outputs} == outputs


def test_quality_mask_drops_atoms_on_flagged_scl_pixels(tile_inputs):
    import rasterio

    tmp, spec, folder = tile_inputs
    out = tmp / "masked"
    model = load_dataset_spec(spec, ["mask=[cloud,nodata]", "min_atoms=1"])
    build_dataset(model, out, workers=0)
    ds = open_dataset(out)
    rows = [ds.row(i) for i in range(len(ds))]
    assert all(r["label"] != "cloud" for r in rows)  # cloud chips lose every atom: skipped
    errors = (out / "errors.jsonl").read_text()
    assert errors.count("masked") == 3
    with rasterio.open(folder / SCL_NAME) as scl_ds:
        scl, t = scl_ds.read(1), scl_ds.transform
    for i in range(len(ds)):
        atoms, _ = ds[i]
        cx, cy = atoms.scene.extra["reference_centre_m"]
        cols = np.floor((atoms.x + cx - t.c) / t.a).astype(int)
        rws = np.floor((atoms.y + cy - t.f) / t.e).astype(int)
        assert not np.isin(scl[rws, cols], [0, 8, 9]).any()


def test_cli_build_info_stats_end_to_end(host, tile_inputs, tmp_path):
    _, spec, _ = tile_inputs
    out = tmp_path / "ds"
    res = run(host, "dataset", "build", spec, "-o", out, "--workers", "0", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["chips"] == 9
    res = run(host, "dataset", "info", out, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["chips"] == 9 and info["errors"] == 1 and info["sensors"] == ["sentinel2a-l2a"]
    before = json.loads((out / "stats.json").read_text())
    (out / "stats.json").unlink()
    res = run(host, "dataset", "stats", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "stats.json").read_text()) == before


# --- bad input -------------------------------------------------------------------------------------
@pytest.fixture
def toy(tmp_path):
    items = [synthetic_item(tmp_path / "a", "good"), synthetic_item(tmp_path / "b", "bad", corrupt=True,
                                                                    origin=(600_000.0, 5_800_000.0))]
    write_item_collection(tmp_path / "items.json", items)
    lon, lat = centre_lonlat()
    lon2, lat2 = centre_lonlat(origin=(600_000.0, 5_800_000.0))
    write_points(tmp_path / "labels.geojson", [(lon, lat, "a"), (lon2, lat2, "b")])

    def spec(**keys):
        base = {"items": "items.json", "sensor": "sentinel2a-l2a", "bands": ["B04", "B8A"],
                "labels": {"path": "labels.geojson", "column": "landcover"}, "chip_m": 100}
        return write_spec(tmp_path / "spec.yaml", **{**base, **keys})

    return tmp_path, spec


def test_a_corrupt_raster_is_recorded_and_skipped(toy):
    tmp, spec = toy
    result = build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0, max_failures=0.5)
    assert (result.n_chips, result.n_failed) == (1, 1)
    errors = [json.loads(x) for x in (tmp / "out" / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["item_id"] == "bad" and "corrupt" in errors[0]["error"]
    atoms, _ = open_dataset(tmp / "out")[0]
    assert sorted(atoms.band_names) == ["B04", "B8A"]
    assert np.bincount(atoms.band).tolist() == [100, 25]  # 100 m at 10 m and 20 m, native


def test_a_mostly_failing_build_stops_without_a_manifest(toy, host):
    tmp, spec = toy
    res = run(host, "dataset", "build", spec(), "-o", tmp / "out", "--workers", "0",
              "--max-failures", "0.2")
    assert res.exit_code == 1
    assert "1 of 2 shard tasks failed" in res.output and "Traceback" not in res.output
    assert not (tmp / "out" / "manifest.json").exists()
    errors = [json.loads(x) for x in (tmp / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["item_id"] for e in errors] == ["bad"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"labels": {"path": "labels.geojson", "column": "lc"}}, "has no column 'lc'"),
        ({"chip_m": -3}, "chip_m"),
        ({"chip_m": True}, "chip_m: true/false is not a number"),  # was a 1 m chip
        ({"chipm": 3}, "did you mean 'chip_m'"),
        ({"mask": ["clouds"]}, "unknown mask"),
        ({"split": {"blocks_m": 10, "group": "g"}}, "give one of"),
    ],
)
def test_spec_problems_are_one_line_each(toy, host, keys, message):
    tmp, spec = toy
    res = run(host, "dataset", "build", spec(**keys), "-o", tmp / "out", "--workers", "0")
    assert res.exit_code == 1 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp / "out" / "manifest.json").exists()


@pytest.mark.parametrize("values", [(["a", "b"], "a"), ("forest", 3)])
def test_mixed_label_types_are_refused(toy, values):
    tmp, spec = toy
    lon, lat = centre_lonlat()
    (tmp / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"landcover": v},
         "geometry": {"type": "Point", "coordinates": [lon, lat]}} for v in values]}))
    with pytest.raises(DatasetError, match="mixes label types"):
        build_dataset(load_dataset_spec(spec()), tmp / "out", workers=0)


def test_multilabel_csv_labels_with_item_id(toy):
    tmp, spec = toy
    lon, lat = centre_lonlat()
    (tmp / "labels.csv").write_text(f"lon,lat,tags,item\n{lon},{lat},a;b,good\n{lon},{lat},b,bad\n")
    s = spec(labels={"path": "labels.csv", "column": "tags", "separator": ";", "item_id_column": "item"})
    result = build_dataset(load_dataset_spec(s), tmp / "out", workers=0)
    assert result.n_chips == 1  # the second row names item 'bad', whose footprint lacks the point
    ds = open_dataset(tmp / "out")
    assert ds.task == "multilabel" and ds.class_names == ("a", "b")
    assert ds[0][1].tolist() == [1.0, 1.0]


def test_an_incompatible_dataset_folder_is_one_error(built, tmp_path, host):
    import shutil

    out, _ = built
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="version 99 is not read"):
        open_dataset(copy)
    res = run(host, "dataset", "info", copy)
    assert res.exit_code == 1 and "rebuild the dataset" in res.output
    (copy / "manifest.json").unlink()
    res = run(host, "dataset", "info", copy)
    assert res.exit_code == 1 and "the build did not finish" in res.output


def test_shards_read_only_the_chip_asked_for(built):
    out, _ = built
    name = open_dataset(out).row(0)["shard"]
    with ShardFile(out / "shards" / name) as shard:
        chips = [shard.chip(i) for i in range(shard.n_chips)]
    assert sum(len(c) for c in chips) == shard.header["n_atoms"]
    assert os.path.getsize(out / "shards" / name) > 0


def test_items_from_a_folder_a_catalog_and_stac_geoparquet_are_the_same(tmp_path):
    import pystac

    from atomizer.datasets.sources import load_items

    items = [synthetic_item(tmp_path / "a", "one"),
             synthetic_item(tmp_path / "b", "two", origin=(600_000.0, 5_800_000.0))]
    write_item_collection(tmp_path / "items.json", items)
    folder = tmp_path / "folder"
    folder.mkdir()
    for item in items:
        item.save_object(dest_href=str(folder / f"{item.id}.json"), include_self_link=False)
    catalog = pystac.Catalog("cat", "two items")
    for item in items:
        catalog.add_item(item.clone())
    catalog.normalize_and_save(str(tmp_path / "catalog"), pystac.CatalogType.SELF_CONTAINED)
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    to_parquet(parse_stac_items_to_arrow([i.to_dict() for i in items]), tmp_path / "items.parquet")
    loaded = {name: load_items(str(tmp_path / name))
              for name in ("items.json", "folder", "catalog/catalog.json", "items.parquet")}
    for name, refs in loaded.items():
        assert [r.id for r in refs] == ["one", "two"], name
        hrefs = sorted(a["href"] for a in refs[0].data["assets"].values())
        assert hrefs == sorted(str(p) for p in (tmp_path / "a").glob("one_*.tif")), name
        assert refs[0].geometry.equals(loaded["items.json"][0].geometry), name


def test_tokenize_mask_drops_the_atoms_on_flagged_scl_pixels(host, tile_inputs, tmp_path):
    import rasterio

    from atomizer.atoms.io import load_atoms

    _, _, folder = tile_inputs
    s2_tile_item(folder).save_object(dest_href=str(tmp_path / "item.json"), include_self_link=False)
    args = ["tokenize", tmp_path / "item.json", "--window", "600,600,60,60", "--bands", "B04,B8A"]
    plain = run(host, *args, "-o", tmp_path / "all.atoms")
    masked = run(host, *args, "--mask", "cloud,nodata", "-o", tmp_path / "clear.atoms")
    assert plain.exit_code == 0 and masked.exit_code == 0, masked.output
    full, clear = load_atoms(tmp_path / "all.atoms"), load_atoms(tmp_path / "clear.atoms")
    with rasterio.open(folder / SCL_NAME) as ds:
        scl, t = ds.read(1), ds.transform
    cx, cy = full.scene.extra["reference_centre_m"]

    def flags(atoms):
        cols = np.floor((atoms.x + cx - t.c) / t.a).astype(int)
        rows = np.floor((atoms.y + cy - t.f) / t.e).astype(int)
        return np.isin(scl[rows, cols], [0, 8, 9])

    assert flags(full).sum() > 0 and not flags(clear).any()
    assert len(clear) == len(full) - int(flags(full).sum())
    res = run(host, "tokenize", tmp_path / "item.json", "--window", "0,0,5,5", "--mask", "clouds")
    assert res.exit_code == 1 and "unknown mask name" in res.output


def test_labels_too_far_in_time_from_every_item_are_recorded(toy):
    tmp, spec = toy
    lon, lat = centre_lonlat()
    write_points(tmp / "labels.geojson", [(lon, lat, "a"), (lon, lat, "b")], extra={
        0: {"date": "2022-10-20"}, 1: {"date": "2023-06-01"}})
    s = spec(labels={"path": "labels.geojson", "column": "landcover", "datetime_column": "date"},
             match={"max_days": 30})
    result = build_dataset(load_dataset_spec(s), tmp / "out", workers=0)
    assert result.n_chips == 1
    errors = [json.loads(x) for x in (tmp / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["label_index"] for e in errors] == [1]
    assert "no item within 30 days of its date 2023-06-01" in errors[0]["error"]
