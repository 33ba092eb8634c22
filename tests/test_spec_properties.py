"""Hypothesis properties of sensor-spec validation: bad specs fail clearly, good ones round-trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings

from atomizer.errors import SpecError
from atomizer.sensors import read_raw_spec, spec_to_yaml, validate_raw
from atomizer.sensors.loader import RawSpec
from atomizer.testing import strategies as ats

PROPERTY = settings(max_examples=50, deadline=None)

#: What the message must say for each single deliberate problem (see ats.malformed_spec_dicts).
EXPECTED_MESSAGE = {
    "band_missing_key": r"required key '\w+' is missing",
    "band_unknown_key": r"unknown key '\w+'",
    "micrometres": r"looks like micrometres",
    "fwhm_too_wide": r"bands\[\d+\]\(.*\): fwhm_nm .* is not below the centre",
    "fwhm_not_positive": r"fwhm_nm: .*greater than or equal to 0.01",
    "gsd_not_positive": r"gsd_m: .*greater than 0",
    "not_a_number": r"(center_wavelength_nm|fwhm_nm|gsd_m): .*(valid number|must be a number)",
    "non_finite": r"center_wavelength_nm: .*finite",
    "unknown_common_name": r"unknown STAC common name",
    "common_name_mismatch": r"common name '\w+' covers",
    "response_length": r"entries but value has",
    "response_order": r"strictly increasing",
    "response_off_centre": r"does not contain the centre",
    "stats_std": r"stats\.std: .*greater than 0",
    "out_of_range": r"centre wavelength .* is outside",
    "absurd_gsd": r"gsd_m: (GSD .* m is outside the physical range|.*finite number|.*greater than 0)",
    "bad_scale": r"scale: (scale .* is outside|.*finite number)",
    "response_non_finite": r"response\.value\[1\]: .*finite number",
    "stats_non_finite": r"stats\.mean: .*(finite number|less than or equal)",
    "missing_id": r"required key 'id' is missing",
    "missing_name": r"required key 'name' is missing",
    "missing_sources": r"required key 'sources' is missing",
    "missing_bands": r"required key 'bands' is missing",
    "unknown_key": r"unknown key '\w+'",
    "bad_id": r"\bid: ",
    "no_bands": r"bands: .*at least 1",
    "bands_not_list": r"bands: .*valid list",
    "band_not_mapping": r"bands\[\d+\]: .*(dictionary|Band)",
    "duplicate_band": r"duplicate band name",
    "no_sources": r"sources: .*at least 1",
    "bad_modality": r"modality: ",
    "derivation_without_extends": r"drop_bands: only allowed together with 'extends",
}


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    """One folder for the module's generated spec files (Hypothesis reuses it across examples)."""
    return tmp_path_factory.mktemp("specs")


def _write(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _assert_readable(exc: SpecError, origin: str) -> None:
    assert exc.problems, "a SpecError must list at least one problem"
    assert str(exc) == "\n".join(exc.problems)
    for line in exc.problems:
        assert line.strip() and "\n" not in line, f"not one line: {line!r}"
        assert line.startswith(origin), f"problem does not say where: {line!r}"
        assert "Traceback" not in line and "pydantic" not in line.lower()


def test_every_malformation_has_an_expected_message():
    labels = set(ats.malformed_spec_labels())
    assert labels == set(EXPECTED_MESSAGE), labels ^ set(EXPECTED_MESSAGE)


@pytest.mark.parametrize("label", sorted(EXPECTED_MESSAGE))
def test_each_problem_alone_gives_a_spec_error_naming_it(label):
    @settings(max_examples=5, deadline=None)
    @given(case=ats.malformed_spec_dicts(max_problems=1, kinds=[label]))
    def check(case):
        data, labels = case
        assert labels == [label]
        with pytest.raises(SpecError) as info:
            validate_raw(RawSpec(data=data, origin="<generated>"))
        _assert_readable(info.value, "<generated>")
        assert re.search(EXPECTED_MESSAGE[label], str(info.value)), (label, str(info.value))

    check()


@PROPERTY
@given(case=ats.malformed_spec_dicts(max_problems=3))
def test_malformed_spec_dicts_always_end_in_spec_error(case):
    data, _ = case
    with pytest.raises(SpecError) as info:
        validate_raw(RawSpec(data=data, origin="<generated>"))
    _assert_readable(info.value, "<generated>")


@PROPERTY
@given(text=ats.malformed_spec_yaml())
def test_malformed_yaml_files_end_in_spec_error_with_file_and_line(spec_dir, text):
    path = _write(spec_dir, text)
    with pytest.raises(SpecError) as info:
        validate_raw(read_raw_spec(path))
    _assert_readable(info.value, str(path))
    assert all(re.match(re.escape(str(path)) + r"(:\d+)?: ", line) for line in info.value.problems)


@PROPERTY
@given(spec=ats.sensor_specs())
def test_valid_specs_round_trip_through_yaml(spec_dir, spec):
    text = spec_to_yaml(spec)
    back = validate_raw(read_raw_spec(_write(spec_dir, text)))
    assert back == spec
    assert spec_to_yaml(back) == text
    assert yaml.safe_load(text)["bands"][0]["name"] == spec.bands[0].name


def test_dict_specs_never_show_a_missing_line_number():
    data = {"id": "x", "name": "X", "sources": ["s"], "drop_bands": ["B1"],
            "bands": [{"name": "B1", "center_wavelength_nm": 500.0, "fwhm_nm": 10.0, "gsd_m": 10.0}]}
    with pytest.raises(SpecError) as info:
        validate_raw(RawSpec(data=data, origin="<plugin p>"))
    assert ":None:" not in str(info.value)
