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
COMMON_NAMES = ("blue", "green", "red", "nir")
#: How each asset of a STAC item names its band, and the reader's matched_by for it.
MATCH_MODES = {"asset key": "asset key", "wavelength": "centre wavelength", "common name": "common name"}
#: Band GSDs on a STAC item, as multiples of the finest: mixed grids over one footprint.
GSD_FACTORS = (1, 2, 6)
COARSEST = max(GSD_FACTORS)


def spec_of(n_bands: int, gsd_m: float) -> SensorSpec:
    return SensorSpec(
        id="prop",
        name="property sensor",
        sources=["test"],
        bands=[
            Band(
                name=NAMES[i],
                common_name=COMMON_NAMES[i],
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


def write_item(
    folder: Path,
    planes: list[np.ndarray],
    gsds: list[float],
    order: list[int],
    mode: str = "asset key",
) -> Path:
    """One single-band asset per band (band i at ``gsds[i]``), inserted into the item in ``order``.

    ``mode`` says how an asset names its band: by its key (the band name, no band metadata), or under
    an opaque key with only an ``eo:bands`` centre wavelength, or only an ``eo:bands`` common name.
    """
    keys, fields = {}, {}
    for i in order:
        if mode == "asset key":
            keys[i] = NAMES[i]
        else:
            keys[i] = f"data_{'abcd'[i]}"
            eo = {"center_wavelength": CENTRES_NM[i] / 1000.0} if mode == "wavelength" else {
                "common_name": COMMON_NAMES[i]}
            fields[keys[i]] = {"eo:bands": [eo]}
    tag = "".join(map(str, order))
    paths = {
        keys[i]: write_geotiff(folder / f"{NAMES[i]}_{tag}.tif", planes[i], gsd_m=gsds[i]) for i in order
    }
    item = build_stac_item(
        "prop", paths, datetime=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), asset_fields=fields
    )
    out = folder / f"item_{tag}_{mode.replace(' ', '_')}.json"
    item.save_object(dest_href=str(out), include_self_link=False)
    return out


@st.composite
def mixed_gsd_scenes(draw):
    """Per band a uint16 plane at GSD g, 2g or 6g over one footprint, with random no-data pixels."""
    bands = draw(st.integers(1, MAX_BANDS))
    factors = draw(st.lists(st.sampled_from(GSD_FACTORS), min_size=bands, max_size=bands))
    rows, cols = COARSEST * draw(st.integers(1, 2)), COARSEST * draw(st.integers(1, 2))
    gsd = draw(st.sampled_from([1.0, 10.0, 20.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nodata_fraction = draw(st.sampled_from([0.0, 0.3]))
    planes = []
    for f in factors:
        plane = rng.integers(1, 60000, (rows // f, cols // f)).astype(np.uint16)
        plane[rng.random(plane.shape) < nodata_fraction] = NODATA_DN
        planes.append(plane)
    return planes, [gsd * f for f in factors], (rows, cols, gsd)


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
@given(scene=scenes(), data=st.data(), mode=st.sampled_from(sorted(MATCH_MODES)))
def test_permuting_assets_gives_the_same_atoms(scene, data, mode):
    """Whichever way the assets name their bands, their order in the item does not matter."""
    cube, gsd = scene
    spec = spec_of(cube.shape[0], gsd)
    perm = list(data.draw(st.permutations(range(cube.shape[0]))))
    planes, gsds = list(cube), [gsd] * cube.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        a, report = StacReader().read(write_item(Path(tmp), planes, gsds, sorted(perm), mode), sensor=spec)
        b = StacReader().read(write_item(Path(tmp), planes, gsds, perm, mode), sensor=spec).atoms
        by_key = StacReader().read(write_item(Path(tmp), planes, gsds, sorted(perm)), sensor=spec).atoms
    assert {r.matched_by for r in report.bands} == {MATCH_MODES[mode]}
    assert a.same_atoms(b)
    assert a.same_atoms(by_key)  # the matching mode changes nothing either


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=mixed_gsd_scenes(), mode=st.sampled_from(sorted(MATCH_MODES)))
def test_stac_atom_count_is_valid_pixels_of_every_grid(scene, mode):
    planes, gsds, (_, _, gsd) = scene
    spec = spec_of(len(planes), gsd)
    with tempfile.TemporaryDirectory() as tmp:
        atoms, report = StacReader().read(
            write_item(Path(tmp), planes, gsds, list(range(len(planes))), mode), sensor=spec
        )
    assert atoms.gsd_m.tolist() == gsds
    for i, plane in enumerate(planes):
        assert int(atoms.band_counts()[i]) == int(np.count_nonzero(plane != NODATA_DN))
    assert report.n_nodata == sum(p.size for p in planes) - len(atoms)
    assert np.all(atoms.value >= 0.5 * 1 - 3.0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=mixed_gsd_scenes(), mode=st.sampled_from(sorted(MATCH_MODES)), data=st.data())
def test_stac_window_atoms_are_the_matching_subset_on_mixed_grids(scene, mode, data):
    """A pixel window (on the finest grid) keeps exactly the atoms whose centres fall inside it."""
    planes, gsds, (rows, cols, gsd) = scene
    fine = min(gsds)
    fine_rows, fine_cols = round(rows * gsd / fine), round(cols * gsd / fine)
    col, row = data.draw(st.integers(0, fine_cols - 1)), data.draw(st.integers(0, fine_rows - 1))
    width, height = data.draw(st.integers(1, fine_cols + 2)), data.draw(st.integers(1, fine_rows + 2))
    spec = spec_of(len(planes), gsd)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_item(Path(tmp), planes, gsds, list(range(len(planes))), mode)
        full = StacReader().read(path, sensor=spec).atoms
        window = PixelWindow(col, row, width, height)
        part = StacReader().read(path, sensor=spec, options=ReadOptions(window=window)).atoms
    # pixel edges of the window in the full scene's frame (x east, y north of the centre)
    x0 = (col - fine_cols / 2) * fine
    y1 = (fine_rows / 2 - row) * fine
    subset = full.window(x0, y1 - height * fine, x0 + width * fine, y1)
    assert part.same_atoms(subset)


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
            .read(
                write_item(Path(tmp), list(cube), [gsd] * cube.shape[0], list(range(cube.shape[0]))),
                sensor=spec,
            )
            .atoms
        )
        loaded = load_atoms(save_atoms(atoms, Path(tmp) / "a.atoms"))
    for name in ("value", "band", "x", "y"):
        original, back = getattr(atoms, name), getattr(loaded, name)
        assert original.dtype == back.dtype and np.array_equal(original, back)
    assert loaded.bands == atoms.bands
    assert loaded.scene == atoms.scene
