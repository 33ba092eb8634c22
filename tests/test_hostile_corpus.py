"""Hand-made hostile inputs from issue 9, each run through the real CLI: one clean error each.

Every case asserts the README's promise (see tests/hostile.py): non-zero exit, no traceback,
``error:`` lines only, no new file in the folder. Some cases also check what the message names.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hostile import expect_clean_error, make_host, run_cli, write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return make_host(tmp_path_factory.mktemp("host"))


@pytest.fixture
def item_dict(world) -> dict[str, Any]:
    return json.loads(world["item"].read_text())


def _write_item(folder: Path, data: Any, *, raw: str | None = None) -> Path:
    path = folder / "bad_item.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def _asset(d: dict[str, Any]) -> dict[str, Any]:
    return d["assets"]["B2"]


# name -> (mutation of the item dict, what the error must mention)
STAC_CASES = {
    "array_not_object": (lambda d: [d], "JSON array, not a STAC Item"),
    "common_name_number": (lambda d: _asset(d)["eo:bands"][0].update(common_name=5),
                           "eo:bands[0](B2).common_name"),
    "common_name_list": (lambda d: _asset(d)["eo:bands"][0].update(common_name=["blue"]),
                         "eo:bands[0](B2).common_name"),
    "roles_numbers": (lambda d: _asset(d).update(roles=[1]), "assets.B2.roles[0]"),
    "asset_type_number": (lambda d: _asset(d).update(type=5), "assets.B2.type"),
    "platform_number": (lambda d: d["properties"].update(platform=5), "properties.platform"),
    "gsd_words": (lambda d: d["properties"].update(gsd="ten metres"), "properties.gsd"),
    "gsd_absurd": (lambda d: _asset(d).update(gsd=1e-300), "assets.B2.gsd"),
    "bad_start_datetime": (lambda d: d["properties"].update(datetime=None,
                                                            start_datetime="2020-13-45"),
                           "properties.start_datetime"),
    "month_13": (lambda d: d["properties"].update(datetime="2020-13-01T00:00:00Z"),
                 "properties.datetime"),
    "no_date_at_all": (lambda d: d["properties"].update(datetime=None), "start_datetime"),
    "raster_scale_huge": (lambda d: _asset(d).update({"raster:bands": [{"scale": 1e39}]}),
                          "raster:bands[0].scale"),
    "raster_offset_huge": (lambda d: _asset(d).update({"raster:bands": [{"offset": -1e300}]}),
                           "raster:bands[0].offset"),
    "assets_list": (lambda d: d.update(assets=[d["assets"]["B2"]]), "assets"),
    "eo_bands_not_list": (lambda d: _asset(d).update({"eo:bands": {"name": "B2"}}),
                          "eo:bands"),
    "href_number": (lambda d: _asset(d).update(href=5), "assets.B2.href"),
    "properties_string": (lambda d: d.update(properties="none"), "properties"),
    "stac11_bands_wrong": (lambda d: _asset(d).update(bands=[{"eo:center_wavelength": "0.49"}]),
                           "bands[0].eo:center_wavelength"),
    "feature_collection": (lambda d: d.update(type="FeatureCollection"), "not 'Feature'"),
}


@pytest.mark.parametrize("case", sorted(STAC_CASES))
def test_malformed_stac_items(case, item_dict, world, host, tmp_path):
    mutate, needle = STAC_CASES[case]
    data = copy.deepcopy(item_dict)
    replaced = mutate(data)
    path = _write_item(tmp_path, replaced if replaced is not None else data)
    result = expect_clean_error(host, tmp_path, "tokenize", path, "--sensor", world["spec"],
                                "-o", tmp_path / "out.atoms", label=case)
    assert needle in result.stderr, (case, result.stderr)
    assert str(path) in result.stderr  # the file is named


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('{"type": "Feature", "id": NaN}', "finite number"),
        ("[" * 100_000 + "]" * 100_000, "ATOMIZER_MAX_NESTING_DEPTH"),
        ("", "invalid JSON"),
        ("\x89PNG\r\n\x1a\n\x00\x00", "invalid JSON"),
    ],
    ids=["nan", "deep", "empty", "binary"],
)
def test_unparseable_stac_items(raw, needle, world, host, tmp_path):
    path = _write_item(tmp_path, None, raw=raw)
    result = expect_clean_error(host, tmp_path, "tokenize", path, "--sensor", world["spec"])
    assert needle in result.stderr


def test_a_100000_character_item_id_is_clipped_in_messages(item_dict, host, tmp_path):
    data = copy.deepcopy(item_dict)
    data["id"] = "x" * 100_000
    data["properties"]["platform"] = "nobody-flies-this"
    for asset in data["assets"].values():
        asset.pop("eo:bands", None)
    path = _write_item(tmp_path, data)
    result = expect_clean_error(host, tmp_path, "tokenize", path)
    assert "100,000 characters" in result.stderr and len(result.stderr) < 3000


# --- .atoms files ------------------------------------------------------------------------------
def _atoms_file(folder: Path, *, header: Any = None, arrays: dict[str, Any] | None = None,
                raw_header: str | None = None) -> Path:
    """A small .atoms file, with its header or arrays replaced."""
    import numpy as np
    from safetensors.numpy import save_file

    from atomizer.atoms.atomset import AtomSet, SceneMeta
    from atomizer.atoms.io import header_of
    from atomizer.sensors.spec import Band

    band = Band(name="B4", common_name="red", center_wavelength_nm=665, fwhm_nm=30, gsd_m=10)
    atoms = AtomSet(value=np.ones(4), band=np.zeros(4), x=np.arange(4.0) * 10, y=np.zeros(4),
                    bands=(band,), scene=SceneMeta(sensor_id="hostsat", lon=3.0, lat=45.0))
    tensors = {k: np.ascontiguousarray(getattr(atoms, k)) for k in ("value", "band", "x", "y")}
    tensors.update(arrays or {})
    h = header_of(atoms)
    if header is not None:
        header(h)
    path = folder / "bad.atoms"
    save_file(tensors, str(path), metadata={"atomizer": raw_header or json.dumps(h)})
    return path


ATOMS_CASES = {
    "lon_string": (dict(header=lambda h: h["scene"].update(lon="3.0")), "scene.lon"),
    "lat_out_of_range": (dict(header=lambda h: h["scene"].update(lat=400.0)), "scene.lat"),
    "band_key_wrong": (dict(header=lambda h: h["bands"][0].update(gsd_m="ten")),
                       "bands[0](B4).gsd_m"),
    "band_extra_key": (dict(header=lambda h: h["bands"][0].update(colour="red")),
                       "bands[0](B4).colour"),
    "n_atoms_text": (dict(header=lambda h: h.update(n_atoms="4")), "n_atoms"),
    "scene_missing": (dict(header=lambda h: h.pop("scene")), "scene"),
    "datetime_garbage": (dict(header=lambda h: h["scene"].update(datetime="yesterday")),
                         "scene.datetime"),
    "header_nan": (dict(raw_header='{"format": "atomizer.atoms", "version": 1, "n_atoms": NaN}'),
                   "finite number"),
    "header_deep": (dict(raw_header="[" * 5000 + "]" * 5000), "ATOMIZER_MAX_NESTING_DEPTH"),
    "format_huge": (dict(header=lambda h: h.update(format="x" * 100_000)), "characters"),
}


@pytest.mark.parametrize("case", sorted(ATOMS_CASES))
def test_corrupt_atoms_headers_name_the_key(case, host, tmp_path):
    kwargs, needle = ATOMS_CASES[case]
    path = _atoms_file(tmp_path, **kwargs)
    result = expect_clean_error(host, tmp_path, "atoms", "show", path, label=case)
    assert needle in result.stderr and len(result.stderr) < 3000, result.stderr


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e30])
def test_atoms_plot_refuses_atoms_at_non_finite_or_absurd_positions(bad, host, tmp_path):
    import numpy as np

    x = np.array([0.0, 10.0, bad, 30.0], dtype=np.float32)
    path = _atoms_file(tmp_path, arrays={"x": x})
    result = expect_clean_error(host, tmp_path, "atoms", "plot", path, "-o", tmp_path / "q.png")
    assert "'x'" in result.stderr


def test_a_text_file_is_not_an_atoms_file(host, tmp_path):
    path = tmp_path / "notes.atoms"
    path.write_text("hello\n" * 10)
    result = expect_clean_error(host, tmp_path, "atoms", "show", path)
    assert "not a readable .atoms file" in result.stderr


# --- rasters -----------------------------------------------------------------------------------
def test_a_truncated_jpeg2000_is_an_error_not_an_empty_scene(host, tmp_path):
    from conftest import shared_data_path

    real = shared_data_path("s2_l2a_T29UNU_20221005_60m", "T29UNU_20221005T115411_B02_60m.jp2")
    data = real.read_bytes()
    src = tmp_path / "in" / "T29UNU_B02_60m.jp2"
    src.parent.mkdir()
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    result = expect_clean_error(host, out, "tokenize", src, "--sensor", "sentinel2a-l2a",
                                "-o", out / "t.atoms")
    assert "corrupt or truncated" in result.stderr and "B02" in result.stderr


def _sparse_tif(path: Path, side: int) -> Path:
    import rasterio
    from rasterio.transform import Affine

    profile = dict(driver="GTiff", width=side, height=side, count=1, dtype="uint16",
                   crs="EPSG:32631", transform=Affine(10, 0, 500_000, 0, -10, 5_000_000),
                   tiled=True, blockxsize=512, blockysize=512, sparse_ok=True, compress="deflate")
    with rasterio.open(path, "w", **profile):
        pass
    return path


def test_a_sparse_60000_pixel_square_geotiff_is_refused_before_decoding(host, world, tmp_path):
    src = _sparse_tif(tmp_path / "huge_B2.tif", 60_000)
    assert src.stat().st_size < 5_000_000
    result = expect_clean_error(host, tmp_path, "tokenize", src, "--sensor", world["spec"])
    assert "ATOMIZER_MAX_READ_PIXELS" in result.stderr and "--window" in result.stderr
    ok = run_cli(host, "tokenize", src, "--sensor", world["spec"], "--window", "0,0,64,64")
    assert ok.exit_code == 0, ok.output  # a window of it is fine


@pytest.mark.parametrize("pixel_m", [1e-9, 1e9])
def test_an_absurd_pixel_size_in_the_geotransform_is_refused(pixel_m, host, world, tmp_path):
    import numpy as np

    from atomizer.readers.synthetic import write_geotiff

    src = write_geotiff(tmp_path / "odd_B2.tif", np.ones((4, 4), np.uint16), gsd_m=pixel_m)
    result = expect_clean_error(host, tmp_path, "tokenize", src, "--sensor", world["spec"])
    assert "pixel size from the geotransform" in result.stderr


# --- unbounded work ----------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (("--size", "100000"), "ATOMIZER_MAX_PATCH_PIXELS"),
    (("--gsd", "inf"), "gsd_m"),
    (("--gsd", "1e-300"), "outside the physical range"),
])
def test_evaluate_refuses_absurd_modalities_before_any_work(args, needle, host, tmp_path):
    from pydantic import ValidationError

    from atomizer.data.modality import Modality

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    expect_clean_error(host, tmp_path, "evaluate", run_dir, "--modality", "sentinel2a", *args)
    key = {"--size": "size_px", "--gsd": "gsd_m"}[args[0]]
    with pytest.raises(ValidationError, match=needle):  # refused before anything is allocated
        Modality(sensor="sentinel2a", **{key: type(1 if key == "size_px" else 1.0)(
            float(args[1]))})


def test_a_model_config_asking_terabytes_is_refused_before_allocating():
    import time

    from atomizer.errors import LimitError
    from atomizer.models.registry import build_model

    start = time.perf_counter()
    with pytest.raises(LimitError, match="ATOMIZER_MAX_MODEL_PARAMETERS"):
        build_model("atomizer-tiny", {"num_classes": 19, "latent_dim": 1_000_000})
    assert time.perf_counter() - start < 30  # counted on the meta device, never allocated


# --- outputs that would destroy inputs ---------------------------------------------------------
@pytest.mark.parametrize("target", ["item", "B2", "spec"])
def test_tokenize_never_writes_over_its_inputs(target, world, host, tmp_path):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(world["item"].parent, folder)
    item = folder / "item.json"
    data = json.loads(item.read_text())
    for key, asset in data["assets"].items():
        asset["href"] = f"./{key}.tif"  # the copy's own rasters
    item.write_text(json.dumps(data))
    victim = {"item": item, "B2": folder / "B2.tif", "spec": folder / "hostsat.yaml"}[target]
    before = victim.read_bytes()
    result = expect_clean_error(host, folder, "tokenize", item, "--sensor", folder / "hostsat.yaml",
                                "-o", victim, "--overwrite")
    assert "is also an input" in result.stderr
    assert victim.read_bytes() == before


def test_outputs_onto_fifos_folders_and_symlinks(world, host, tmp_path):
    import os

    fifo = tmp_path / "pipe.atoms"
    os.mkfifo(fifo)
    result = expect_clean_error(host, tmp_path, "tokenize", world["item"], "--sensor",
                                world["spec"], "-o", fifo)
    assert "FIFO" in result.stderr
    result = expect_clean_error(host, tmp_path, "tokenize", world["item"], "--sensor",
                                world["spec"], "-o", tmp_path)
    assert "is a folder" in result.stderr
    kept = tmp_path / "kept.atoms"
    kept.write_bytes(b"precious")
    link = tmp_path / "link.atoms"
    link.symlink_to(kept)
    result = expect_clean_error(host, tmp_path, "tokenize", world["item"], "--sensor",
                                world["spec"], "-o", link)
    assert "symbolic link" in result.stderr and "--overwrite" in result.stderr
    ok = run_cli(host, "tokenize", world["item"], "--sensor", world["spec"], "-o", link,
                 "--overwrite")
    assert ok.exit_code == 0, ok.output
    assert not link.is_symlink() and kept.read_bytes() == b"precious"


def test_atoms_plot_never_writes_over_its_input(host, tmp_path):
    path = _atoms_file(tmp_path)
    link = tmp_path / "same.png"
    link.symlink_to(path)
    before = path.read_bytes()
    expect_clean_error(host, tmp_path, "atoms", "plot", path, "-o", link, "--overwrite")
    assert path.read_bytes() == before


def test_an_output_name_longer_than_the_file_system_allows(world, host, tmp_path):
    result = expect_clean_error(host, tmp_path, "tokenize", world["item"], "--sensor",
                                world["spec"], "-o", tmp_path / ("a" * 300 + ".atoms"))
    assert "choose a shorter name" in result.stderr and len(result.stderr) < 500


# --- litter --------------------------------------------------------------------------------------
_SLOW_WRITER = """
import sys, time
from pathlib import Path
from atomizer.io import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_write_killed_by_a_signal_leaves_no_temporary(signame, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    target = tmp_path / "out.atoms"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # a shell that starts jobs in the background makes them ignore SIGINT, and children inherit
    # that: give the writer the default disposition, as a terminal would
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(getattr(signal, signame))
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == [], sorted(p.name for p in tmp_path.iterdir())


def test_the_next_write_removes_temporaries_of_dead_processes(tmp_path):
    import os
    import subprocess
    import sys

    from atomizer.io import atomic_write_text, temp_prefix

    target = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / (temp_prefix(target, int(dead.stdout)) + "abcd_123.json.tmp")
    alive = tmp_path / (temp_prefix(target, os.getppid()) + "efgh_456.json.tmp")
    other = tmp_path / ".other.json.1.abcd_123.json.tmp"
    for p in (stale, alive, other):
        p.write_bytes(b"")
    atomic_write_text(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name,
                                                                 other.name])


