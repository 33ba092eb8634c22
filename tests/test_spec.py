"""SensorSpec / Band validation: unit slips, strictness, derived specs, YAML round trip."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from atomizer.errors import SpecError
from atomizer.sensors import Band, SensorSpec, spec_to_yaml
from atomizer.sensors.loader import RawSpec, read_raw_spec, validate_raw

BASE = {
    "id": "demo",
    "name": "Demo",
    "sources": ["https://example.org/demo.pdf"],
    "bands": [
        {"name": "B1", "common_name": "blue", "center_wavelength_nm": 490, "fwhm_nm": 60, "gsd_m": 10},
        {"name": "B2", "common_name": "red", "center_wavelength_nm": 665, "fwhm_nm": 30, "gsd_m": 20},
    ],
}


def _band(**kw):
    return {"name": "B", "center_wavelength_nm": 665.0, "fwhm_nm": 30.0, "gsd_m": 10.0} | kw


def test_valid_spec_is_frozen():
    spec = SensorSpec.model_validate(BASE)
    assert spec.n_bands == 2 and spec.gsds_m == [10.0, 20.0]
    with pytest.raises(ValidationError):
        spec.name = "other"


@pytest.mark.parametrize(
    ("band", "needle"),
    [
        (_band(center_wavelength_nm=0.665, fwhm_nm=0.03), "write 665 (nm)"),
        (_band(center_wavelength_nm=20000.0), "outside 300-15000 nm"),
        (_band(fwhm_nm=700.0), "fwhm_nm 700 is not below the centre 665"),
        (_band(common_name="blue"), "common name 'blue' covers 450-530 nm but the centre is 665"),
        (_band(common_name="bleu"), "unknown STAC common name 'bleu'"),
        (_band(gsd_m=0.0), "greater than 0"),
        (_band(gsd_m=-10.0), "greater than 0"),
    ],
)
def test_band_unit_slips_are_caught(band, needle):
    with pytest.raises(ValidationError) as info:
        Band.model_validate(band)
    assert needle in str(info.value)


def test_unknown_keys_are_rejected_with_a_suggestion(tmp_path):
    data = dict(BASE, bands=[_band(centre_nm=3)])
    raw = RawSpec(data=data, origin="demo.yaml")
    with pytest.raises(SpecError) as info:
        validate_raw(raw)
    assert "unknown key 'centre_nm'; did you mean 'center_wavelength_nm'?" in str(info.value)


def test_duplicate_band_names(tmp_path):
    data = dict(BASE, bands=[_band(name="B1"), _band(name="B1", center_wavelength_nm=560)])
    with pytest.raises(SpecError, match="duplicate band name 'B1'"):
        validate_raw(RawSpec(data=data, origin="x.yaml"))
    with pytest.raises(ValidationError, match="duplicate band name"):
        SensorSpec.model_validate(data)


def test_every_problem_has_file_line_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "id: bad\nname: Bad\nsources: [https://x.org]\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 0.49, fwhm_nm: 0.06, gsd_m: 10}\n"
        "  - {name: B2, center_wavelength_nm: 500, fwhm_nm: 600, gsd_m: 10}\n"
        "  - {name: B2, center_wavelength_nm: 560, fwhm_nm: 30, gsd_m: 10}\n"
        "colour: red\n"
    )
    with pytest.raises(SpecError) as info:
        validate_raw(read_raw_spec(path))
    problems = info.value.problems
    assert len(problems) == 4, problems
    expected = [
        (f"{path}:7:", "duplicate band name"),
        (f"{path}:5: bands[0](B1).center_wavelength_nm:", "write 490 (nm)"),
        (f"{path}:6: bands[1](B2):", "fwhm_nm 600"),
        (f"{path}:8: colour:", "unknown key 'colour'"),
    ]
    for prefix, needle in expected:
        assert any(p.startswith(prefix) and needle in p for p in problems), (prefix, problems)


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "syntax.yaml"
    bad.write_text("id: x\nbands: [\n")
    with pytest.raises(SpecError, match=r"syntax.yaml:\d+: invalid YAML"):
        read_raw_spec(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="the file is a list"):
        read_raw_spec(lst)
    with pytest.raises(SpecError, match="no such file"):
        read_raw_spec(tmp_path / "missing.yaml")


def test_yaml_round_trip(tmp_path):
    spec = SensorSpec.model_validate(
        BASE | {"aliases": ["DEMO-1"], "bands": [
            BASE["bands"][0] | {"scale": 1e-4, "offset": -0.1, "nodata": 0,
                                "response": {"wavelength_nm": [460, 490, 520], "value": [0.1, 1, 0.2]},
                                "stats": {"mean": 0.1, "std": 0.05}, "asset_keys": ["blue"]},
            BASE["bands"][1],
        ]}
    )
    path = tmp_path / "demo.yaml"
    path.write_text(spec_to_yaml(spec))
    again = validate_raw(read_raw_spec(path))
    assert again == spec


def test_select_and_band_lookup():
    spec = SensorSpec.model_validate(BASE)
    assert spec.band("red").name == "B2"  # common name
    assert spec.band("b1").name == "B1"  # case-insensitive
    sub = spec.select(["B2"], new_id="demo-red")
    assert sub.band_names == ["B2"] and sub.extends == "demo" and sub.id == "demo-red"


def test_asset_keys_must_be_unique_and_common_names_unambiguous():
    dup_keys = dict(BASE, bands=[_band(name="B1", asset_keys=["x"]), _band(name="B2", asset_keys=["X"])])
    with pytest.raises(ValidationError, match="asset key 'X' is claimed by bands 'B1' and 'B2'"):
        SensorSpec.model_validate(dup_keys)
    two_nir = SensorSpec.model_validate(dict(BASE, bands=[
        _band(name="N1", common_name="nir", center_wavelength_nm=830, fwhm_nm=100),
        _band(name="N2", common_name="nir", center_wavelength_nm=950, fwhm_nm=100),
    ]))
    from atomizer.errors import BandMatchError

    with pytest.raises(BandMatchError, match="several 'nir' bands"):
        two_nir.band("nir")


@pytest.mark.parametrize("value", [True, "665"])
def test_numbers_are_not_coerced_from_bools_or_strings(value):
    with pytest.raises(ValidationError, match="must be a number"):
        Band.model_validate(_band(center_wavelength_nm=value))


def test_duplicate_yaml_keys_are_reported(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("id: a\nname: A\nid: b\nsources: [x]\nbands: []\n")
    with pytest.raises(SpecError, match=r"twice.yaml:3: id: the key appears twice"):
        read_raw_spec(path)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("gsd_m", float("inf"), "finite number"),
        ("gsd_m", 1e-300, "outside the physical range"),
        ("gsd_m", 1e9, "outside the physical range"),
        ("scale", float("nan"), "finite number"),
        ("scale", 1e39, "is outside"),
        ("scale", 0.0, "is outside"),
        ("offset", float("inf"), "finite number"),
        ("fwhm_nm", 1e-300, "greater than or equal"),
    ],
)
def test_absurd_or_non_finite_band_numbers_are_refused(field, value, needle):
    band = {"name": "B1", "center_wavelength_nm": 665.0, "fwhm_nm": 30.0, "gsd_m": 10.0}
    band[field] = value
    with pytest.raises(ValidationError) as info:
        Band.model_validate(band)
    assert needle in str(info.value)


def test_nan_in_a_response_or_statistics_is_refused_but_nan_nodata_is_a_marker():
    base = {"name": "B1", "center_wavelength_nm": 665.0, "fwhm_nm": 30.0, "gsd_m": 10.0}
    with pytest.raises(ValidationError, match="finite number"):
        Band.model_validate({**base, "response": {"wavelength_nm": [650, 665, 680],
                                                  "value": [0.1, float("nan"), 0.2]}})
    with pytest.raises(ValidationError, match="finite number"):
        Band.model_validate({**base, "stats": {"mean": float("nan"), "std": 1.0}})
    assert math.isnan(Band.model_validate({**base, "nodata": float("nan")}).nodata)
