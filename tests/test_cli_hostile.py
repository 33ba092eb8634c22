"""Tables, plots, .atoms files, simulate, spectral libraries and plugin readers on hostile input:
one line each, names printed as written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from test_train_cli import errors, invoke, make_host

from atomizer.data.envi import read_envi_library
from atomizer.errors import DatasetError
from atomizer.readers.base import reader_for

SPEC = {
    "id": "odd-names",
    "name": "Odd names",
    "sources": ["made up for this test"],
    "bands": [
        {"name": "[bold red]SECRET[/] B04", "center_wavelength_nm": 664.6, "fwhm_nm": 30.0,
         "gsd_m": 10.0},
        {"name": "$\\foo{$ B08", "center_wavelength_nm": 833.0, "fwhm_nm": 100.0, "gsd_m": 10.0},
    ],
}


def _spec(tmp: Path, spec: dict, name: str = "s.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _tif(path: Path, bands: int = 2) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=bands, dtype="float32",
                       crs="EPSG:32629", transform=Affine(10, 0, 500_000, 0, -10, 5_800_000)) as ds:
        ds.write(np.full((bands, 8, 8), 0.2, dtype="float32"))
    return path


def test_names_that_look_like_markup_or_tex_are_printed_and_drawn_as_written(tmp_path):
    spec = _spec(tmp_path, SPEC)
    host = make_host(tmp_path)
    result = invoke(host, ["sensors", "show", spec])
    assert result.exit_code == 0, result.output
    assert "[bold red]SECRET[/] B04" in result.output
    atoms = tmp_path / "a.atoms"
    result = invoke(host, ["tokenize", _tif(tmp_path / "x.tif"), "--sensor", spec, "-o", atoms])
    assert result.exit_code == 0, result.output
    result = invoke(host, ["atoms", "show", atoms])
    assert result.exit_code == 0 and "[bold red]SECRET[/] B04" in result.output, result.output
    for args in (["atoms", "plot", atoms, "-o", tmp_path / "a.png"],
                 ["sensors", "plot", spec, "-o", tmp_path / "s.png"]):
        result = invoke(host, args)
        assert result.exit_code == 0, result.output
        assert Path(args[-1]).stat().st_size > 0


@pytest.mark.parametrize(("array", "dtype", "stored"), [
    ("value", np.float64, "F64"), ("band", np.int32, "I32"), ("band", np.float32, "F32"),
])
def test_atoms_arrays_of_another_dtype_are_corrupt(tmp_path, array, dtype, stored):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    spec = _spec(tmp_path, {**SPEC, "bands": [{**SPEC["bands"][0], "name": "B04"},
                                              {**SPEC["bands"][1], "name": "B08"}]})
    host = make_host(tmp_path)
    atoms = tmp_path / "a.atoms"
    assert invoke(host, ["tokenize", _tif(tmp_path / "x.tif"), "--sensor", spec, "-o",
                         atoms]).exit_code == 0
    with safe_open(str(atoms), "np") as fh:
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    arrays[array] = arrays[array].astype(dtype)
    save_file(arrays, str(atoms), metadata=meta)
    result = invoke(host, ["atoms", "show", atoms])
    assert result.exit_code == 1 and f"stored as {stored}" in errors(result)[0], result.output


def test_spectral_response_far_outside_optics_is_refused(tmp_path):
    band = {**SPEC["bands"][0], "name": "X1",
            "response": {"wavelength_nm": [-1e308, 560, 1e308], "value": [0, 1, 0]}}
    spec = _spec(tmp_path, {**SPEC, "bands": [band]})
    result = invoke(make_host(tmp_path), ["sensors", "validate", spec])
    assert result.exit_code == 1 and "outside 150-30000 nm" in result.output, result.output


def test_an_extends_chain_too_deep_is_one_skipped_spec(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    for i in range(100):  # file names put the deepest spec first: it is resolved first
        parent = "sentinel2a" if i == 0 else f"chain-{i - 1}"
        (folder / f"c{99 - i:03d}.yaml").write_text(yaml.safe_dump({"id": f"chain-{i}",
                                                                   "extends": parent}))
    host = make_host(tmp_path, sensor_path=folder)
    with pytest.warns(UserWarning, match="more than 32 specs deep"):
        result = invoke(host, ["sensors", "list", "--json"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    ids = {s["id"] for s in json.loads(result.stdout)}
    assert "chain-0" in ids and "chain-99" not in ids  # the deep end skipped, the rest kept


def test_simulate_refuses_a_gsd_atomizer_cannot_read(tmp_path):
    cube = np.full((4, 4, 2), 0.3, dtype="float32")  # rows, columns, channels
    np.save(tmp_path / "cube.npy", cube)
    src = _spec(tmp_path, {**SPEC, "id": "src", "bands": [
        {"name": "a", "center_wavelength_nm": 660.0, "fwhm_nm": 60.0, "gsd_m": 10.0},
        {"name": "b", "center_wavelength_nm": 840.0, "fwhm_nm": 120.0, "gsd_m": 10.0}]}, "src.yaml")
    out = tmp_path / "o.atoms"
    result = invoke(make_host(tmp_path), ["simulate", tmp_path / "cube.npy", "--source-sensor", src,
                                          "-s", "sentinel2a", "--bands", "B04", "--gsd", "1e9",
                                          "-o", out])
    assert result.exit_code == 1 and "outside the physical range" in errors(result)[0], result.output
    assert not out.exists()


def _envi(tmp: Path, header: str) -> Path:
    (tmp / "lib.sli").write_bytes(np.zeros(12, dtype="<f4").tobytes())
    (tmp / "lib.hdr").write_text(header)
    return tmp / "lib.sli"


@pytest.mark.parametrize(("header", "message"), [
    ("ENVI\nsamples = 0\nlines = 1\ndata type = 4\nwavelength = {}\n", "'samples' is 0"),
    ("ENVI\nsamples = 99999999999999999999\nlines = 1\ndata type = 4\n", "'samples' is"),
    ("ENVI\nsamples = 3\nlines = 4\nheader offset = -8\ndata type = 4\n", "'header offset' is -8"),
    ("ENVI\nsamples = 3\nlines = 4\ndata type = 4\nwavelength = {1e308, -1e308, 500}\n",
     "wavelengths must be finite"),
    ("ENVI\nsamples = 3\nlines = 4\ndata type = 4\nwavelength = {500,\n600,\n", "never closes"),
])
def test_bad_envi_headers_are_one_error(tmp_path, header, message):
    with pytest.raises(DatasetError, match=message):
        read_envi_library(_envi(tmp_path, header))


def test_an_envi_header_of_blank_lines_parses_in_linear_time(tmp_path):
    header = "ENVI\n" + "\n" * 200_000 + "samples = 3\nlines = 4\ndata type = 4\n" \
        "wavelength = {\n500,\n600,\n700}\n"
    lib = read_envi_library(_envi(tmp_path, header))  # the old regex took minutes here
    assert lib.spectra.shape == (4, 3) and lib.wavelength_nm.tolist() == [500.0, 600.0, 700.0]


class _Registry:
    def __init__(self, items: dict) -> None:
        self.items = items

    def names(self) -> list[str]:
        return list(self.items)

    def get(self, name: str):
        return self.items[name]


class _BuggyReader:
    suffixes = (".xyz",)

    def can_read(self, source) -> bool:
        return str(source).endswith(".xyz")

    def read(self, source, **kwargs):
        raise RuntimeError("reader bug")


def test_plugin_readers_that_are_no_readers_or_fail_are_one_error():
    from atomizer.errors import ReaderError

    with pytest.raises(ReaderError, match="not a reader"):
        reader_for("a.tif", _Registry({"junk": 42}), name="junk")
    reader = reader_for("a.xyz", _Registry({"xyz": _BuggyReader()}))
    assert reader.suffixes == (".xyz",)
    with pytest.raises(ReaderError, match="reader 'xyz' \\(a plugin\\) failed on a.xyz: RuntimeError"):
        reader.read("a.xyz")


def test_an_object_whose_repr_fails_is_reported_not_raised():
    from atomizer.limits import safe_repr

    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError("repr boom")

    assert safe_repr(Evil()) == "<Evil whose repr failed>"
    assert json.loads(json.dumps(safe_repr(Evil())))


def test_simulate_with_nothing_valid_left_fails_and_writes_nothing(tmp_path):
    np.save(tmp_path / "cube.npy", np.full((4, 4, 2), np.nan, dtype="float32"))
    src = _spec(tmp_path, {**SPEC, "id": "src", "bands": [
        {"name": "a", "center_wavelength_nm": 660.0, "fwhm_nm": 60.0, "gsd_m": 10.0},
        {"name": "b", "center_wavelength_nm": 840.0, "fwhm_nm": 120.0, "gsd_m": 10.0}]}, "src.yaml")
    out = tmp_path / "o.atoms"
    result = invoke(make_host(tmp_path), ["simulate", tmp_path / "cube.npy", "--source-sensor", src,
                                          "-s", "sentinel2a", "--bands", "B04", "-o", out])
    assert result.exit_code == 1 and "no valid value is left" in errors(result)[0], result.output
    assert not out.exists()
