"""Invariances of the readers, checked on small random GeoTIFFs and STAC items (Hypothesis)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomizer.atoms.io import load_atoms, save_atoms
from atomizer.readers import PixelWindow, ReadOptions
from atomizer.readers.geotiff import GeoTiffReader
from atomizer.readers.stac import StacReader
from atomizer.readers.stac_build import build_stac_item
from atomizer.readers.synthetic import write_geotiff
from atomizer.sensors.spec import Band, SensorSpec

NODATA_DN = 0
MAX_BANDS = 4
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CENTRES_NM = (490.0, 560.0, 665.0, 842.0)
NAMES = ("B1", "B2", "B3", "B4")


def spec_of(n_bands: int, gsd_m: float) -> SensorSpec:
    return SensorSpec(
        id="prop",
        name="property sensor",
        sources=["test"],
        bands=[
            Band(
                name=NAMES[i],
                center_wavelength_nm=CENTRES_NM[i],
                fwhm_nm=20,
                gsd_m=gsd_m,
                scale=0.5,
                offset=-3.0,
                nodata=NODATA_DN,
            )
            for i in range(n_bands)
        ],
    )


@st.composite
def scenes(draw):
    """A ``(bands, rows, cols)`` uint16 cube with random no-data pixels, and a GSD."""
    bands = draw(st.integers(1, MAX_BANDS))
    rows, cols = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cube = rng.integers(1, 60000, (bands, rows, cols)).astype(np.uint16)
    nodata_fraction = draw(st.sampled_from([0.0, 0.2, 0.7]))
    cube[rng.random(cube.shape) < nodata_fraction] = NODATA_DN
    gsd = draw(st.sampled_from([1.0, 10.0, 20.0, 60.0]))
    return cube, gsd


def write_item(folder: Path, cube: np.ndarray, gsd: float, order: list[int]) -> Path:
    """One single-band asset per band, inserted into the item in ``order``."""
    paths = {NAMES[i]: write_geotiff(folder / f"{NAMES[i]}.tif", cube[i], gsd_m=gsd) for i in order}
    item = build_stac_item("prop", paths, datetime=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    out = folder / f"item_{''.join(map(str, order))}.json"
    item.save_object(dest_href=str(out), include_self_link=False)
    return out


@SETTINGS
@given(scene=scenes(), data=st.data())
def test_permuting_file_bands_gives_the_same_atoms(scene, data):
    cube, gsd = scene
    spec = spec_of(cube.shape[0], gsd)
    perm = data.draw(st.permutations(range(cube.shape[0])))
    with tempfile.TemporaryDirectory() as tmp:
        plain = (
            GeoTiffReader()
            .read(write_geotiff(Path(tmp) / "a.tif", cube, gsd_m=gsd), sensor=spec)
            .atoms
        )
        shuffled = write_geotiff(Path(tmp) / "b.tif", cube[list(perm)], gsd_m=gsd)
        mapping = tuple(NAMES[i] for i in perm)
        permuted = (
            GeoTiffReader().read(shuffled, sensor=spec, options=ReadOptions(bands=mapping)).atoms
        )
    assert permuted.same_atoms(plain)


@SETTINGS
@given(scene=scenes(), data=st.data())
def test_permuting_assets_gives_the_same_atoms(scene, data):
    cube, gsd = scene
    spec = spec_of(cube.shape[0], gsd)
    perm = list(data.draw(st.permutations(range(cube.shape[0]))))
    with tempfile.TemporaryDirectory() as tmp:
        a = StacReader().read(write_item(Path(tmp), cube, gsd, sorted(perm)), sensor=spec).atoms
        b = StacReader().read(write_item(Path(tmp), cube, gsd, perm), sensor=spec).atoms
    assert a.same_atoms(b)


@SETTINGS
@given(scene=scenes())
def test_atom_count_is_valid_pixels_times_bands(scene):
    cube, gsd = scene
    cube[:, cube.min(axis=0) == NODATA_DN] = NODATA_DN  # one validity mask shared by all bands
    spec = spec_of(cube.shape[0], gsd)
    with tempfile.TemporaryDirectory() as tmp:
        atoms, report = GeoTiffReader().read(
            write_geotiff(Path(tmp) / "a.tif", cube, gsd_m=gsd), sensor=spec
        )
    valid = int(np.count_nonzero(cube[0] != NODATA_DN))
    assert len(atoms) == valid * cube.shape[0]
    assert report.n_nodata == cube[0].size * cube.shape[0] - len(atoms)
    assert np.all(atoms.value >= 0.5 * 1 - 3.0)  # DN 0 never became the value -3.0


@SETTINGS
@given(scene=scenes(), data=st.data())
def test_window_atoms_are_the_matching_subset(scene, data):
    cube, gsd = scene
    _, rows, cols = cube.shape
    col, row = data.draw(st.integers(0, cols - 1)), data.draw(st.integers(0, rows - 1))
    width, height = data.draw(st.integers(1, cols + 2)), data.draw(st.integers(1, rows + 2))
    spec = spec_of(cube.shape[0], gsd)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_geotiff(Path(tmp) / "a.tif", cube, gsd_m=gsd)
        full = GeoTiffReader().read(path, sensor=spec).atoms
        part = (
            GeoTiffReader()
            .read(
                path, sensor=spec, options=ReadOptions(window=PixelWindow(col, row, width, height))
            )
            .atoms
        )
    # pixel edges of the window in the full scene's frame (x east, y north of the centre)
    x0 = (col - cols / 2) * gsd
    y1 = (rows / 2 - row) * gsd
    subset = full.window(x0, y1 - height * gsd, x0 + width * gsd, y1)
    assert part.same_atoms(subset)
    valid = cube[:, row : row + height, col : col + width] != NODATA_DN
    assert len(part) == int(np.count_nonzero(valid))


@SETTINGS
@given(scene=scenes())
def test_save_load_round_trip_is_exact(scene):
    cube, gsd = scene
    spec = spec_of(cube.shape[0], gsd)
    with tempfile.TemporaryDirectory() as tmp:
        atoms = (
            StacReader()
            .read(write_item(Path(tmp), cube, gsd, list(range(cube.shape[0]))), sensor=spec)
            .atoms
        )
        loaded = load_atoms(save_atoms(atoms, Path(tmp) / "a.atoms"))
    for name in ("value", "band", "x", "y"):
        original, back = getattr(atoms, name), getattr(loaded, name)
        assert original.dtype == back.dtype and np.array_equal(original, back)
    assert loaded.bands == atoms.bands
    assert loaded.scene == atoms.scene
