"""`atomizer simulate` end to end, through click's runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_package
from click.testing import CliRunner

from atomizer.atoms import load_atoms
from atomizer.cli.main import build_cli


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One plugin host (built-in sensors only) for the whole module: the registry loads once."""
    from atomizer.plugins.host import PluginHost

    return PluginHost(
        load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg"))}
    )


@pytest.fixture
def cli(host):
    return build_cli(host)


def run(cli, *args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_indian_pines_to_landsat8_atoms(cli, tmp_path):
    needs_package("tensorly")
    out = tmp_path / "x.atoms"
    result = run(cli, "simulate", "indian-pines", "--sensor", "landsat8", "-o", out)
    assert result.exit_code == 0, result.output
    atoms = load_atoms(out)
    assert atoms.band_names == ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
    assert atoms.scene.sensor_id == "landsat8" and atoms.scene.datetime.year == 1992
    assert set(atoms.gsd_m) == {30.0} and len(atoms) == 7 * 96 * 96  # 145 px x 20 m -> 96 x 30 m
    assert "skipped landsat8 band B10" in result.stderr and "B8" in result.stderr
    assert f"wrote {out}" in result.stdout


def test_explicit_unsupported_band_is_one_error_line(cli, tmp_path):
    cube = tmp_path / "cube.npy"
    np.save(cube, np.ones((4, 4, 200), np.float32))
    out = tmp_path / "y.atoms"
    out.write_bytes(b"keep me")
    result = run(
        cli,
        "simulate",
        cube,
        "--source-sensor",
        "aviris-indian-pines-1992-corrected",
        "--sensor",
        "landsat8",
        "--bands",
        "B4,B10",
        "-o",
        out,
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot simulate landsat8: band B10")
    assert out.read_bytes() == b"keep me"  # nothing overwritten
    strict = run(
        cli,
        "simulate",
        cube,
        "--source-sensor",
        "aviris-indian-pines-1992-corrected",
        "--sensor",
        "landsat8",
        "--strict",
        "-o",
        out,
    )
    assert strict.exit_code == 1 and "B8" in strict.stderr


def test_npy_cube_to_geotiff_and_stac(cli, tmp_path):
    import rasterio

    cube = tmp_path / "cube.npy"
    np.save(cube, np.full((6, 6, 200), 0.3, np.float32))
    out = tmp_path / "s2.tif"
    result = run(
        cli,
        "simulate",
        cube,
        "--source-sensor",
        "aviris-indian-pines-1992-corrected",
        "--sensor",
        "sentinel2a",
        "-b",
        "B04",
        "-b",
        "B8A",
        "--gsd",
        "40",
        "--datetime",
        "2020-07-01",
        "-o",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bands"] == ["B04", "B8A"] and summary["n_atoms"] == 2 * 9
    with rasterio.open(out) as ds:
        assert ds.count == 2 and ds.res == (40.0, 40.0)
        np.testing.assert_allclose(ds.read(), 0.3, rtol=1e-5)
    item = json.loads(out.with_suffix(".json").read_text())
    assert item["properties"]["datetime"].startswith("2020-07-01")
    assert [b["name"] for b in item["assets"]["data"]["eo:bands"]] == ["B04", "B8A"]
    no_time = run(
        cli,
        "simulate",
        cube,
        "--source-sensor",
        "aviris-indian-pines-1992-corrected",
        "--sensor",
        "sentinel2a",
        "-b",
        "B04",
        "--gsd",
        "40",
        "-o",
        tmp_path / "t.tif",
    )
    assert no_time.exit_code == 1 and "--datetime" in no_time.stderr


def test_envi_library_to_csv(cli, tmp_path):
    wl = np.arange(400, 2501, 10) / 1000.0
    spectra = np.stack([np.full(wl.size, 0.2), np.linspace(0.1, 0.5, wl.size)]).astype("<f4")
    (tmp_path / "lib.sli").write_bytes(spectra.tobytes())
    (tmp_path / "lib.sli.hdr").write_text(
        f"ENVI\nsamples = {wl.size}\nlines = 2\nbands = 1\ndata type = 4\nbyte order = 0\n"
        "wavelength units = Micrometers\nspectra names = { flat , ramp }\n"
        "wavelength = { " + " , ".join(f"{w:.2f}" for w in wl) + " }\n"
    )
    out = tmp_path / "lib.csv"
    result = run(
        cli,
        "simulate",
        tmp_path / "lib.sli",
        "--sensor",
        "modis-terra",
        "--bands",
        "B01,B02,B03",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "name,B01,B02,B03" and rows[1].startswith("flat,")
    np.testing.assert_allclose([float(v) for v in rows[1].split(",")[1:]], 0.2, rtol=1e-5)
    atoms_out = tmp_path / "lib.atoms"
    assert (
        run(
            cli,
            "simulate",
            tmp_path / "lib.sli",
            "--sensor",
            "modis-terra",
            "-b",
            "B01",
            "-o",
            atoms_out,
        ).exit_code
        == 0
    )
    assert len(load_atoms(atoms_out)) == 2


def test_bad_inputs(cli, tmp_path):
    missing = run(
        cli, "simulate", tmp_path / "nope.npy", "--sensor", "landsat8", "-o", tmp_path / "a.atoms"
    )
    assert missing.exit_code == 1 and "not found" in missing.stderr
    suffix = run(cli, "simulate", "indian-pines", "--sensor", "landsat8", "-o", tmp_path / "a.png")
    assert suffix.exit_code == 1 and ".atoms" in suffix.stderr
    no_table = tmp_path / "c.npy"
    np.save(no_table, np.ones((2, 2, 3), np.float32))
    res = run(cli, "simulate", no_table, "--sensor", "landsat8", "-o", tmp_path / "a.atoms")
    assert res.exit_code == 1 and "--source-sensor" in res.stderr
    unknown = run(
        cli,
        "simulate",
        no_table,
        "--source-sensor",
        "aviris-indian-pines-1992-corrected",
        "--sensor",
        "no-such-sat",
        "-o",
        tmp_path / "a.atoms",
    )
    assert unknown.exit_code == 1 and "no-such-sat" in unknown.stderr
