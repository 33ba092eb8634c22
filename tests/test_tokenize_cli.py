"""``atomizer tokenize`` end to end: summary, .atoms, --json, windows, --encode, bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from atomizer.atoms.io import load_atoms, open_atoms
from atomizer.cli.main import build_cli
from atomizer.readers import ReadOptions, StacReader
from atomizer.readers.stac_build import build_stac_item
from atomizer.readers.synthetic import write_geotiff
from atomizer.sensors import spec_to_yaml
from atomizer.sensors.spec import Band, SensorSpec, StacHints

WHEN = dt.datetime(2020, 7, 14, 11, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def spec() -> SensorSpec:
    kw = {"gsd_m": 10, "scale": 0.0001, "offset": -0.1, "nodata": 0}
    return SensorSpec(
        id="clisat",
        name="CLI test sensor",
        sources=["test"],
        stac=StacHints(platform=["clisat-1"], constellation=["clisat"]),
        bands=[
            Band(name="B2", common_name="blue", center_wavelength_nm=490, fwhm_nm=65, **kw),
            Band(name="B3", common_name="green", center_wavelength_nm=560, fwhm_nm=35, **kw),
            Band(name="B4", common_name="red", center_wavelength_nm=665, fwhm_nm=30, **kw),
        ],
    )


@pytest.fixture
def spec_file(tmp_path, spec):
    path = tmp_path / "clisat.yaml"
    path.write_text(spec_to_yaml(spec))
    return path


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(3)
    cube = rng.integers(1000, 4000, (3, 12, 16)).astype(np.uint16)
    cube[:, :2, :3] = 0  # a no-data corner
    return cube


@pytest.fixture
def item(tmp_path, scene) -> str:
    paths = {
        name: write_geotiff(tmp_path / f"{name}.tif", scene[i])
        for i, name in enumerate(("B2", "B3", "B4"))
    }
    fields = {
        name: {"eo:bands": [{"name": name, "center_wavelength": c, "full_width_half_max": w}]}
        for name, c, w in (("B2", 0.49, 0.065), ("B3", 0.56, 0.035), ("B4", 0.665, 0.03))
    }
    stac = build_stac_item(
        "cli-item", paths, datetime=WHEN, properties={"platform": "clisat-1"}, asset_fields=fields
    )
    stac.save_object(dest_href=str(tmp_path / "item.json"), include_self_link=False)
    return str(tmp_path / "item.json")


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory):
    """One host for the module (its sensor registry is built once): built-ins only."""
    from atomizer.plugins.host import PluginHost

    xdg = tmp_path_factory.mktemp("xdg")
    return PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(xdg)})


@pytest.fixture
def run(shared_host):
    def invoke(*args: str):
        return CliRunner().invoke(build_cli(shared_host), [str(a) for a in args])

    return invoke


def test_tokenize_prints_a_summary_and_writes_atoms(run, item, spec_file, spec, tmp_path):
    out = tmp_path / "scene.atoms"
    result = run("tokenize", item, "--sensor", spec_file, "-o", out)
    assert result.exit_code == 0, result.output
    for text in ("clisat", "B2", "B4", "558 atoms", "no-data dropped: 18", f"wrote {out}"):
        assert text in result.output
    saved = load_atoms(out)
    direct = StacReader().read(item, sensor=spec).atoms
    assert saved.same_atoms(direct) and len(saved) == 3 * (12 * 16 - 6)
    assert saved.scene.datetime == WHEN


def test_tokenize_json_report(run, item, spec_file):
    result = run("tokenize", item, "--sensor", spec_file, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sensor_id"] == "clisat" and report["n_atoms"] == 558 and report["n_nodata"] == 18
    assert [b["band"] for b in report["bands"]] == ["B2", "B3", "B4"]
    assert {b["asset"] for b in report["bands"]} == {"B2", "B3", "B4"}
    assert all(b["gsd_m"] == 10 and b["min"] >= -0.1 for b in report["bands"])
    assert report["output"] is None


def test_sensor_is_detected_when_the_registry_has_it(item, spec_file, tmp_path):
    from atomizer.plugins.host import PluginHost

    environ = {
        "ATOMIZER_SENSOR_PATH": str(spec_file.parent),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    result = CliRunner().invoke(
        build_cli(PluginHost(load_entrypoints=False, environ=environ)), ["tokenize", item, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sensor_from"].startswith("detected from item properties")


def test_window_and_bbox_options(run, item, spec_file, spec):
    result = run("tokenize", item, "--sensor", spec_file, "--window", "4,2,5,3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_atoms"] == 3 * 5 * 3
    full = StacReader().read(item, sensor=spec).atoms
    lon, lat = full.scene.lon, full.scene.lat
    result = run(
        "tokenize",
        item,
        "--sensor",
        spec_file,
        "--bbox",
        f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert 0 < json.loads(result.stdout)["n_atoms"] < len(full)


def test_geotiff_with_band_mapping(run, tmp_path, scene, spec_file, spec):
    from atomizer.readers.geotiff import GeoTiffReader

    path = write_geotiff(tmp_path / "stack.tif", scene[[2, 1, 0]])
    out = tmp_path / "g.atoms"
    result = run("tokenize", path, "--sensor", spec_file, "--bands", "B4,B3,B2", "-o", out)
    assert result.exit_code == 0, result.output
    plain = write_geotiff(tmp_path / "plain.tif", scene)  # the same pixels in spec band order
    assert load_atoms(out).same_atoms(GeoTiffReader().read(plain, sensor=spec).atoms)


def test_warnings_go_to_stderr(run, tmp_path, scene, spec_file):
    path = write_geotiff(tmp_path / "b2.tif", scene[0])
    fields = {"B2": {"eo:bands": [{"name": "B2", "center_wavelength": 0.52}]}}
    stac = build_stac_item("w", {"B2": path}, datetime=WHEN, asset_fields=fields)
    stac.save_object(dest_href=str(tmp_path / "w.json"), include_self_link=False)
    result = run("tokenize", tmp_path / "w.json", "--sensor", spec_file)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "520 nm" in result.stderr and "490 nm" in result.stderr


def _token_config(folder: Path) -> Path:
    from atomizer.encoders import default_config

    config = default_config()
    config["value"]["num_bands"] = 4
    config["position"]["num_bands"] = 4
    path = folder / "tok.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_encode_writes_token_features(run, item, spec_file, tmp_path):
    from atomizer.encoders import Tokenizer

    path = _token_config(tmp_path)
    out = tmp_path / "tok.atoms"
    result = run(
        "tokenize", item, "--sensor", spec_file, "--window", "0,0,6,6", "-o", out, "--encode", path
    )
    assert result.exit_code == 0, result.output
    handle = open_atoms(out)
    tokens = handle.array("tokens")
    atoms = handle.load()
    expected = Tokenizer.from_config(path).tokens(atoms).numpy()
    assert tokens.shape == (len(atoms), expected.shape[1])
    np.testing.assert_array_equal(tokens, expected)
    assert run("tokenize", item, "--sensor", spec_file, "--encode", path).exit_code == 2  # needs -o


def test_encode_refuses_huge_token_matrices(run, item, spec_file, tmp_path, monkeypatch):
    from atomizer.cli import tokenize_cmd

    monkeypatch.setattr(tokenize_cmd, "MAX_TOKEN_BYTES", 1000)
    out = tmp_path / "big.atoms"
    result = run(
        "tokenize", item, "--sensor", spec_file, "-o", out, "--encode", _token_config(tmp_path)
    )
    assert result.exit_code == 1 and "token matrix" in result.stderr and "--window" in result.stderr
    assert not out.exists()


def test_progress_bar_can_be_forced(run, item, spec_file):
    result = run("tokenize", item, "--sensor", spec_file, "--progress", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_atoms"] == 558


# --- bad input: one error line, exit 1, no output file ------------------------------------
def _fails(result, out, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left behind


def test_missing_asset_file(run, item, spec_file, tmp_path):
    (tmp_path / "B3.tif").unlink()
    out = tmp_path / "o.atoms"
    _fails(
        run("tokenize", item, "--sensor", spec_file, "-o", out), out, "asset 'B3'", "does not exist"
    )


def test_asset_no_band_matches(run, tmp_path, scene, spec_file):
    paths = {
        "B2": write_geotiff(tmp_path / "b2.tif", scene[0]),
        "SWIR": write_geotiff(tmp_path / "sw.tif", scene[1]),
    }
    fields = {
        "SWIR": {
            "eo:bands": [{"name": "SWIR", "center_wavelength": 1.6, "full_width_half_max": 0.09}]
        }
    }
    build_stac_item("x", paths, datetime=WHEN, asset_fields=fields).save_object(
        dest_href=str(tmp_path / "x.json"), include_self_link=False
    )
    out = tmp_path / "o.atoms"
    _fails(
        run("tokenize", tmp_path / "x.json", "--sensor", spec_file, "-o", out),
        out,
        "asset 'SWIR'",
        "matches no band",
        "expects B2 (blue, 490 nm), B3 (green, 560 nm), B4 (red, 665 nm)",
    )


def test_no_band_metadata_and_no_sensor(run, tmp_path, scene):
    paths = {"a": write_geotiff(tmp_path / "a.tif", scene[0])}
    build_stac_item("bare", paths, datetime=WHEN).save_object(
        dest_href=str(tmp_path / "bare.json"), include_self_link=False
    )
    out = tmp_path / "o.atoms"
    _fails(
        run("tokenize", tmp_path / "bare.json", "-o", out),
        out,
        "cannot tell which sensor",
        "--sensor",
    )


def test_corrupt_geotiff(run, tmp_path, spec_file):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)
    out = tmp_path / "o.atoms"
    _fails(run("tokenize", bad, "--sensor", spec_file, "-o", out), out, "corrupt")


def test_truncated_geotiff(run, tmp_path, spec_file):
    good = write_geotiff(tmp_path / "good.tif", np.ones((3, 128, 128), np.uint16))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    out = tmp_path / "o.atoms"
    _fails(run("tokenize", cut, "--sensor", spec_file, "-o", out), out, "truncated")


def test_wavelength_unit_slip(run, tmp_path, scene, spec_file):
    paths = {"B2": write_geotiff(tmp_path / "b2.tif", scene[0])}
    fields = {
        "B2": {"eo:bands": [{"name": "B2", "center_wavelength": 490, "full_width_half_max": 65}]}
    }
    build_stac_item("u", paths, datetime=WHEN, asset_fields=fields).save_object(
        dest_href=str(tmp_path / "u.json"), include_self_link=False
    )
    out = tmp_path / "o.atoms"
    _fails(
        run("tokenize", tmp_path / "u.json", "--sensor", spec_file, "-o", out),
        out,
        "micrometres",
        "0.49",
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [("missing-folder", "does not exist; create it first"), ("a-folder", "is a folder")],
)
def test_unwritable_output_fails_before_reading(run, tmp_path, spec_file, where, expected):
    if where == "a-folder":
        out = tmp_path / "dir.atoms"
        out.mkdir()
    else:
        out = tmp_path / "nope" / "o.atoms"
    # the source does not even exist: the output check must come first
    result = run("tokenize", tmp_path / "missing.json", "--sensor", spec_file, "-o", out)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0] and "missing.json" not in result.stderr


def test_window_outside_the_scene(run, item, spec_file, tmp_path):
    out = tmp_path / "o.atoms"
    _fails(
        run("tokenize", item, "--sensor", spec_file, "-o", out, "--window", "100,100,5,5"),
        out,
        "outside the scene",
    )
    _fails(
        run("tokenize", item, "--sensor", spec_file, "-o", out, "--bbox", "100,10,100.1,10.1"),
        out,
        "holds no pixel",
    )
    _fails(
        run("tokenize", item, "--sensor", spec_file, "-o", out, "--bbox", "1,2,3"),
        out,
        "four numbers",
    )


def test_unknown_suffix_and_unknown_sensor(run, tmp_path, item):
    out = tmp_path / "o.atoms"
    (tmp_path / "notes.txt").write_text("hi")
    _fails(run("tokenize", tmp_path / "notes.txt", "-o", out), out, "no reader accepts")
    _fails(run("tokenize", item, "--sensor", "no-such-sensor", "-o", out), out, "no-such-sensor")


def test_read_options_are_validated():
    from atomizer.errors import WindowError
    from atomizer.readers import LonLatBBox, PixelWindow

    with pytest.raises(WindowError):
        ReadOptions(bbox=LonLatBBox(0, 0, 1, 1), window=PixelWindow(0, 0, 1, 1))
    with pytest.raises(WindowError, match="W < E"):
        LonLatBBox(2, 0, 1, 1)
    with pytest.raises(WindowError, match="outside -90..90"):
        LonLatBBox(0, 95, 1, 96)
    with pytest.raises(WindowError, match="empty"):
        PixelWindow(0, 0, 0, 5)


def test_tokenize_never_imports_torch(item, spec_file, tmp_path):
    """The tokenize path (plugin host, sensor detection, reading, writing) stays free of torch,
    which would double its start-up time and peak memory."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from atomizer.cli.main import main\n"
        "try:\n"
        f"    main(['tokenize', {item!r}, '-o', {str(tmp_path / 'x.atoms')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('torch' in sys.modules)\n"
    )
    environ = {
        **os.environ,
        "ATOMIZER_SENSOR_PATH": str(spec_file.parent),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
    assert (tmp_path / "x.atoms").stat().st_size > 0
