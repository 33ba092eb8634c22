"""Fuzzing the real CLI with hostile documents (issue 9): Hypothesis breaks each document the CLI
reads (sensor YAML, STAC item JSON, GeoTIFF headers, ``.atoms`` headers, experiment configs) and the
command must answer with a clean error: non-zero exit, no traceback, ``error:`` lines only, no new
file (tests/hostile.py). Every mutation is invalid by construction (a wrong type, a non-finite or
absurd number, a truncation), so every example must fail, and fail cleanly.

Counts of inputs tried and clean errors are printed at the end of the session ("hostile inputs").
Budget: about a minute in all (modest ``max_examples``).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomizer.testing import strategies as ats
from hostile import expect_clean_error, make_host, write_world

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAN, INF = float("nan"), float("inf")
NOT_TEXT = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.just([]), st.lists(st.integers(), min_size=1, max_size=2),
                     st.just({"a": 1}))
NOT_NUMBER = st.one_of(st.sampled_from(["ten metres", "10", "", "nan"]), st.booleans(),
                       st.just([1.0]), st.just({"value": 1}))
#: Not a number even to a lax validator (no "10", no booleans).
NOT_A_NUMBER_AT_ALL = st.one_of(st.sampled_from(["ten", "", "1e400x"]), st.just([1]),
                                st.just({"value": 1}))
ABSURD_GSD = st.one_of(NOT_NUMBER, st.sampled_from([0.0, -10.0, 1e-300, 1e-3, 1e9, 1e300]))
ABSURD_SCALE = st.one_of(NOT_NUMBER, st.sampled_from([0.0, 1e39, -1e-300, 1e300]))
NOT_A_LIST = st.one_of(st.sampled_from(["data", 5, {"a": 1}, 1.5]))
BAD_DATE = st.one_of(NOT_TEXT.filter(lambda v: v is not None),
                     st.sampled_from(["2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "yesterday",
                                      "2020-01-01T25:00:00Z", "0000-00-00"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return write_world(tmp_path_factory.mktemp("fuzzworld"))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return make_host(tmp_path_factory.mktemp("fuzzhost"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


# --- sensor YAML ---------------------------------------------------------------------------------
@FUZZ
@given(text=ats.malformed_spec_yaml())
def test_fuzz_sensor_yaml(text, host, scratch):
    folder = _fresh(scratch)
    path = folder / "spec.yaml"
    path.write_text(text)
    expect_clean_error(host, folder, "sensors", "validate", path)


# --- STAC item JSON ------------------------------------------------------------------------------
@st.composite
def stac_mutations(draw: st.DrawFn) -> tuple[str, Any]:
    """(label, function that breaks an item dict in place): each one a wrong type or value."""
    asset = draw(st.sampled_from(["B2", "B3"]))
    choices = {
        "id": lambda d, v=draw(st.one_of(NOT_TEXT, st.just(""))): d.update(id=v),
        "type": lambda d, v=draw(st.one_of(NOT_TEXT, st.just("Collection"))): d.update(type=v),
        "properties": lambda d, v=draw(NOT_A_LIST): d.update(properties=v),
        "datetime": lambda d, v=draw(BAD_DATE): d["properties"].update(datetime=v),
        "start_datetime": lambda d, v=draw(BAD_DATE): d["properties"].update(
            datetime=None, start_datetime=v),
        "platform": lambda d, v=draw(NOT_TEXT): d["properties"].update(platform=v),
        "instruments": lambda d, v=draw(st.one_of(st.just("msi"), st.just([1]))):
            d["properties"].update(instruments=v),
        "item gsd": lambda d, v=draw(ABSURD_GSD): d["properties"].update(gsd=v),
        "assets": lambda d, v=draw(NOT_A_LIST): d.update(assets=v),
        "asset": lambda d, v=draw(st.one_of(NOT_TEXT, st.just("B2.tif"))):
            d["assets"].update({asset: v}),
        "href": lambda d, v=draw(st.one_of(NOT_TEXT, st.just(""))):
            d["assets"][asset].update(href=v),
        "media type": lambda d, v=draw(NOT_TEXT): d["assets"][asset].update(type=v),
        "roles": lambda d, v=draw(st.one_of(st.just("data"), st.just([1]), st.just([None]))):
            d["assets"][asset].update(roles=v),
        "asset gsd": lambda d, v=draw(ABSURD_GSD): d["assets"][asset].update(gsd=v),
        "eo:bands": lambda d, v=draw(NOT_A_LIST): d["assets"][asset].update({"eo:bands": v}),
        "common_name": lambda d, v=draw(NOT_TEXT): d["assets"][asset]["eo:bands"][0].update(
            common_name=v),
        "centre": lambda d, v=draw(st.one_of(NOT_NUMBER, st.sampled_from([0.01, 100.0, -1.0,
                                                                          1e300]))):
            d["assets"][asset]["eo:bands"][0].update(center_wavelength=v),
        "fwhm": lambda d, v=draw(st.one_of(NOT_NUMBER, st.sampled_from([0.0, -0.01, 5.0]))):
            d["assets"][asset]["eo:bands"][0].update(full_width_half_max=v),
        "raster scale": lambda d, v=draw(ABSURD_SCALE): d["assets"][asset].update(
            {"raster:bands": [{"scale": v}]}),
        "raster offset": lambda d, v=draw(st.one_of(NOT_NUMBER, st.just(1e300))):
            d["assets"][asset].update({"raster:bands": [{"offset": v}]}),
        "nodata": lambda d, v=draw(st.one_of(st.just("none"), st.just([0]), st.just({}))):
            d["assets"][asset].update({"raster:bands": [{"nodata": v}]}),
    }
    label = draw(st.sampled_from(sorted(choices)))
    return label, choices[label]


@FUZZ
@given(mutations=st.lists(stac_mutations(), min_size=1, max_size=3))
def test_fuzz_stac_item_fields(mutations, world, host, scratch):
    data = json.loads(world["item"].read_text())
    for _, mutate in mutations:
        try:
            mutate(data)
        except (TypeError, KeyError, IndexError, AttributeError):
            pass  # an earlier mutation replaced what this one breaks: still broken
    folder = _fresh(scratch)
    path = folder / "item.json"
    path.write_text(json.dumps(data))
    expect_clean_error(host, folder, "tokenize", path, "--sensor", world["spec"],
                       "-o", folder / "out.atoms", label=[m[0] for m in mutations])


@FUZZ
@given(kind=st.sampled_from(["truncate", "nan", "deep", "garbage"]), data=st.data())
def test_fuzz_stac_item_text(kind, data, world, host, scratch):
    text = world["item"].read_text()
    if kind == "truncate":
        text = text[: data.draw(st.integers(0, len(text) - 2))]
    elif kind == "nan":
        text = text.replace("0.49", data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])), 1)
    elif kind == "deep":
        n = data.draw(st.integers(300, 20_000))
        text = '{"type": "Feature", "id": ' + "[" * n + "]" * n + "}"
    else:
        text = data.draw(st.binary(min_size=1, max_size=64)).decode("latin-1")
    folder = _fresh(scratch)
    path = folder / "item.json"
    path.write_text(text, encoding="latin-1" if kind == "garbage" else "utf-8")
    expect_clean_error(host, folder, "tokenize", path, "--sensor", world["spec"], label=kind)


# --- GeoTIFF headers -----------------------------------------------------------------------------
def _tif(path: Path, *, transform: Any, crs: Any, count: int = 1, scale: float = 1.0,
         offset: float = 0.0, dtype: str = "uint16") -> Path:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    profile = dict(driver="GTiff", width=6, height=5, count=count, dtype=dtype,
                   transform=transform, crs=crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(np.full((count, 5, 6), 100, dtype=dtype))
            ds.scales = [scale] * count
            ds.offsets = [offset] * count
    return path


@st.composite
def odd_geotiffs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    from rasterio.transform import Affine

    good = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    kind = draw(st.sampled_from(["rotated", "geographic", "pixel size", "band count", "scale",
                                 "offset", "truncated"]))
    kw: dict[str, Any] = {"transform": good, "crs": "EPSG:32631"}
    if kind == "rotated":
        kw["transform"] = Affine(10, draw(st.floats(0.5, 5)), 500_000, 0.5, -10, 5_000_000)
    elif kind == "geographic":
        kw.update(crs="EPSG:4326", transform=Affine(0.001, 0, 3, 0, -0.001, 45))
    elif kind == "pixel size":
        g = draw(st.sampled_from([1e-9, 1e-4, 1e7, 1e12]))
        kw["transform"] = Affine(g, 0, 500_000, 0, -g, 5_000_000)
    elif kind == "band count":
        kw["count"] = draw(st.sampled_from([3, 5]))
    elif kind == "scale":
        kw["scale"] = draw(st.sampled_from([1e39, 1e-300, 1e20]))
    elif kind == "offset":
        kw["offset"] = draw(st.sampled_from([1e300, -1e30]))
    return kind, kw


@FUZZ
@given(case=odd_geotiffs(), cut=st.floats(0.05, 0.9))
def test_fuzz_geotiff_headers(case, cut, world, host, scratch):
    kind, kw = case
    folder = _fresh(scratch)
    src = folder / "in" / "scene_B2.tif"
    src.parent.mkdir()
    _tif(src, **kw)
    if kind == "truncated":
        data = src.read_bytes()
        src.write_bytes(data[: int(len(data) * cut)])
    out = folder / "out"
    out.mkdir()
    expect_clean_error(host, out, "tokenize", src, "--sensor", world["spec"], "-o",
                       out / "t.atoms", label=kind)


# --- .atoms headers ------------------------------------------------------------------------------
def _atoms_header() -> dict[str, Any]:
    from atomizer.atoms.atomset import AtomSet, SceneMeta
    from atomizer.atoms.io import header_of
    from atomizer.sensors.spec import Band

    band = Band(name="B4", common_name="red", center_wavelength_nm=665, fwhm_nm=30, gsd_m=10)
    atoms = AtomSet(value=np.ones(4), band=np.zeros(4), x=np.arange(4.0), y=np.zeros(4),
                    bands=(band,), scene=SceneMeta(sensor_id="hostsat", lon=3.0, lat=45.0))
    return header_of(atoms)


@st.composite
def atoms_header_mutations(draw: st.DrawFn) -> dict[str, Any]:
    h = copy.deepcopy(_atoms_header())
    key = draw(st.sampled_from(["lon", "lat", "sensor_id", "datetime", "scene", "bands", "band",
                                "n_atoms", "format", "version", "band number"]))
    if key in ("lon", "lat"):
        h["scene"][key] = draw(st.one_of(NOT_NUMBER, st.sampled_from([400.0, -1000.0])))
    elif key == "sensor_id":
        h["scene"]["sensor_id"] = draw(st.one_of(NOT_TEXT, st.just("")))
    elif key == "datetime":
        h["scene"]["datetime"] = draw(BAD_DATE)
    elif key in ("scene", "bands"):
        h[key] = draw(NOT_A_LIST) if key == "bands" else draw(NOT_TEXT)
    elif key == "band":
        h["bands"][0] = draw(NOT_TEXT)
    elif key == "band number":
        field = draw(st.sampled_from(["gsd_m", "fwhm_nm", "center_wavelength_nm", "scale"]))
        h["bands"][0][field] = draw(st.one_of(NOT_NUMBER, st.sampled_from([0.0, -1.0, 1e300])))
    elif key == "n_atoms":
        h["n_atoms"] = draw(st.one_of(st.sampled_from([-1, 5, 10**12, "4", 4.5, None])))
    elif key == "format":
        h["format"] = draw(st.one_of(NOT_TEXT, st.text(max_size=20).filter(
            lambda t: t != "atomizer.atoms")))
    else:
        h["version"] = draw(st.sampled_from([0, 2, "1", None, 1.5]))
    return h


@FUZZ
@given(header=atoms_header_mutations(), command=st.sampled_from(["show", "plot"]))
def test_fuzz_atoms_headers(header, command, host, scratch):
    from safetensors.numpy import save_file

    folder = _fresh(scratch)
    path = folder / "x.atoms"
    arrays = {"value": np.ones(4, np.float32), "band": np.zeros(4, np.int16),
              "x": np.arange(4, dtype=np.float32), "y": np.zeros(4, np.float32)}
    save_file(arrays, str(path), metadata={"atomizer": json.dumps(header)})
    args = ["atoms", command, path] + (["-o", folder / "q.png"] if command == "plot" else [])
    expect_clean_error(host, folder, *args)


# --- experiment configs --------------------------------------------------------------------------
EXPERIMENT = """\
name: fuzz
data: {dataset: indian-pines}
task: {type: multiclass, num_classes: 16}
train_modalities:
  - {name: a, sensor: sentinel2a, bands: [B02, B03], gsd_m: 20, size_px: 8}
