"""``atomizer atoms show | plot`` and the quick-look rebuilt from atoms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.io import save_atoms
from atomizer.cli.main import build_cli
from atomizer.errors import AtomizerError
from atomizer.quicklook import band_raster, plot_quicklook, rgb_bands, rgb_composite, stretch
from atomizer.sensors.spec import Band, SensorSpec


@pytest.fixture
def spec() -> SensorSpec:
    return SensorSpec(
        id="rgbn",
        name="RGB + NIR",
        sources=["test"],
        bands=[
            Band(name="R", common_name="red", center_wavelength_nm=665, fwhm_nm=30, gsd_m=10),
            Band(name="G", common_name="green", center_wavelength_nm=560, fwhm_nm=35, gsd_m=10),
            Band(name="B", common_name="blue", center_wavelength_nm=490, fwhm_nm=65, gsd_m=10),
            Band(name="N", common_name="nir", center_wavelength_nm=842, fwhm_nm=115, gsd_m=20),
        ],
    )


@pytest.fixture
def atoms(spec) -> AtomSet:
    """Red bright on the west half, blue bright on the east half; NIR at 20 m; one hole."""
    rgb = np.full((3, 8, 10), 0.1, dtype=np.float32)
    rgb[0, :, :5] = 0.9
    rgb[2, :, 5:] = 0.9
    rgb[:, 3, 4] = np.nan
    fine = AtomSet.from_array(rgb, spec, bands=["R", "G", "B"])
    nir = AtomSet.from_array(np.arange(20, dtype=np.float32).reshape(1, 4, 5), spec, bands=["N"])
    return AtomSet.concat([fine, nir], scene=SceneMeta(sensor_id="rgbn", source_id="toy"))


@pytest.fixture
def atoms_file(tmp_path, atoms):
    return save_atoms(
        atoms, tmp_path / "toy.atoms", extra={"tokens": np.zeros((len(atoms), 7), np.float32)}
    )


@pytest.fixture
def run(host):
    def invoke(*args):
        return CliRunner().invoke(build_cli(host), [str(a) for a in args])

    return invoke


def test_show_json(run, atoms_file, atoms):
    result = run("atoms", "show", atoms_file, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sensor"] == "rgbn" and data["n_atoms"] == len(atoms) == 3 * 79 + 20
    assert data["extra_arrays"] == {"tokens": [len(atoms), 7]}
    by_name = {b["name"]: b for b in data["bands"]}
    assert set(by_name) == {"R", "G", "B", "N"}
    n = by_name["N"]
    assert (n["n_atoms"], n["min"], n["max"], n["mean"], n["gsd_m"]) == (20, 0.0, 19.0, 9.5, 20.0)
    r = by_name["R"]
    assert (
        r["center_wavelength_nm"] == 665 and r["fwhm_nm"] == 30 and r["max"] == pytest.approx(0.9)
    )


def test_show_table(run, atoms_file):
    result = run("atoms", "show", atoms_file)
    assert result.exit_code == 0, result.output
    assert "rgbn" in result.output and "665" in result.output and "tokens" in result.output


def test_show_bad_files(run, tmp_path):
    bad = tmp_path / "bad.atoms"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    result = run("atoms", "show", bad)
    assert (
        result.exit_code == 1
        and result.stderr.startswith("error: ")
        and "bad.atoms" in result.stderr
    )
    result = run("atoms", "show", tmp_path / "missing.atoms")
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_band_raster_rebuilds_the_grid(atoms):
    r = band_raster(atoms, "N")
    np.testing.assert_array_equal(r.data, np.arange(20, dtype=np.float32).reshape(4, 5))
    assert r.extent == (-50.0, 50.0, -40.0, 40.0)
    red = band_raster(atoms, "R")
    assert (
        red.data.shape == (8, 10) and np.isnan(red.data[3, 4]) and np.isfinite(red.data).sum() == 79
    )
    assert red.extent == (-50.0, 50.0, -40.0, 40.0)


def test_band_raster_subsamples_large_grids(atoms):
    r = band_raster(atoms, "R", max_side=4)
    assert r.step == 3 and r.data.shape == (3, 4)
    np.testing.assert_array_equal(r.data, band_raster(atoms, "R").data[::3, ::3])


def test_rgb_composite_puts_red_west_and_blue_east(atoms):
    assert rgb_bands(atoms) == [0, 1, 2]
    image, extent = rgb_composite(atoms, rgb_bands(atoms))
    assert image.shape == (8, 10, 4) and extent == (-50.0, 50.0, -40.0, 40.0)
    west, east = image[0, 0], image[0, 9]
    assert west[0] == 1.0 and west[2] == 0.0 and east[0] == 0.0 and east[2] == 1.0
    assert image[3, 4, 3] == 0.0 and image[0, 0, 3] == 1.0  # the hole is transparent


def test_stretch_maps_percentiles_to_0_1():
    data = np.linspace(0, 100, 101, dtype=np.float32)
    out = stretch(data, (10, 90))
    assert out[0] == 0 and out[-1] == 1 and out[50] == pytest.approx(0.5)
    assert np.isnan(stretch(np.array([np.nan]))).all()


def test_plot_rgb_and_panels(run, atoms_file, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "q.png"
    result = run("atoms", "plot", atoms_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert mpimg.imread(out).shape[2] in (3, 4)
    panels = tmp_path / "p.png"
    assert run("atoms", "plot", atoms_file, "-o", panels, "--panels").exit_code == 0
    assert mpimg.imread(panels).shape[1] > mpimg.imread(out).shape[1]  # four panels side by side
    assert run("atoms", "plot", atoms_file, "-o", tmp_path / "n.png", "--bands", "N").exit_code == 0


def test_plot_without_rgb_bands_draws_panels(tmp_path, spec, atoms):
    nir_only = atoms.select_bands(["N"])
    path = plot_quicklook(nir_only, tmp_path / "n.png")
    assert path.stat().st_size > 0
    with pytest.raises(AtomizerError, match="no red, green and blue"):
        plot_quicklook(nir_only, tmp_path / "x.png", rgb=True)
    with pytest.raises(AtomizerError, match="empty"):
        plot_quicklook(atoms.take(np.zeros(len(atoms), bool)), tmp_path / "e.png")


def test_plot_errors(run, atoms_file, tmp_path):
    result = run("atoms", "plot", atoms_file, "-o", tmp_path / "x.png", "--bands", "Q")
    assert result.exit_code == 1 and "Q" in result.stderr and not (tmp_path / "x.png").exists()
    result = run("atoms", "plot", atoms_file, "-o", tmp_path / "missing" / "x.png")
    assert result.exit_code == 1 and "does not exist" in result.stderr
