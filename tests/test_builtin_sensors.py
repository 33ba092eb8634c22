"""The built-in sensor specs in sensors/*.yaml: each validates, round-trips, and agrees with the data.

Every YAML file in the project's ``sensors/`` folder is discovered at run time and checked on its own
(loads, has sources, unique bands and asset keys, YAML -> SensorSpec -> YAML -> SensorSpec round
trip). Then facts about specific sensors, and cross-checks against the tables in ``../shared/data``
(skipped when that folder is absent):

* Sentinel-2 centres within 1 nm of ESA's ``band_table.csv`` and exactly the MTD ``CENTRAL`` values;
  the tabulated responses equal ESA's 1-nm table.
* spyndex ``bands.json``: a band's centre must lie inside the other source's band, i.e.
  ``|centre - spyndex centre| <= max(fwhm, spyndex bandwidth) / 2`` (spyndex mostly quotes rounded
  nominal ranges, e.g. Landsat 7 SWIR2 2220 nm vs the measured 2204.5 nm), its width within a factor
  of two, and for Sentinel-2, whose numbers both come from ESA, within :data:`S2_SPYNDEX_TOL_NM`.
* ACOLITE relative spectral responses (read here as a reference, never copied into the project):
  the middle of the half-maximum interval within :data:`RSR_TOL_NM` (5 % of the width for broad
  bands) of the spec centre, for the
  specs whose numbers are meant to be half-maximum values (MODIS is not: it uses NASA's nominal
  ranges, and its spec notes record the differences).
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import shared_data_path

from atomizer.sensors import SensorSpec, resolve_sensor, spec_to_yaml
from atomizer.sensors.loader import read_raw_spec, validate_raw
from atomizer.sensors.registry import SensorRegistry
from atomizer.sensors.spec import COMMON_NAME_RANGES_NM

ROOT = Path(__file__).resolve().parents[1]
SENSOR_DIR = ROOT / "sensors"
SPEC_FILES = sorted(SENSOR_DIR.glob("*.yaml"))

#: Sentinel-2 centres: ours (ESA product metadata) against spyndex (ESA SRF document).
S2_SPYNDEX_TOL_NM = 1.0
#: Spec centre against the middle of the half-maximum interval of the ACOLITE response: within
#: RSR_TOL_NM, or RSR_REL_TOL of the band's width for broad bands (the Maxar panchromatic bands:
#: data sheet 450-800 nm, half maximum at 464-801 nm).
RSR_TOL_NM = 3.5
RSR_REL_TOL = 0.05

REQUIRED_IDS = {
    "sentinel2a", "sentinel2b", "sentinel2a-l2a", "sentinel2b-l2a",
    "landsat8", "landsat9", "landsat8-c2l2", "landsat9-c2l2",
    "modis-terra", "modis-aqua",
    "worldview2", "worldview3", "quickbird2", "geoeye1", "planetscope-superdove",
    "aviris-indian-pines-1992", "aviris-indian-pines-1992-corrected",
}
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


@lru_cache(maxsize=1)
def _registry() -> SensorRegistry:
    return SensorRegistry.from_raw([(read_raw_spec(p), "atomizer") for p in SPEC_FILES], strict=True)


@pytest.fixture(scope="module")
def registry() -> SensorRegistry:
    return _registry()


def spec_of(path: Path) -> SensorSpec:
    return _registry().get(path.stem)


# --- every file -------------------------------------------------------------------------------------
def test_all_required_specs_present():
    ids = {p.stem for p in SPEC_FILES}
    assert REQUIRED_IDS <= ids, f"missing built-in specs: {sorted(REQUIRED_IDS - ids)}"


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_file_loads(path: Path, registry: SensorRegistry):
    raw = read_raw_spec(path)
    assert raw.id == path.stem, "file name must be <id>.yaml"
    assert raw.id == raw.id.lower()
    spec = registry.get(raw.id)
    assert spec.modality == "optical"
    # the one resolver reads the file, resolves ``extends:`` against the registry and agrees with it
    assert resolve_sensor(path, registry) == spec
    # the file starts with a comment that cites where the numbers come from
    assert path.read_text(encoding="utf-8").startswith("#")


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_provenance_and_stac_hints(path: Path):
    spec = spec_of(path)
    assert spec.sources, "at least one source document"
    assert all(s.startswith(("https://", "http://")) for s in spec.sources), spec.sources
    assert spec.stac.platform or spec.stac.constellation or spec.stac.instruments
    assert spec.notes, "record disagreements between sources (or say there were none to check)"


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_bands_are_unique_and_matchable(path: Path):
    spec = spec_of(path)
    names = [b.name for b in spec.bands]
    assert len(names) == len(set(names))
    keys = [k.lower() for b in spec.bands for k in b.asset_keys]
    assert len(keys) == len(set(keys)), f"an asset key names two bands: {Counter(keys).most_common(3)}"
    common = [b.common_name for b in spec.bands if b.common_name]
    assert len(common) == len(set(common)), f"a common name names two bands: {Counter(common).most_common(2)}"
    for b in spec.bands:
        if b.common_name:
            lo, hi = COMMON_NAME_RANGES_NM[b.common_name]
            assert lo <= b.center_wavelength_nm <= hi, (b.name, b.common_name)
        if b.response is not None:  # trimmed to where it is non-zero
            assert b.response.value[0] > 0 and b.response.value[-1] > 0, b.name
            assert max(b.response.value) == pytest.approx(1.0)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_yaml_round_trip(path: Path, tmp_path: Path):
    spec = spec_of(path)
    out = tmp_path / f"{spec.id}.yaml"
    out.write_text(spec_to_yaml(spec), encoding="utf-8")
    again = validate_raw(read_raw_spec(out))
    assert again == spec


def test_lookup_by_alias_is_case_insensitive(registry: SensorRegistry):
    expected = {
        "LC08": "landsat8", "Landsat-8": "landsat8", "l9": "landsat9", "LC09": "landsat9",
        "Sentinel-2": "sentinel2a", "S2A": "sentinel2a", "sentinel-2b": "sentinel2b",
        "S2-L2A": "sentinel2a-l2a", "Sentinel2-L2A": "sentinel2a-l2a", "s2b-l2a": "sentinel2b-l2a",
        "MODIS": "modis-terra", "MOD": "modis-terra", "Aqua-MODIS": "modis-aqua", "myd": "modis-aqua",
        "WV2": "worldview2", "WorldView-3": "worldview3", "QuickBird": "quickbird2", "QB2": "quickbird2",
        "GeoEye-1": "geoeye1", "GE1": "geoeye1", "SuperDove": "planetscope-superdove",
        "PSB.SD": "planetscope-superdove", "PlanetScope": "planetscope-superdove",
        "Indian-Pines": "aviris-indian-pines-1992-corrected", "AVIRIS-1992": "aviris-indian-pines-1992",
        "indian-pines-220": "aviris-indian-pines-1992", "landsat8-oli": "landsat8",
    }
    for alias, sid in expected.items():
        assert registry.get(alias).id == sid, alias


def test_installed_package_data_sees_the_same_specs(host):
    """Through the plugin host (package data ``atomizer.builtin_sensors``), when installed."""
    import importlib.util

    if importlib.util.find_spec("atomizer.builtin_sensors") is None:
        pytest.skip("atomizer is not installed (pip install -e .): no atomizer.builtin_sensors")
    builtin = {s.id for s in host.sensors if host.sensors.provider(s.id) == "atomizer"}
    assert builtin == {p.stem for p in SPEC_FILES}


# --- specific sensors ---------------------------------------------------------------------------------
def gsd_counts(spec: SensorSpec) -> dict[float, int]:
    return dict(Counter(b.gsd_m for b in spec.bands))


@pytest.mark.parametrize("sid", ["sentinel2a", "sentinel2b", "sentinel2c"])
def test_sentinel2_l1c(registry, sid):
    spec = registry.get(sid)
    assert spec.band_names == S2_BANDS
    assert gsd_counts(spec) == {10: 4, 20: 6, 60: 3}
    assert {b.name for b in spec.bands if b.gsd_m == 10} == {"B02", "B03", "B04", "B08"}
    assert {b.name for b in spec.bands if b.gsd_m == 60} == {"B01", "B09", "B10"}
    earth_search = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
                    "nir08", "nir09", "cirrus", "swir16", "swir22"]
    for band, key in zip(spec.bands, earth_search):
        assert band.asset_keys == [key, band.name]  # Earth Search key, then PC/ESA key
    assert spec.band("rededge2").name == "B06" and spec.band("b8a").name == "B8A"
    assert spec.stac.platform == [f"sentinel-2{sid[-1]}"] and spec.stac.constellation == ["sentinel-2"]
    assert all(b.scale is None and b.offset is None for b in spec.bands)


@pytest.mark.parametrize("sid", ["sentinel2a-l2a", "sentinel2b-l2a", "sentinel2c-l2a"])
def test_sentinel2_l2a(registry, sid):
    spec = registry.get(sid)
    parent = registry.get(spec.extends)
    assert spec.extends == sid.removesuffix("-l2a")
    assert spec.n_bands == 12 and "B10" not in spec.band_names
    assert spec.band_names == [n for n in S2_BANDS if n != "B10"]
    for band in spec.bands:
        assert (band.scale, band.offset, band.nodata) == (0.0001, -0.1, 0)
        assert band.center_wavelength_nm == parent.band(band.name).center_wavelength_nm
        assert band.response == parent.band(band.name).response
    # "a few lines": the L2A file only derives
    assert len((SENSOR_DIR / f"{sid}.yaml").read_text().splitlines()) < 40


def test_landsat(registry):
    for sid in ("landsat8", "landsat9"):
        spec = registry.get(sid)
        assert spec.band_names == [f"B{i}" for i in range(1, 12)]
        assert gsd_counts(spec) == {30: 8, 15: 1, 100: 2}
        assert spec.band("pan").name == "B8" and spec.band("lwir11").name == "B10"
    l7 = registry.get("landsat7")
    assert l7.n_bands == 8 and gsd_counts(l7) == {30: 6, 60: 1, 15: 1}
    assert l7.band("B6_VCID_2").name == "B6"


@pytest.mark.parametrize("sid,sr,st", [
    ("landsat8-c2l2", ["B1", "B2", "B3", "B4", "B5", "B6", "B7"], "B10"),
    ("landsat9-c2l2", ["B1", "B2", "B3", "B4", "B5", "B6", "B7"], "B10"),
    ("landsat7-c2l2", ["B1", "B2", "B3", "B4", "B5", "B7"], "B6"),
])
def test_landsat_c2l2(registry, sid, sr, st):
    spec = registry.get(sid)
    assert sorted(spec.band_names) == sorted([*sr, st])
    for name in sr:
        b = spec.band(name)
        assert (b.scale, b.offset, b.nodata) == (0.0000275, -0.2, 0)
        assert f"SR_{name}" in b.asset_keys and spec.band(f"sr_{name}") is b
    t = spec.band(st)
    assert (t.scale, t.offset, t.nodata) == (0.00341802, 149.0, 0)
    assert t.asset_keys[1] == f"ST_{st}"
    assert spec.band("red").asset_keys[0] == "red" and spec.band("swir22").asset_keys[0] == "swir22"


@pytest.mark.parametrize("sid", ["modis-terra", "modis-aqua"])
def test_modis(registry, sid):
    spec = registry.get(sid)
    assert spec.band_names == [f"B{i:02d}" for i in range(1, 37)]
    assert gsd_counts(spec) == {250: 2, 500: 5, 1000: 29}
    assert all(300 <= b.center_wavelength_nm <= 15000 for b in spec.bands)
    assert spec.band("B20").center_wavelength_nm == 3750 and spec.band("B36").center_wavelength_nm == 14235
    assert spec.band("red").name == "B01" and spec.band("sur_refl_b07").name == "B07"


def test_worldview_quickbird_geoeye_planet(registry):
    wv3 = registry.get("worldview3")
    assert gsd_counts(wv3) == {0.31: 1, 1.24: 8, 3.7: 8}
    assert wv3.bands[0].common_name == "pan"
    assert all(b.center_wavelength_nm > 1000 for b in wv3.bands if b.gsd_m == 3.7)
    assert all(b.center_wavelength_nm < 1000 for b in wv3.bands if b.gsd_m == 1.24)
    wv2 = registry.get("worldview2")
    assert gsd_counts(wv2) == {0.46: 1, 1.84: 8}
    assert [b.name for b in wv2.bands] == [b.name for b in wv3.bands[:9]]
    assert gsd_counts(registry.get("quickbird2")) == {0.61: 1, 2.44: 4}
    assert gsd_counts(registry.get("geoeye1")) == {0.41: 1, 1.65: 4}
    ps = registry.get("planetscope-superdove")
    assert ps.band_names == ["coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir"]
    assert gsd_counts(ps) == {3.0: 8}


def test_aviris_indian_pines(registry):
    full = registry.get("aviris-indian-pines-1992")
    corrected = registry.get("aviris-indian-pines-1992-corrected")
    assert full.n_bands == 220 and corrected.n_bands == 200
    assert gsd_counts(full) == {20: 220}
    index = {b.name: int(b.description.split()[-1]) for b in full.bands}  # "IP band N"
    assert sorted(index.values()) == list(range(1, 221))
    removed = {index[n] for n in set(full.band_names) - set(corrected.band_names)}
    assert removed == {*range(104, 109), *range(150, 164), 220}
    assert corrected.band_names == [n for n in full.band_names if index[n] not in removed]
    centres = [b.center_wavelength_nm for b in full.bands]
    assert 395 < centres[0] < 405 and 2490 < centres[-1] < 2510
    # the spectrometers overlap: centres step back exactly at the three joins (cube order is kept)
    steps_back = [full.bands[i + 1].name for i in range(219) if centres[i + 1] < centres[i]]
    assert steps_back == ["ch034", "ch098", "ch162"]


# --- cross-checks against ../shared/data -------------------------------------------------------------
@pytest.mark.data
@pytest.mark.parametrize("sat", ["S2A", "S2B"])
def test_sentinel2_against_esa_tables(registry, sat):
    folder = shared_data_path("spectral", "s2_srf_from_mtd")
    spec = registry.get(f"sentinel2{sat[-1].lower()}")
    table = [r for r in csv.DictReader(open(folder / "band_table.csv")) if r["sat"] == sat]
    assert len(table) == 13
    for row in table:
        band = spec.band(row["band"] if row["band"] == "B8A" else f"B{int(row['band'][1:]):02d}")
        assert abs(band.center_wavelength_nm - float(row["central_nm"])) <= 1.0, band.name
        assert abs(band.fwhm_nm - float(row["fwhm_nm_est"])) <= 1.0, band.name
        assert band.gsd_m == float(row["gsd_m"])
    with open(folder / f"{sat}_MSI_SRF_1nm.csv") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], rows[1:]
    for j, col in enumerate(header[1:], 1):
        band = spec.band(col if col == "B8A" else f"B{int(col[1:]):02d}")
        pairs = [(float(r[0]), float(r[j])) for r in data]
        nz = [i for i, (_, v) in enumerate(pairs) if v > 0]
        trimmed = pairs[nz[0]: nz[-1] + 1]
        assert band.response.wavelength_nm == [w for w, _ in trimmed]
        assert band.response.value == [v for _, v in trimmed]


@pytest.mark.data
def test_sentinel2a_against_product_metadata(registry):
    mtd = ET.parse(shared_data_path("s2_l2a_T29UNU_20221005_60m", "MTD_MSIL2A.xml")).getroot()
    spec = registry.get("sentinel2a")
    infos = mtd.findall(".//Spectral_Information")
    assert len(infos) == 13
    for info in infos:
        physical = info.get("physicalBand")
        band = spec.band(physical if physical == "B8A" else f"B{int(physical[1:]):02d}")
        assert band.center_wavelength_nm == float(info.find("Wavelength/CENTRAL").text)
        assert band.gsd_m == float(info.find("RESOLUTION").text)
    quant = float(mtd.find(".//BOA_QUANTIFICATION_VALUE").text)
    offsets = {float(e.text) for e in mtd.findall(".//BOA_ADD_OFFSET")}
    assert len(offsets) == 1
    (offset,) = offsets
    for band in registry.get("sentinel2a-l2a").bands:
        assert band.scale == pytest.approx(1 / quant)
        assert band.offset == pytest.approx(offset / quant)


# spyndex platform -> (spec ids, spyndex band -> our band name)
def _s2_name(b: str) -> str:
    return b if b == "B8A" else f"B{int(b[1:]):02d}"


SPYNDEX = {
    "sentinel2a": (["sentinel2a"], _s2_name),
    "sentinel2b": (["sentinel2b"], _s2_name),
    "landsat7": (["landsat7"], str),
    "landsat8": (["landsat8"], str),
    "landsat9": (["landsat9"], str),
    "modis": (["modis-terra", "modis-aqua"], lambda b: f"B{int(b[1:]):02d}"),
    "planetscope": (["planetscope-superdove"],
                    lambda b: ["coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir"][int(b[1:]) - 1]),
    "wv2": (["worldview2"], lambda b: ["BAND_C", "BAND_B", "BAND_G", "BAND_Y", "BAND_R", "BAND_RE", "BAND_N", "BAND_N2"][int(b[1:]) - 1]),
    "wv3": (["worldview3"], lambda b: ["BAND_C", "BAND_B", "BAND_G", "BAND_Y", "BAND_R", "BAND_RE", "BAND_N", "BAND_N2"][int(b[1:]) - 1]),
}


@pytest.mark.data
@pytest.mark.parametrize("platform", sorted(SPYNDEX))
def test_against_spyndex(registry, platform):
    bands = json.loads(shared_data_path("spectral", "spyndex", "bands.json").read_text())
    entries = [b["platforms"][platform] for b in bands.values() if platform in b["platforms"]]
    assert entries
    sids, to_name = SPYNDEX[platform]
    for sid in sids:
        spec = registry.get(sid)
        for e in entries:
            ours = spec.band(to_name(e["band"]))
            dc = abs(ours.center_wavelength_nm - e["wavelength"])
            tol = S2_SPYNDEX_TOL_NM if sid.startswith("sentinel2") else max(ours.fwhm_nm, e["bandwidth"]) / 2
            assert dc <= tol, f"{sid} {ours.name}: {ours.center_wavelength_nm} vs spyndex {e['wavelength']}"
            assert 0.5 <= ours.fwhm_nm / e["bandwidth"] <= 2.0, f"{sid} {ours.name} width"


def _acolite_bands(name: str) -> list[tuple[float, float]]:
    """(lower, upper) half-maximum wavelengths, nm, of each band of an ACOLITE RSR file, in file order."""
    bands: list[list[tuple[float, float]]] = []
    for line in shared_data_path("spectral", "acolite_rsr", name).read_text(encoding="utf-8", errors="replace").splitlines():
        s = line.strip()
        if not s:
            continue
        if s[0] in ";#":
            if re.search(r"band\s+\w+", s, re.I):
                bands.append([])
            continue
        w, v = (float(x) for x in s.replace(",", " ").split()[:2])
        bands[-1].append((w * 1000 if w < 30 else w, v))
    out = []
    for pts in bands:
        peak = max(v for _, v in pts)
        above = [i for i, (_, v) in enumerate(pts) if v >= peak / 2]
        i0, i1 = above[0], above[-1]

        def cross(a: int, b: int) -> float:
            (wa, va), (wb, vb) = pts[a], pts[b]
            return wa + (peak / 2 - va) * (wb - wa) / (vb - va)

        out.append((cross(i0 - 1, i0), cross(i1 + 1, i1)))
    return out


ACOLITE = {  # file -> (spec id, our band names in the file's band order; None = no counterpart)
    "S2A_MSI.txt": ("sentinel2a", S2_BANDS),
    "S2B_MSI.txt": ("sentinel2b", S2_BANDS),
    "L8_OLI.txt": ("landsat8", [f"B{i}" for i in range(1, 10)]),
    "L9_OLI.txt": ("landsat9", [f"B{i}" for i in range(1, 10)]),
    "L7_ETM.txt": ("landsat7", ["B1", "B2", "B3", "B4", "B5", "B7", "B8"]),
    "WorldView2.txt": ("worldview2", ["BAND_C", "BAND_B", "BAND_G", "BAND_Y", "BAND_R", "BAND_RE", "BAND_N",
                                      "BAND_N2", "BAND_P"]),
    "WorldView3.txt": ("worldview3", ["BAND_C", "BAND_B", "BAND_G", "BAND_Y", "BAND_R", "BAND_RE", "BAND_N",
                                      "BAND_N2", *(f"BAND_S{i}" for i in range(1, 9)), "BAND_P"]),
    "PlanetScope_SD8.txt": ("planetscope-superdove", ["coastal_blue", "blue", "green_i", "green", "yellow",
                                                      "red", "rededge", "nir"]),
}


@pytest.mark.data
@pytest.mark.parametrize("fname", sorted(ACOLITE))
def test_against_acolite_responses(registry, fname):
    sid, names = ACOLITE[fname]
    spec = registry.get(sid)
    found = _acolite_bands(fname)
    assert len(found) == len(names), fname
    for name, (lo, hi) in zip(names, found):
        band = spec.band(name)
        mid = (lo + hi) / 2
        tol = max(RSR_TOL_NM, RSR_REL_TOL * (hi - lo))
        assert abs(band.center_wavelength_nm - mid) <= tol, f"{sid} {name}: {band.center_wavelength_nm} vs {mid:.1f}"
        assert abs(band.fwhm_nm - (hi - lo)) <= max(5.0, 0.1 * (hi - lo)), f"{sid} {name} width"


@pytest.mark.data
def test_aviris_against_calibration_file(registry):
    rows = list(csv.DictReader(open(shared_data_path("indian_pines", "aviris1992_220band_table.csv"))))
    spc = [line.split() for line in shared_data_path("indian_pines", "92AV3C.spc").read_text().splitlines()[2:] if line.strip()]
    full = registry.get("aviris-indian-pines-1992")
    corrected = registry.get("aviris-indian-pines-1992-corrected")
    assert len(rows) == len(spc) == 220
    for band, row, cal in zip(full.bands, rows, spc):
        assert band.name == f"ch{int(row['aviris_channel']):03d}" == f"ch{int(float(cal[4])):03d}"
        assert band.center_wavelength_nm == pytest.approx(float(cal[0]), abs=0.006)
        assert band.fwhm_nm == pytest.approx(float(cal[1]), abs=0.006)
    kept = [f"ch{int(r['aviris_channel']):03d}" for r in rows if r["kept_in_corrected_200"] == "1"]
    assert corrected.band_names == kept