test_modalities:
  - {name: b, sensor: landsat8, bands: [B2, B3], gsd_m: 30, size_px: 5}
models:
  - {name: atomizer-tiny}
epochs: 1
batch_size: 4
seeds: [0]
"""


@st.composite
def experiment_mutations(draw: st.DrawFn) -> str:
    d = yaml.safe_load(EXPERIMENT)
    key = draw(st.sampled_from(["num_classes", "gsd_m", "size_px", "sensor", "bands", "epochs",
                                "seeds", "models", "model name", "model config", "unknown key",
                                "task", "modalities"]))
    mod = d["train_modalities"][0]
    if key == "num_classes":
        d["task"]["num_classes"] = draw(st.one_of(NOT_A_NUMBER_AT_ALL, st.sampled_from([0, -3, 1.5])))
    elif key == "gsd_m":
        mod["gsd_m"] = draw(ABSURD_GSD)
    elif key == "size_px":
        mod["size_px"] = draw(st.sampled_from([0, -1, 100_000, "8", 8.5, [8]]))
    elif key == "sensor":
        mod["sensor"] = draw(st.one_of(NOT_TEXT, st.just("")))
    elif key == "bands":
        mod["bands"] = draw(st.sampled_from(["B02", [], [1, 2], ["B02", "B02"]]))
    elif key == "epochs":
        d["epochs"] = draw(st.one_of(NOT_A_NUMBER_AT_ALL, st.sampled_from([0, -1, 2.5])))
    elif key == "seeds":
        d["seeds"] = draw(st.sampled_from(["0", [], ["a"], 7.5]))
    elif key == "models":
        d["models"] = draw(NOT_A_LIST)
    elif key == "model name":
        d["models"][0]["name"] = draw(st.one_of(NOT_TEXT, st.just("no-such-model")))
    elif key == "model config":
        d["models"][0]["config"] = draw(st.sampled_from([
            {"latent_dim": 1_000_000}, {"latent_dim": "wide"}, {"no_such_key": 1}, "big"]))
    elif key == "unknown key":
        d[draw(st.sampled_from(["epoch", "seed", "model", "Task"]))] = 1
    elif key == "task":
        d["task"] = draw(NOT_TEXT)
    else:
        d["test_modalities"] = draw(NOT_A_LIST)
    return yaml.safe_dump(d, sort_keys=False)


@settings(FUZZ, max_examples=20)
@given(text=experiment_mutations())
def test_fuzz_experiment_configs(text, host, scratch):
    folder = _fresh(scratch)
    path = folder / "exp.yaml"
    path.write_text(text)
    # --stop-after-steps bounds the work should a mutation ever turn out valid (it then fails here)
    expect_clean_error(host, folder, "train", path, "--output", folder / "run",
                       "--stop-after-steps", "1")
