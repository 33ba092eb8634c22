"""``atomizer predict | embed | export`` end to end on a crop of the real Sentinel-2 tile.

The model is a tiny Atomizer trained (one epoch) on Indian Pines in the fixture; the scene is a
64 x 64 px crop (60 m) of the T29UNU tile as a STAC item, and the same crop as a GeoTIFF read
through a sensor YAML written in the test (a sensor the model never saw).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from conftest import needs_package, shared_data_path
from test_train_cli import CONFIG, errors, invoke, make_host
from training_toys import ToyModelsPlugin, build_toy

from atomizer.plugins.host import PluginHost

CROP = rasterio.windows.Window(1330, 0, 64, 64)  # straddles the tile's no-data edge
CHIP_M, STRIDE_M = "960", "480"
S2_BANDS = ("B02", "B03", "B04", "B8A")
NEW_SENSOR = {
    "id": "crafted-msi",
    "name": "A sensor written after training",
    "sources": ["made up for this test, band centres of Sentinel-2A"],
    "bands": [
        {
            "name": "blue",
            "center_wavelength_nm": 492.4,
            "fwhm_nm": 66.0,
            "gsd_m": 60.0,
            "scale": 0.0001,
            "offset": -0.1,
            "nodata": 0,
        },
        {
            "name": "green",
            "center_wavelength_nm": 559.8,
            "fwhm_nm": 36.0,
            "gsd_m": 60.0,
            "scale": 0.0001,
            "offset": -0.1,
            "nodata": 0,
        },
        {
            "name": "red",
            "center_wavelength_nm": 664.6,
            "fwhm_nm": 31.0,
            "gsd_m": 60.0,
            "scale": 0.0001,
            "offset": -0.1,
            "nodata": 0,
        },
        {
            "name": "nir",
            "center_wavelength_nm": 864.7,
            "fwhm_nm": 21.0,
            "gsd_m": 60.0,
            "scale": 0.0001,
            "offset": -0.1,
            "nodata": 0,
        },
    ],
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The crop as a STAC item (all bands) and as one 4-band GeoTIFF."""
    from atomizer.readers.stac_build import sentinel2_l2a_item

    folder = shared_data_path("s2_l2a_T29UNU_20221005_60m")
    tmp = tmp_path_factory.mktemp("scene")
    item = sentinel2_l2a_item(folder)
    stack = []
    for key, asset in item.assets.items():
        with rasterio.open(asset.href) as src:
            data = src.read(1, window=CROP)
            profile = {
                **src.profile,
                "driver": "GTiff",
                "width": 64,
                "height": 64,
                "transform": src.window_transform(CROP),
            }
        path = tmp / f"{key}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
        asset.href = str(path)
        asset.extra_fields.pop("proj:shape", None), asset.extra_fields.pop("proj:transform", None)
        if key in S2_BANDS:
            stack.append(data)
        transform, crs = profile["transform"], profile["crs"]
    item_path = tmp / "item.json"
    item.save_object(dest_href=str(item_path), include_self_link=False)
    tif = tmp / "crop.tif"
    with rasterio.open(
        tif,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="uint16",
        crs=crs,
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(np.stack(stack))
    sensor = tmp / "crafted.yaml"
    sensor.write_text(yaml.safe_dump(NEW_SENSOR, sort_keys=False))
    return {
        "item": item_path,
        "tif": tif,
        "sensor": sensor,
        "transform": transform,
        "crs": crs,
        "nodata": np.stack(stack)[0] == 0,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    needs_package("tensorly")
    tmp = tmp_path_factory.mktemp("inference")
    config = tmp / "exp.yaml"
    cfg = {**CONFIG, "models": [CONFIG["models"][0]], "test_modalities": []}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = tmp / "run"
    result = invoke(make_host(tmp), ["train", config, "--output", run])
    assert result.exit_code == 0, result.output
    return {"tmp": tmp, "run": run}


def read_map(path: Path):
    with rasterio.open(path) as ds:
        return (
            ds.read(),
            ds.profile,
            ds.descriptions,
            ds.tags(ns="IMAGE_STRUCTURE"),
            ds.overviews(1),
        )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_predict_a_stac_item_to_a_georeferenced_cog(trained, scene, tmp_path):
    out = tmp_path / "map.tif"
    args = [
        "predict",
        trained["run"],
        scene["item"],
        "-o",
        out,
        "--chip-m",
        CHIP_M,
        "--stride-m",
        STRIDE_M,
        "--json",
    ]
    result = invoke(make_host(tmp_path), args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    data, profile, names, structure, overviews = read_map(out)
    assert structure.get("LAYOUT") == "COG"  # (no overviews below one 256 px tile)
    assert (structure.get("COMPRESSION"), structure.get("PREDICTOR")) == ("DEFLATE", "3")
    assert profile["crs"] == scene["crs"] and profile["transform"] == scene["transform"]
    assert data.shape == (16, 64, 64) and names[0] == "Alfalfa" and len(set(names)) == 16
    valid = data[0] != -1
    assert profile["nodata"] == -1
    np.testing.assert_array_equal(valid, ~scene["nodata"])  # no-data exactly where no atoms
    assert 0.1 < valid.mean() < 0.9  # the crop straddles the tile's no-data edge
    np.testing.assert_allclose(data[:, valid].sum(0), 1.0, atol=1e-4)
    assert summary["n_windows"] == 49 and summary["width"] == 64
    assert leftovers(tmp_path) == []
    # --argmax: class + confidence, consistent with the probabilities
    arg = tmp_path / "argmax.tif"
    result = invoke(
        make_host(tmp_path),
        [
            *args[:3],
            "-o",
            arg,
            "--chip-m",
            CHIP_M,
            "--stride-m",
            STRIDE_M,
            "--argmax",
            "--gsd",
            "120",
        ],
    )
    assert result.exit_code == 0, result.output
    top, profile, names, *_ = read_map(arg)
    assert names == ("class", "confidence") and top.shape == (2, 32, 32)
    assert profile["transform"].a == 120 and profile["transform"].c == scene["transform"].c
    ok = top[0] != -1
    assert set(np.unique(top[0][ok])) <= set(range(16)) and (top[1][ok] > 1 / 16).all()


def test_predict_a_geotiff_of_a_sensor_written_today(trained, scene, tmp_path):
    out = tmp_path / "map.tif"
    result = invoke(
        make_host(tmp_path),
        [
            "predict",
            trained["run"],
            scene["tif"],
            "--sensor",
            scene["sensor"],
            "-o",
            out,
            "--chip-m",
            CHIP_M,
        ],
    )
    assert result.exit_code == 0, result.output
    data, profile, *_ = read_map(out)
    assert profile["crs"] == scene["crs"] and profile["transform"] == scene["transform"]
    np.testing.assert_array_equal(data[0] != -1, ~scene["nodata"])


def constant_checkpoint(tmp: Path) -> tuple[Path, np.ndarray]:
    """A toy model whose logits do not depend on the atoms: its map must be constant."""
    from atomizer.training.checkpoint import CheckpointContent, save_checkpoint

    model = build_toy({"num_classes": 3})
    with torch.no_grad():
        model.embed.weight.zero_(), model.embed.bias.fill_(1.0)
        model.head.weight.copy_(torch.tensor([[0.3], [-0.2], [0.9]]).expand(3, 16))
        model.head.bias.zero_()
    content = CheckpointContent(model_name="toy", model_config=model.config.model_dump())
    path = save_checkpoint(tmp / "const", content, model_state=model.state_dict())
    logits = torch.tensor([0.3, -0.2, 0.9]) * 16
    return path, torch.softmax(logits, 0).numpy()


def test_blending_keeps_a_constant_prediction_constant(scene, tmp_path):
    host = PluginHost(
        load_entrypoints=False,
        extra_plugins=[ToyModelsPlugin()],
        environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
    )
    ckpt, expected = constant_checkpoint(tmp_path)
    out = tmp_path / "map.tif"
    result = invoke(
        host,
        [
            "predict",
            ckpt,
            scene["item"],
            "-o",
            out,
            "--chip-m",
            "1380",
            "--stride-m",
            "420",
            "--gsd",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    data, *_ = read_map(out)
    valid = data[0] != -1
    assert valid.any()
    np.testing.assert_allclose(data[:, valid], expected[:, None] * np.ones(valid.sum()), atol=1e-5)


def test_embed_writes_geoparquet_that_geopandas_reads_and_finds_neighbours(
    trained, scene, tmp_path
):
    import geopandas as gpd

    from atomizer.inference.embed import nearest_chips

    out = tmp_path / "emb.parquet"
    result = invoke(
        make_host(tmp_path),
        [
            "embed",
            trained["run"],
            scene["item"],
            scene["tif"],
            "--sensor",
            scene["sensor"],
            "-o",
            out,
            "--chip-m",
            CHIP_M,
        ],
    )
    # the GeoTIFF's --sensor is not the item's sensor: one error line, no half-written table
    assert result.exit_code == 1 and len(errors(result)) == 1, result.output
    assert not out.exists() and leftovers(tmp_path) == []
    result = invoke(
        make_host(tmp_path),
        ["embed", trained["run"], scene["item"], "-o", out, "--chip-m", CHIP_M, "--json"],
    )
    assert result.exit_code == 0, result.output
    table = gpd.read_parquet(out)
    assert table.crs.to_epsg() == 4326 and len(table) == json.loads(result.stdout)["chips"]
    assert 0 < len(table) < 16  # a 4 x 4 grid, chips of pure no-data left out
    assert {"chip_id", "item_id", "sensor", "datetime", "embedding", "n_atoms"} <= set(
        table.columns
    )
    assert table["sensor"].str.startswith("sentinel2a").all() and (table["n_atoms"] > 0).all()
    assert all(len(e) == 64 for e in table["embedding"])
    w, s, e, n = table.total_bounds
    assert -9.1 < w < e < -7.0 and 53.0 < s < n < 53.4  # T29UNU's corner, in lon/lat
    near = nearest_chips(table, table["chip_id"].iloc[0], k=3)
    assert len(near) == min(3, len(table) - 1)
    assert list(near["similarity"]) == sorted(near["similarity"], reverse=True)


def pretraining_checkpoint(tmp: Path, host: PluginHost) -> Path:
    """A pretraining record as ``atomizer pretrain`` writes it: image encoder + other heads."""
    from atomizer.models import build_model
    from atomizer.training.checkpoint import CheckpointContent, save_checkpoint

    encoder = build_model("atomizer-tiny", {"num_classes": 1}, host=host)
    state = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["temperature.log_t"] = torch.zeros(())
    content = CheckpointContent(
        kind="satmip-pretraining",
        method="satmip",
        image_encoder={
            "name": "atomizer-tiny",
            "config": encoder.config.model_dump(mode="json"),
            "feature_dim": encoder.feature_dim,
        },
    )
    return save_checkpoint(tmp / "pre", content, model_state=state)


def test_embed_reads_a_pretraining_checkpoint_predict_refuses_it(scene, tmp_path):
    host = make_host(tmp_path)
    ckpt = pretraining_checkpoint(tmp_path, host)
    out = tmp_path / "emb.parquet"
    result = invoke(
        host,
        ["embed", ckpt, scene["tif"], "--sensor", scene["sensor"], "-o", out, "--chip-m", "1920"],
    )
    assert result.exit_code == 0, result.output
    import geopandas as gpd

    assert len(gpd.read_parquet(out)) > 0
    refused = invoke(host, ["predict", ckpt, scene["item"], "-o", tmp_path / "m.tif"])
    assert refused.exit_code == 1 and "no classification head" in errors(refused)[0]
    assert not (tmp_path / "m.tif").exists()


def test_export_writes_a_package_whose_mlm_item_validates(trained, scene, tmp_path):
    stac_model = pytest.importorskip("stac_model.schema")
    pkg = tmp_path / "pkg"
    result = invoke(make_host(tmp_path), ["export", trained["run"], "-o", pkg])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pkg.iterdir()) == [
        "README.md",
        "item.json",
        "model.json",
        "model.safetensors",
        "package.json",
    ]
    item = json.loads((pkg / "item.json").read_text())
    props = stac_model.MLModelProperties.model_validate(item["properties"])
    assert props.name == "atomizer" and "classification" in props.tasks
    assert "any optical sensor described by an atomizer sensor spec" in props.input[0].description
    assert [c.name for c in props.output[0].classes][:2] == ["Alfalfa", "Corn-notill"]
    assert any("mlm:model" in a["roles"] for a in item["assets"].values())
    assert any(
        u.startswith("https://stac-extensions.github.io/mlm/") for u in item["stac_extensions"]
    )
    broken = {k: v for k, v in item["properties"].items() if k != "mlm:architecture"}
    with pytest.raises(ValueError):
        stac_model.MLModelProperties.model_validate(broken)
    card = (pkg / "README.md").read_text()
    assert "indian-pines" in card and "train_loss" in card and "atomizer predict" in card
    package = json.loads((pkg / "package.json").read_text())
    assert package["train_modalities"][0]["sensor"] == "sentinel2a"
    assert package["class_names"][0] == "Alfalfa" and package["task"] == "multiclass"
    record = json.loads((pkg / "model.json").read_text())
    assert record["model_name"] == "atomizer-tiny" and "optimizer" not in record
    # predict with the package gives the checkpoint's map, bit for bit
    maps = []
    for model in (trained["run"], pkg):
        out = tmp_path / f"map-{len(maps)}.tif"
        done = invoke(
            make_host(tmp_path),
            ["predict", model, scene["item"], "-o", out, "--chip-m", "1920", "--stride-m", "1920"],
        )
        assert done.exit_code == 0, done.output
        maps.append(read_map(out)[0])
    np.testing.assert_array_equal(maps[0], maps[1])
    evaluated = invoke(
        make_host(tmp_path),
        [
            "evaluate",
            pkg,
            "--modality",
            "landsat8",
            "--bands",
            "B2,B3,B4,B5",
            "--gsd",
            "40",
            "--size",
            "2",
            "--json",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "overall_accuracy" in json.loads(evaluated.stdout)["metrics"]


def spoil(pkg: Path, how: str) -> None:
    if how == "no weights":
        (pkg / "model.safetensors").unlink()
    elif how == "no record":
        (pkg / "model.json").unlink()
    elif how == "package version":
        package = json.loads((pkg / "package.json").read_text())
        package["version"] = 99
        (pkg / "package.json").write_text(json.dumps(package))
    else:
        record = json.loads((pkg / "model.json").read_text())
        record["format_version"] = 99
        (pkg / "model.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    "how, match",
    [
        ("no weights", "model.safetensors: missing"),
        ("no record", "not a model package"),
        ("package version", "model package version 99"),
        ("format version", "format version 99"),
    ],
)
def test_bad_packages_are_one_error_line_and_no_map(trained, scene, tmp_path, how, match):
    pkg = tmp_path / "pkg"
    assert invoke(make_host(tmp_path), ["export", trained["run"], "-o", pkg]).exit_code == 0
    spoil(pkg, how)
    out = tmp_path / "map.tif"
    result = invoke(make_host(tmp_path), ["predict", pkg, scene["item"], "-o", out])
    assert result.exit_code == 1 and len(errors(result)) == 1, result.output
    assert match in errors(result)[0] and "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []


THERMAL = {
    "id": "thermal-only",
    "name": "a thermal imager",
    "sources": ["made up"],
    "bands": [{"name": "T1", "center_wavelength_nm": 30000.0, "fwhm_nm": 1000.0, "gsd_m": 60.0}],
}


def test_bad_scenes_and_outputs_are_one_error_line(trained, scene, tmp_path):
    host = make_host(tmp_path)
    run, out = trained["run"], tmp_path / "map.tif"
    thermal = tmp_path / "thermal.yaml"
    thermal.write_text(yaml.safe_dump(THERMAL, sort_keys=False))
    single = tmp_path / "t.tif"
    with rasterio.open(scene["tif"]) as src:
        profile = {**src.profile, "count": 1}
        band = src.read(1)
    with rasterio.open(single, "w", **profile) as dst:
        dst.write(band, 1)
    cases = [
        (["predict", run, scene["item"], "-o", out, "--chip-m", "5000"], "larger than the scene"),
        (["predict", run, single, "--sensor", thermal, "-o", out], "nm"),
        (["predict", run, scene["tif"], "-o", out], "--sensor"),
        (
            ["predict", run, scene["item"], "-o", out, "--chip-m", "960", "--stride-m", "2000"],
            "stride",
        ),
        (
            ["embed", run, scene["item"], "-o", tmp_path / "e.parquet", "--chip-m", "9000"],
            "larger than the scene",
        ),
    ]
    for args, match in cases:
        result = invoke(host, args)
        assert result.exit_code == 1 and len(errors(result)) == 1, (args, result.output)
        assert match in errors(result)[0], result.output
        assert not out.exists() and not (tmp_path / "e.parquet").exists()
    assert leftovers(tmp_path) == []
    out.write_bytes(b"keep me")
    result = invoke(host, ["predict", run, scene["item"], "-o", out, "--chip-m", "1920"])
    assert result.exit_code == 1 and "--overwrite" in errors(result)[0]
    assert out.read_bytes() == b"keep me"
    result = invoke(
        host, ["predict", run, scene["item"], "-o", out, "--chip-m", "1920", "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert read_map(out)[0].shape == (16, 64, 64)


def test_outputs_that_are_inputs_are_refused(trained, scene, tmp_path):
    host = make_host(tmp_path)
    asset = json.loads(scene["item"].read_text())["assets"]["B04"]["href"]
    before = Path(asset).read_bytes()
    for output in (asset, scene["item"]):
        result = invoke(
            host,
            [
                "predict",
                trained["run"],
                scene["item"],
                "-o",
                output,
                "--chip-m",
                "1920",
                "--overwrite",
            ],
        )
        assert result.exit_code == 1 and "input" in errors(result)[0], result.output
    assert Path(asset).read_bytes() == before


def test_mask_drops_flagged_atoms_and_needs_a_quality_layer(trained, scene, tmp_path):
    host = make_host(tmp_path)
    maps = {}
    for mask in (None, "cloud,cirrus"):
        out = tmp_path / f"map-{mask}.tif"
        args = ["predict", trained["run"], scene["item"], "-o", out, "--chip-m", "1920"]
        result = invoke(host, args + (["--mask", mask] if mask else []))
        assert result.exit_code == 0, result.output
        maps[mask] = read_map(out)[0][0] != -1
    # the crop holds cloud (SCL 8, 9): fewer pixels keep atoms, none is gained
    assert maps["cloud,cirrus"].sum() < maps[None].sum()
    assert not (maps["cloud,cirrus"] & ~maps[None]).any()
    refused = invoke(
        host,
        [
            "predict",
            trained["run"],
            scene["tif"],
            "--sensor",
            scene["sensor"],
            "-o",
            tmp_path / "m.tif",
            "--mask",
            "cloud",
        ],
    )
    assert refused.exit_code == 1 and "quality" in errors(refused)[0], refused.output
    assert not (tmp_path / "m.tif").exists()


def test_embed_reads_every_chip_of_a_dataset_folder(trained, tmp_path):
    import geopandas as gpd
    from dataset_toys import (
        centre_lonlat,
        synthetic_item,
        write_item_collection,
        write_points,
        write_spec,
    )

    from atomizer.datasets import build_dataset, load_dataset_spec

    write_item_collection(tmp_path / "items.json", [synthetic_item(tmp_path / "a", "good")])
    points = [
        (*centre_lonlat(offset_m=off), name)
        for off, name in (((100.0, -100.0), "a"), ((250.0, -250.0), "b"), ((300.0, -100.0), "a"))
    ]
    write_points(tmp_path / "labels.geojson", points)
    spec = write_spec(
        tmp_path / "spec.yaml",
        items="items.json",
        sensor="sentinel2a-l2a",
        bands=["B04", "B8A"],
        labels={"path": "labels.geojson", "column": "landcover"},
        chip_m=100,
    )
    folder = tmp_path / "ds"
    build_dataset(load_dataset_spec(spec), folder, workers=0, host=make_host(tmp_path))
    out = tmp_path / "emb.parquet"
    result = invoke(make_host(tmp_path), ["embed", trained["run"], folder, "-o", out, "--json"])
    assert result.exit_code == 0, result.output
    table = gpd.read_parquet(out)
    assert len(table) == 3 and sorted(table["label"]) == ["a", "a", "b"]
    assert (table["item_id"] == "good").all() and (table["n_atoms"] > 0).all()
    lon, lat = centre_lonlat(offset_m=(100.0, -100.0))
    assert table.geometry.iloc[0].buffer(1e-6).contains(gpd.points_from_xy([lon], [lat])[0])
    # predict over the same folder: one row per chip, the model's own probabilities for each chip
    refused = invoke(make_host(tmp_path), ["predict", trained["run"], folder, "-o", tmp_path / "m.tif"])
    assert refused.exit_code == 1 and "m.parquet" in errors(refused)[0]
    assert not (tmp_path / "m.tif").exists()
    ignored = invoke(make_host(tmp_path), ["predict", trained["run"], folder, "-o",
                                           tmp_path / "m.parquet", "--argmax", "--gsd", "20"])
    assert ignored.exit_code == 1 and "--gsd, --argmax apply to scenes only" in errors(ignored)[0]
    assert not (tmp_path / "m.parquet").exists()
    preds = tmp_path / "preds.parquet"
    result = invoke(make_host(tmp_path), ["predict", trained["run"], folder, "-o", preds, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    table = gpd.read_parquet(preds)
    names = summary["classes"]
    probs = table[[f"p_{n}" for n in names]].to_numpy()
    assert len(table) == summary["chips"] == 3 and sorted(table["label"]) == ["a", "a", "b"]
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert list(table["predicted"]) == [names[i] for i in probs.argmax(axis=1)]
    assert np.allclose(table["confidence"], probs.max(axis=1))
    from atomizer.atoms import collate_atoms
    from atomizer.datasets import open_dataset
    from atomizer.evaluation.metrics import probabilities
    from atomizer.inference.loading import load_inference_model

    model = load_inference_model(trained["run"], host=make_host(tmp_path), device="cpu",
                                 need_head=True)
    dataset = open_dataset(folder)
    for i in range(len(dataset)):
        with torch.no_grad():
            direct = probabilities(model.model(collate_atoms([dataset.source(i)])), model.task)
        assert np.allclose(direct[0].numpy(), probs[i], atol=1e-5)