def test_a_full_disk_while_writing_is_one_error_and_no_file(world, host, tmp_path, monkeypatch):
    import errno

    import safetensors.numpy

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    result = expect_clean_error(host, tmp_path, "tokenize", world["item"], "--sensor",
                                world["spec"], "-o", tmp_path / "out.atoms")
    assert "No space left on device" in result.stderr


# --- errors that say what ------------------------------------------------------------------------
def test_a_text_file_called_npy_is_not_reported_as_pickled_data(host, tmp_path):
    src = tmp_path / "cube.npy"
    src.write_text("this is not numpy\n")
    result = expect_clean_error(host, tmp_path, "simulate", src, "--source-sensor", "sentinel2a",
                                "--sensor", "landsat8", "-o", tmp_path / "out.atoms")
    assert "not a .npy file" in result.stderr and "pickled" not in result.stderr


def test_an_object_npy_is_refused_without_unpickling(host, tmp_path):
    import numpy as np

    src = tmp_path / "cube.npy"
    np.save(src, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = expect_clean_error(host, tmp_path, "simulate", src, "--source-sensor", "sentinel2a",
                                "--sensor", "landsat8", "-o", tmp_path / "out.atoms")
    assert "holds object values" in result.stderr


def test_weights_that_do_not_fit_name_the_tensor():
    from torch import nn

    from atomizer.errors import CheckpointError
    from atomizer.training.checkpoint import load_weights

    state = nn.Sequential(nn.Linear(3, 5)).state_dict()
    with pytest.raises(CheckpointError) as info:
        load_weights(nn.Sequential(nn.Linear(3, 4)), state, origin="ckpt.json", model_name="toy")
    text = str(info.value)
    assert "tensor 0.weight has shape (5, 3) but the model expects (4, 3)" in text, text
    assert "Error(s) in loading" not in text and "\n" not in text
