"""predict / embed / export / tokenize on hostile options, grids, values and model files: one line
each, the model's files untouched, never a NaN map."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from test_inference_cli import NEW_SENSOR, read_map, scene, trained  # noqa: F401 - fixtures
from test_train_cli import errors, invoke, make_host

from atomizer.errors import OutputError
from atomizer.io import check_output


def _crafted_tif(path: Path, *, transform, data=None, dtype="float32", crs="EPSG:32629") -> Path:
    data = np.full((4, 32, 32), 0.2, dtype=dtype) if data is None else data
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform) as ds:
        ds.write(data)
    return path


@pytest.fixture
def reflectance_sensor(tmp_path):
    spec = json.loads(json.dumps(NEW_SENSOR))
    spec["id"] = "crafted-reflectance"
    for band in spec["bands"]:
        band.update(scale=1.0, offset=0.0)
        band.pop("nodata")
    path = tmp_path / "reflectance.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(("option", "value"), [
    ("--chip-m", "inf"), ("--chip-m", "nan"), ("--stride-m", "0"), ("--gsd", "0"),
    ("--gsd", "-10"), ("--gsd", "nan"), ("--batch-size", "0"), ("--batch-size", "-1"),
])
def test_bad_window_options_are_one_line(trained, scene, tmp_path, option, value):  # noqa: F811
    out = tmp_path / "map.tif"
    args = ["predict", trained["run"], scene["item"], "-o", out, "--chip-m", "960", option, value]
    if option == "--chip-m":
        args = ["predict", trained["run"], scene["item"], "-o", out, option, value]
    result = invoke(make_host(tmp_path), args)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert option in result.output
    assert not out.exists()


def test_a_map_too_large_is_refused_before_any_work(trained, scene, tmp_path):  # noqa: F811
    out = tmp_path / "map.tif"
    result = invoke(make_host(tmp_path), ["predict", trained["run"], scene["item"], "-o", out,
                                          "--chip-m", "960", "--gsd", "0.001"])
    assert result.exit_code == 1 and "ATOMIZER_MAX_MAP_PIXELS" in errors(result)[0], result.output
    assert not out.exists()


@pytest.mark.parametrize(("name", "transform", "message"), [
    ("southup", Affine(60, 0, 500_000, 0, 60, 5_800_000), "not north-up"),
    ("westward", Affine(-60, 0, 500_000, 0, -60, 5_800_000), "not north-up"),
    ("oblong", Affine(60, 0, 500_000, 0, -120, 5_800_000), "not square"),
])
def test_grids_predict_cannot_map_are_refused(trained, tmp_path, reflectance_sensor, name,  # noqa: F811
                                              transform, message):
    tif = _crafted_tif(tmp_path / f"{name}.tif", transform=transform)
    host = make_host(tmp_path)
    for command, out in (("predict", tmp_path / "m.tif"), ("embed", tmp_path / "e.parquet")):
        result = invoke(host, [command, trained["run"], tif, "--sensor", reflectance_sensor,
                               "-o", out, "--chip-m", "960"])
        assert result.exit_code == 1 and message in errors(result)[0], result.output
        assert not out.exists()


def test_an_image_outside_its_crs_domain_is_one_line(trained, tmp_path, reflectance_sensor):  # noqa: F811
    tif = _crafted_tif(tmp_path / "far.tif", transform=Affine(60, 0, 1e8, 0, -60, 1e8))
    host = make_host(tmp_path)
    for args in (["tokenize", tif, "--sensor", reflectance_sensor],
                 ["predict", trained["run"], tif, "--sensor", reflectance_sensor, "-o",
                  tmp_path / "m.tif", "--chip-m", "960"]):
        result = invoke(host, args)
        assert result.exit_code == 1 and "outside" in errors(result)[0], result.output


def test_values_far_past_training_never_make_a_nan_map(trained, tmp_path, reflectance_sensor):  # noqa: F811
    data = np.full((4, 32, 32), 3e38, dtype="float32")
    tif = _crafted_tif(tmp_path / "big.tif", transform=Affine(60, 0, 500_000, 0, -60, 5_800_000),
                       data=data)
    out = tmp_path / "m.tif"
    result = invoke(make_host(tmp_path), ["predict", trained["run"], tif, "--sensor",
                                          reflectance_sensor, "-o", out, "--chip-m", "960"])
    assert result.exit_code == 1 and "NaN or inf" in errors(result)[0], result.output
    assert not out.exists()


def test_complex_pixels_are_refused(tmp_path, reflectance_sensor):
    data = (np.full((4, 8, 8), 0.2) + 1j * 0.1).astype("complex64")
    tif = _crafted_tif(tmp_path / "c.tif", transform=Affine(60, 0, 500_000, 0, -60, 5_800_000),
                       data=data)
    result = invoke(make_host(tmp_path), ["tokenize", tif, "--sensor", reflectance_sensor])
    assert result.exit_code == 1 and "complex pixels" in errors(result)[0], result.output


def test_outputs_never_overwrite_the_models_files(trained, scene, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    record = sorted((run / "checkpoints").glob("ckpt-*.json"))[-1]
    weights = record.with_suffix(".safetensors")
    before = {p: p.read_bytes() for p in (record, weights)}
    host = make_host(tmp_path)
    cases = [
        ["predict", run, scene["item"], "-o", record, "--chip-m", "1920", "--overwrite"],
        ["embed", record, scene["item"], "-o", weights, "--chip-m", "1920", "--overwrite"],
        ["export", run, "-o", run, "--overwrite"],
        ["export", run, "-o", tmp_path, "--overwrite"],  # holds the run: would delete it
    ]
    for args in cases:
        result = invoke(host, args)
        assert result.exit_code == 1 and len(errors(result)) == 1, (args, result.output)
    assert {p: p.read_bytes() for p in before} == before


def test_export_overwrite_replaces_a_package_only(trained, tmp_path):  # noqa: F811
    host = make_host(tmp_path)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    result = invoke(host, ["export", trained["run"], "-o", other, "--overwrite"])
    assert result.exit_code == 1 and "not an atomizer model package" in errors(result)[0]
    assert (other / "precious.txt").read_text() == "keep"
    pkg = tmp_path / "pkg"
    assert invoke(host, ["export", trained["run"], "-o", pkg]).exit_code == 0
    result = invoke(host, ["export", trained["run"], "-o", pkg, "--overwrite"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("names", "message"), [
    ("a,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o", "more than once"),
    (",,,,,,,,,,,,,,,", "empty"),
    ("a,b", "2 class names"),
])
def test_export_refuses_class_names_that_are_no_names(trained, tmp_path, names, message):  # noqa: F811
    result = invoke(make_host(tmp_path), ["export", trained["run"], "-o", tmp_path / "pkg",
                                          "--classes", names])
    assert result.exit_code == 1 and message in errors(result)[0], result.output
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize(("names", "message"), [(["a", "b"], "2 class names"),
                                                (list(range(16)), "list of texts")])
def test_a_tampered_package_is_one_line(trained, scene, tmp_path, names, message):  # noqa: F811
    host = make_host(tmp_path)
    pkg = tmp_path / "pkg"
    assert invoke(host, ["export", trained["run"], "-o", pkg]).exit_code == 0
    meta = json.loads((pkg / "package.json").read_text())
    meta["class_names"] = names
    (pkg / "package.json").write_text(json.dumps(meta))
    out = tmp_path / "m.tif"
    result = invoke(host, ["predict", pkg, scene["item"], "-o", out, "--chip-m", "1920"])
    assert result.exit_code == 1 and message in errors(result)[0], result.output
    assert not out.exists()


def test_non_finite_or_mistyped_weights_are_refused(trained, scene, tmp_path):  # noqa: F811
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    record = sorted((run / "checkpoints").glob("ckpt-*.json"))[-1]
    weights = record.with_suffix(".safetensors")
    state = load_file(str(weights))
    with safe_open(str(weights), framework="pt") as fh:
        metadata = fh.metadata()  # the checkpoint id that ties the weights to their record
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    host = make_host(tmp_path)
    for spoil, message in ((lambda t: t.view(-1).__setitem__(0, float("nan")), "NaN or inf"),
                           (None, "but the model expects")):
        bad = {k: v.clone() for k, v in state.items()}
        if spoil is None:
            bad[name] = bad[name].double()
        else:
            spoil(bad[name])
        save_file(bad, str(weights), metadata=metadata)
        result = invoke(host, ["predict", record, scene["item"], "-o", tmp_path / "m.tif",
                               "--chip-m", "1920"])
        assert result.exit_code == 1 and message in errors(result)[0], result.output


def test_band_names_differing_only_in_case_are_refused(tmp_path):
    spec = json.loads(json.dumps(NEW_SENSOR))
    spec["bands"][1]["name"] = spec["bands"][0]["name"].upper()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = invoke(make_host(tmp_path), ["sensors", "validate", path])
    assert result.exit_code == 1 and "differ only in case" in result.output, result.output


def test_check_output_refuses_a_file_inside_an_input_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    with pytest.raises(OutputError, match="is a file of the input"):
        check_output(folder / "weights.bin", inputs=[folder], overwrite=True)
    assert check_output(folder / "new.tif", inputs=[folder]) == folder / "new.tif"
