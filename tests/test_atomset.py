"""AtomSet and the .atoms format (atomizer/atoms): building, subsets, comparison, save / load."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.io import FORMAT_VERSION, load_atoms, open_atoms, save_atoms
from atomizer.errors import AtomizerError, AtomsFormatError, OutputError, WindowError
from atomizer.sensors.spec import Band, SensorSpec


@pytest.fixture
def spec() -> SensorSpec:
    return SensorSpec(
        id="pair",
        name="two bands",
        sources=["test"],
        bands=[
            Band(
                name="R",
                common_name="red",
                center_wavelength_nm=665,
                fwhm_nm=30,
                gsd_m=10,
                scale=0.5,
                offset=1.0,
                nodata=0,
            ),
            Band(name="N", center_wavelength_nm=842, fwhm_nm=115, gsd_m=10),
        ],
    )


@pytest.fixture
def atoms(spec) -> AtomSet:
    cube = np.arange(1, 2 * 3 * 4 + 1, dtype=np.float32).reshape(2, 3, 4)
    scene = SceneMeta(
        sensor_id="pair",
        datetime=dt.datetime(2020, 5, 1, 12, tzinfo=dt.timezone.utc),
        lon=3.0,
        lat=45.0,
        crs="EPSG:32631",
        source_id="toy",
        extra={"k": [1, 2]},
    )
    return AtomSet.from_array(cube, spec, scene=scene)


def test_from_array_positions_and_values(atoms):
    assert len(atoms) == 24 and atoms.band_names == ["R", "N"]
    np.testing.assert_array_equal(atoms.x[:4], [-15, -5, 5, 15])
    np.testing.assert_array_equal(atoms.y[::4][:3], [10, 0, -10])  # row 0 is north
    assert atoms.value.dtype == np.float32 and atoms.band.dtype == np.int16
    assert atoms.nbytes == 24 * (4 + 2 + 4 + 4)
    np.testing.assert_array_equal(atoms.atom_gsd_m(), np.full(24, 10, np.float32))


def test_from_array_scale_nodata_and_nonfinite(spec):
    plane = np.array([[0, 2], [np.nan, 6]], dtype=np.float32)
    a = AtomSet.from_array(plane, spec, bands=["R"], apply_scale=True)
    np.testing.assert_array_equal(a.value, [2.0, 4.0])  # 0 is no-data, NaN is dropped
    np.testing.assert_array_equal(a.x, [5, 5])
    with pytest.raises(AtomizerError, match="different native GSDs"):
        AtomSet.from_array(
            np.zeros((2, 2, 2)),
            spec.model_copy(
                update={"bands": [spec.bands[0], spec.bands[1].model_copy(update={"gsd_m": 20})]}
            ),
        )
    with pytest.raises(AtomizerError, match="2 band names"):
        AtomSet.from_array(np.zeros((3, 2, 2)), spec)


def test_arrays_must_agree():
    with pytest.raises(AtomizerError, match="equal length"):
        AtomSet(
            value=np.zeros(3),
            band=np.zeros(2),
            x=np.zeros(3),
            y=np.zeros(3),
            bands=(),
            scene=SceneMeta("s"),
        )


def test_select_window_take_recentre(atoms):
    n = atoms.select_bands(["N"])
    assert n.band_names == ["N"] and len(n) == 12 and set(n.band.tolist()) == {0}
    swapped = atoms.select_bands(["N", "R"])
    assert swapped.band_names == ["N", "R"] and swapped.same_atoms(atoms)
    with pytest.raises(AtomizerError, match="not in this AtomSet"):
        atoms.select_bands(["Q"])
    w = atoms.window(-10, -5, 10, 15)
    assert len(w) == 2 * 2 * 2 and np.all((w.x >= -10) & (w.x < 10))
    with pytest.raises(WindowError):
        atoms.window(1, 1, 0, 2)
    moved = atoms.recentered(5, -5)
    np.testing.assert_array_equal(moved.x, atoms.x - 5)
    np.testing.assert_array_equal(moved.y, atoms.y + 5)
    assert len(atoms.take(np.array([0, 5]))) == 2


def test_select_bands_rejects_duplicates(atoms):
    with pytest.raises(AtomizerError):
        atoms.select_bands(["R", "R"])


def test_concat_merges_identical_bands(atoms, spec):
    both = AtomSet.concat(
        [atoms.select_bands(["R"]), atoms.select_bands(["N"]), atoms.select_bands(["R"])]
    )
    assert both.band_names == ["R", "N"] and len(both) == 36
    other = spec.bands[0].model_copy(update={"center_wavelength_nm": 660.0})
    clash = AtomSet(value=[1.0], band=[0], x=[0.0], y=[0.0], bands=(other,), scene=SceneMeta("x"))
    with pytest.raises(AtomizerError, match="both named 'R'"):
        AtomSet.concat([atoms, clash])
    with pytest.raises(AtomizerError):
        AtomSet.concat([])


def test_same_atoms_ignores_order_but_not_content(atoms):
    rng = np.random.default_rng(0)
    shuffled = atoms.take(rng.permutation(len(atoms)))
    assert shuffled.same_atoms(atoms) and atoms.same_atoms(shuffled)
    changed = atoms.take(np.arange(len(atoms)))
    changed.value = changed.value.copy()
    changed.value[3] += 1e-3
    assert not changed.same_atoms(atoms)
    assert changed.same_atoms(atoms, atol=1e-2)
    coarser = atoms.take(np.arange(len(atoms)))
    coarser.bands = (atoms.bands[0].model_copy(update={"gsd_m": 20.0}), atoms.bands[1])
    assert not coarser.same_atoms(atoms)
    assert not atoms.take(np.arange(23)).same_atoms(atoms)


def test_summary(atoms):
    s = atoms.summary()
    assert s["sensor"] == "pair" and s["n_atoms"] == 24 and s["n_bands"] == 2
    r = s["bands"][0]
    assert (r["name"], r["n_atoms"], r["min"], r["max"], r["mean"]) == ("R", 12, 1.0, 12.0, 6.5)
    assert r["center_wavelength_nm"] == 665 and r["fwhm_nm"] == 30 and r["gsd_m"] == 10
    empty = atoms.take(np.zeros(len(atoms), bool)).summary()
    assert empty["bands"][0]["min"] is None and empty["n_atoms"] == 0


def test_save_load_round_trip(tmp_path, atoms):
    tokens = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    path = save_atoms(atoms, tmp_path / "a.atoms", extra={"tokens": tokens})
    back = load_atoms(path)
    for name in ("value", "band", "x", "y"):
        assert np.array_equal(getattr(back, name), getattr(atoms, name))
        assert getattr(back, name).dtype == getattr(atoms, name).dtype
    assert back.bands == atoms.bands and back.scene == atoms.scene
    handle = open_atoms(path)
    assert handle.n_atoms == 24 and sorted(handle.keys()) == ["band", "tokens", "value", "x", "y"]
    np.testing.assert_array_equal(handle.array("tokens"), tokens)
    assert not list(tmp_path.glob(".a.atoms*"))  # the temporary was renamed away


def test_empty_atomset_round_trips(tmp_path, atoms):
    empty = atoms.take(np.zeros(len(atoms), bool))
    assert len(load_atoms(save_atoms(empty, tmp_path / "e.atoms"))) == 0


def test_save_refuses_clashing_extra_and_bad_folders(tmp_path, atoms):
    with pytest.raises(AtomsFormatError, match="clashes"):
        save_atoms(atoms, tmp_path / "x.atoms", extra={"value": np.zeros(24)})
    assert not (tmp_path / "x.atoms").exists()
    with pytest.raises(OutputError, match="does not exist"):
        save_atoms(atoms, tmp_path / "missing" / "x.atoms")


def test_a_failed_save_leaves_the_old_file(tmp_path, atoms):
    path = save_atoms(atoms, tmp_path / "a.atoms")
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the writer
        save_atoms(atoms, path, extra={"bad": object()})  # type: ignore[dict-item]
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_corrupt_truncated_and_foreign_files(tmp_path, atoms):
    path = save_atoms(atoms, tmp_path / "a.atoms")
    data = path.read_bytes()
    (tmp_path / "t.atoms").write_bytes(data[: len(data) // 2])
    with pytest.raises(AtomsFormatError, match="truncated or corrupt"):
        load_atoms(tmp_path / "t.atoms")
    with pytest.raises(AtomsFormatError, match="no such file"):
        load_atoms(tmp_path / "none.atoms")
    from safetensors.numpy import save_file

    save_file({"value": np.zeros(2, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(AtomsFormatError, match="no atomizer header"):
        load_atoms(tmp_path / "plain.safetensors")


def test_future_format_versions_are_refused(tmp_path, atoms):
    from safetensors.numpy import save_file

    from atomizer.atoms.io import header_of

    header = header_of(atoms)
    header["version"] = FORMAT_VERSION + 1
    arrays = {n: np.ascontiguousarray(getattr(atoms, n)) for n in ("value", "band", "x", "y")}
    save_file(arrays, str(tmp_path / "v.atoms"), metadata={"atomizer": json.dumps(header)})
    with pytest.raises(AtomsFormatError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        load_atoms(tmp_path / "v.atoms")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: [h], "not a JSON object"),
        (lambda h: {k: v for k, v in h.items() if k != "scene"}, "corrupt .atoms header"),
        (lambda h: {**h, "bands": [{"name": "B1"}]}, "corrupt .atoms header"),
        (lambda h: {**h, "n_atoms": h["n_atoms"] + 1}, "announces"),
    ],
)
def test_corrupt_headers_are_format_errors(tmp_path, atoms, edit, message):
    from safetensors.numpy import save_file

    from atomizer.atoms.io import header_of

    header = edit(header_of(atoms))
    if isinstance(header, dict):
        header.setdefault("format", "atomizer.atoms")
    arrays = {n: np.ascontiguousarray(getattr(atoms, n)) for n in ("value", "band", "x", "y")}
    save_file(arrays, str(tmp_path / "c.atoms"), metadata={"atomizer": json.dumps(header)})
    with pytest.raises(AtomsFormatError, match=message):
        load_atoms(tmp_path / "c.atoms")


def test_band_indices_must_point_into_the_band_table(atoms):
    with pytest.raises(AtomizerError, match=r"band indices must lie in 0\.\.1 \(the band table has 2 rows\); got 3"):
        AtomSet(value=[1.0], band=[3], x=[0.0], y=[0.0], bands=atoms.bands, scene=atoms.scene)
    with pytest.raises(AtomizerError, match="band indices"):
        AtomSet(value=[1.0], band=[0], x=[0.0], y=[0.0], bands=(), scene=atoms.scene)


def test_atoms_files_close_their_memory_map(tmp_path, atoms):
    path = save_atoms(atoms, tmp_path / "a.atoms")
    with open_atoms(path) as f:
        assert f.shape("value") == (len(atoms),)
        loaded = f.load()
    assert f._handle is None
    assert loaded.same_atoms(atoms)


def test_concat_never_merges_bands_that_differ_only_in_response(atoms):
    from atomizer.sensors.spec import SpectralResponse

    b0 = atoms.bands[0]
    with_response = b0.model_copy(update={"response": SpectralResponse(
        wavelength_nm=[b0.lower_nm, b0.center_wavelength_nm, b0.upper_nm], value=[0.2, 1.0, 0.2])})
    other = AtomSet(value=[1.0], band=[0], x=[0.0], y=[0.0], bands=(with_response,), scene=atoms.scene)
    with pytest.raises(AtomizerError, match=f"two different bands are both named {b0.name!r}"):
        AtomSet.concat([atoms, other])
