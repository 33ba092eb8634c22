"""Composable Hypothesis strategies for atomizer objects (for our tests and for plugin authors).

Every strategy draws *valid* objects unless its name says otherwise (``malformed_*``). They are small
by default so property tests stay fast; every size is a keyword argument.

>>> from hypothesis import given
>>> from atomizer.testing import strategies as ats
>>> @given(ats.atom_sets(max_atoms=32))
... def test_something(atoms): ...

Strategies:

- :func:`band_names`, :func:`spectral_responses`, :func:`band_stats`, :func:`bands`
- :func:`sensor_ids`, :func:`sensor_specs`, :func:`valid_spec_dicts`
- :func:`scene_metas`, :func:`atom_sets`, :func:`atom_batches`
- :func:`malformed_spec_dicts` (each example is a spec dict with at least one real problem, and a
  short label of what was broken; :func:`malformed_spec_labels` lists the labels),
  :func:`malformed_spec_yaml` (YAML text that must not load)

Needs the ``dev`` extra (``hypothesis``).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.batch import AtomBatch, collate_atoms
from atomizer.sensors.spec import (
    COMMON_NAME_RANGES_NM,
    MAX_CENTER_NM,
    MIN_CENTER_NM,
    Band,
    BandStats,
    SensorSpec,
    SpectralResponse,
)

#: Centre wavelengths drawn by default (nm): the optical range most sensors cover, plus thermal.
OPTICAL_RANGE_NM = (400.0, 2500.0)
THERMAL_RANGE_NM = (3000.0, 14000.0)
#: Ground sampling distances drawn by default (m).
GSD_RANGE_M = (0.3, 1000.0)

_NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False, width=64)


# --- bands --------------------------------------------------------------------------------------------
def band_names() -> st.SearchStrategy[str]:
    """Band names like an agency writes them (no surrounding whitespace)."""
    return st.text(_NAME_ALPHABET, min_size=1, max_size=8)


@st.composite
def spectral_responses(draw: st.DrawFn, center_nm: float, fwhm_nm: float) -> SpectralResponse:
    """A tabulated response around ``center_nm`` (table spans the centre; values >= 0, one > 0)."""
    n = draw(st.integers(3, 12))
    half_span = fwhm_nm * draw(_floats(0.6, 1.5))
    lo = max(MIN_CENTER_NM, center_nm - half_span)
    hi = min(MAX_CENTER_NM, center_nm + half_span)
    wl = np.linspace(lo, hi, n)
    values = draw(st.lists(_floats(0.0, 1.0), min_size=n, max_size=n))
    values[int(np.argmin(np.abs(wl - center_nm)))] = 1.0  # peak near the centre, never all zero
    return SpectralResponse(wavelength_nm=[float(w) for w in wl], value=values)


def band_stats() -> st.SearchStrategy[BandStats]:
    """Normalisation statistics of reflectance-like values."""
    return st.builds(BandStats, mean=_floats(-0.1, 1.0), std=_floats(1e-3, 1.0))


@st.composite
def bands(
    draw: st.DrawFn,
    *,
    name: str | st.SearchStrategy[str] | None = None,
    center_range_nm: tuple[float, float] | None = None,
    gsd_range_m: tuple[float, float] = GSD_RANGE_M,
    gsd_m: float | None = None,
    with_response: bool | None = False,
    with_stats: bool | None = None,
    with_common_name: bool | None = None,
) -> Band:
    """A valid :class:`Band`.

    ``center_range_nm`` defaults to optical (400-2500 nm) or, one time in eight, thermal. The FWHM
    is 0.2 %-20 % of the centre. ``with_response`` / ``with_stats`` / ``with_common_name``: True
    forces the optional field, False omits it, None lets Hypothesis choose. A common name is only
    given when the centre lies in its STAC range.
    """
    if center_range_nm is None:
        center_range_nm = draw(st.sampled_from([OPTICAL_RANGE_NM] * 7 + [THERMAL_RANGE_NM]))
    center = draw(_floats(*center_range_nm))
    fwhm = center * draw(_floats(0.002, 0.2))
    gsd = gsd_m if gsd_m is not None else draw(_floats(*gsd_range_m))
    if name is None:
        name = draw(band_names())
    elif not isinstance(name, str):
        name = draw(name)
    fields: dict[str, Any] = dict(name=name, center_wavelength_nm=center, fwhm_nm=fwhm, gsd_m=gsd)
    if with_common_name is not False:
        fitting = sorted(k for k, (lo, hi) in COMMON_NAME_RANGES_NM.items() if lo <= center <= hi)
        if fitting and (with_common_name or draw(st.booleans())):
            fields["common_name"] = draw(st.sampled_from(fitting))
    if with_response or (with_response is None and draw(st.booleans())):
        fields["response"] = draw(spectral_responses(center, fwhm))
    if with_stats or (with_stats is None and draw(st.booleans())):
        fields["stats"] = draw(band_stats())
    return Band(**fields)


# --- sensors ------------------------------------------------------------------------------------------
def sensor_ids() -> st.SearchStrategy[str]:
    """Ids matching the spec's pattern ``^[a-z0-9][a-z0-9._-]*$``."""
    return st.tuples(
        st.text(_ID_ALPHABET, min_size=1, max_size=1),
        st.text(_ID_ALPHABET + "._-", min_size=0, max_size=12),
    ).map("".join)


@st.composite
def sensor_specs(
    draw: st.DrawFn,
    *,
    min_bands: int = 1,
    max_bands: int = 6,
    band_strategy: st.SearchStrategy[Band] | None = None,
    sensor_id: str | None = None,
) -> SensorSpec:
    """A valid :class:`SensorSpec` with ``min_bands``..``max_bands`` uniquely named bands."""
    n = draw(st.integers(min_bands, max_bands))
    # unique ignoring case: band lookups ignore case, so specs refuse names differing only in case
    names = draw(st.lists(band_names(), min_size=n, max_size=n, unique_by=str.lower))
    strat = band_strategy if band_strategy is not None else bands(with_response=None)
    table = [draw(strat).model_copy(update={"name": nm}) for nm in names]
    return SensorSpec(
        id=sensor_id if sensor_id is not None else draw(sensor_ids()),
        name=draw(st.text(_NAME_ALPHABET + " ", min_size=1, max_size=20).map(str.strip).filter(bool)),
        sources=[draw(st.sampled_from(["https://example.invalid/spec.pdf", "agency handbook v2"]))],
        bands=table,
    )


def valid_spec_dicts(**kwargs: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Plain YAML-ready dicts of valid specs (:func:`atomizer.sensors.spec_to_dict`)."""
    from atomizer.sensors.loader import spec_to_dict

    return sensor_specs(**kwargs).map(spec_to_dict)


# --- atoms --------------------------------------------------------------------------------------------
@st.composite
def scene_metas(
    draw: st.DrawFn,
    *,
    sensor_id: str = "test-sensor",
    with_datetime: bool | None = None,
    with_location: bool | None = None,
) -> SceneMeta:
    """Scene metadata; datetime (UTC-aware or naive) and lon/lat are each present or missing."""
    when = None
    if with_datetime or (with_datetime is None and draw(st.booleans())):
        when = draw(
            st.datetimes(
                min_value=dt.datetime(1972, 1, 1), max_value=dt.datetime(2060, 12, 31),
                timezones=st.sampled_from([None, dt.timezone.utc]),
            )
        )
    lon = lat = None
    if with_location or (with_location is None and draw(st.booleans())):
        lon = draw(_floats(-180.0, 180.0))
        lat = draw(_floats(-90.0, 90.0))
    return SceneMeta(sensor_id=sensor_id, datetime=when, lon=lon, lat=lat)


@st.composite
def atom_sets(
    draw: st.DrawFn,
    *,
    spec: SensorSpec | st.SearchStrategy[SensorSpec] | None = None,
    min_atoms: int = 0,
    max_atoms: int = 48,
    max_pixels: int = 8,
    value_range: tuple[float, float] = (-0.2, 1.5),
    scene: SceneMeta | st.SearchStrategy[SceneMeta] | None = None,
) -> AtomSet:
    """An :class:`AtomSet` over the bands of ``spec`` (drawn when not given).

    Atoms sit at pixel centres of each band's own grid (``max_pixels`` x ``max_pixels`` around the
    centre, so positions are ``(k + 0.5) * gsd_m``), values are finite. A pixel may hold one atom
    per band at most.
    """
    if spec is None:
        spec = sensor_specs(max_bands=4)
    if not isinstance(spec, SensorSpec):
        spec = draw(spec)
    n_bands = spec.n_bands
    half = max_pixels // 2
    cells = st.tuples(
        st.integers(0, n_bands - 1), st.integers(-half, max_pixels - half - 1),
        st.integers(-half, max_pixels - half - 1),
    )
    keys = draw(st.lists(cells, min_size=min_atoms, max_size=max_atoms, unique=True))
    values = draw(st.lists(_floats(*value_range), min_size=len(keys), max_size=len(keys)))
    band = np.array([k[0] for k in keys], dtype=np.int64)
    gsd = np.array([b.gsd_m for b in spec.bands], dtype=np.float64)
    col = np.array([k[1] for k in keys], dtype=np.float64)
    row = np.array([k[2] for k in keys], dtype=np.float64)
    g = gsd[band] if len(keys) else np.zeros(0)
    if scene is None:
        scene = scene_metas(sensor_id=spec.id)
    if not isinstance(scene, SceneMeta):
        scene = draw(scene)
    return AtomSet(
        value=np.array(values, dtype=np.float64),
        band=band,
        x=(col + 0.5) * g,
        y=(row + 0.5) * g,
        bands=tuple(spec.bands),
        scene=scene,
    )


@st.composite
def atom_batches(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 3, **atom_kwargs: Any
) -> AtomBatch:
    """A padded :class:`AtomBatch` of ``min_size``..``max_size`` AtomSets (possibly of different sensors)."""
    sets = draw(st.lists(atom_sets(**atom_kwargs), min_size=min_size, max_size=max_size))
    return collate_atoms(sets)


# --- malformed specs ----------------------------------------------------------------------------------
#: Top-level and band keys a spec must have.
REQUIRED_SPEC_KEYS = ("id", "name", "sources", "bands")
REQUIRED_BAND_KEYS = ("name", "center_wavelength_nm", "fwhm_nm", "gsd_m")

_NOT_A_NUMBER = st.one_of(
    st.sampled_from(["six hundred", "665nm", "", "n/a"]), st.lists(st.integers(), max_size=2),
    st.just({"value": 1}),
)


#: Labels of the band-level problems :func:`malformed_spec_dicts` makes.
BAND_PROBLEMS = (
    "band_missing_key", "band_unknown_key", "micrometres", "fwhm_too_wide", "fwhm_not_positive",
    "gsd_not_positive", "not_a_number", "non_finite", "unknown_common_name",
    "common_name_mismatch", "response_length", "response_order", "response_off_centre",
    "stats_std", "out_of_range", "absurd_gsd", "bad_scale", "response_non_finite",
    "stats_non_finite",
)
#: Labels of the spec-level problems (``missing_<key>`` for each required key).
SPEC_PROBLEMS = (
    *(f"missing_{k}" for k in REQUIRED_SPEC_KEYS), "unknown_key", "bad_id", "no_bands",
    "bands_not_list", "band_not_mapping", "duplicate_band", "no_sources", "bad_modality",
    "derivation_without_extends",
)


def malformed_spec_labels() -> tuple[str, ...]:
    """Every label :func:`malformed_spec_dicts` may report."""
    return (*BAND_PROBLEMS, *SPEC_PROBLEMS)


def _bad_band(draw: st.DrawFn, band: dict[str, Any], kind: str) -> None:
    """Break ``band`` in place with the problem ``kind`` (one of :data:`BAND_PROBLEMS`)."""
    c = float(band["center_wavelength_nm"])
    if kind == "band_missing_key":
        del band[draw(st.sampled_from([k for k in REQUIRED_BAND_KEYS if k in band]))]
    elif kind == "band_unknown_key":
        band[draw(st.sampled_from(["centre_wavelength_nm", "fwhm", "gsd", "wavelength", "Name"]))] = 1.0
    elif kind == "micrometres":
        band["center_wavelength_nm"] = draw(_floats(0.3, 14.9))
        band.pop("response", None)
    elif kind == "fwhm_too_wide":
        band["fwhm_nm"] = c * draw(_floats(1.0, 3.0))
    elif kind == "fwhm_not_positive":
        band["fwhm_nm"] = draw(_floats(-100.0, 0.0))
    elif kind == "gsd_not_positive":
        band["gsd_m"] = draw(_floats(-100.0, 0.0))
    elif kind == "not_a_number":
        band[draw(st.sampled_from(REQUIRED_BAND_KEYS[1:]))] = draw(_NOT_A_NUMBER)
    elif kind == "non_finite":
        band["center_wavelength_nm"] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    elif kind == "unknown_common_name":
        band["common_name"] = draw(st.sampled_from(["infrared", "Red", "swir", "rgb"]))
    elif kind == "common_name_mismatch":
        far = [k for k, (lo, hi) in COMMON_NAME_RANGES_NM.items() if c < lo - 100 or c > hi + 100]
        band["common_name"] = draw(st.sampled_from(far))
    elif kind == "response_length":
        band["response"] = {"wavelength_nm": [c - 1, c, c + 1], "value": [0.5, 1.0]}
    elif kind == "response_order":
        band["response"] = {"wavelength_nm": [c + 1, c, c - 1], "value": [0.5, 1.0, 0.5]}
    elif kind == "response_off_centre":
        band["response"] = {"wavelength_nm": [c + 10, c + 20], "value": [1.0, 1.0]}
    elif kind == "stats_std":
        band["stats"] = {"mean": 0.1, "std": draw(_floats(-1.0, 0.0))}
    elif kind == "absurd_gsd":
        band["gsd_m"] = draw(st.sampled_from([float("inf"), float("nan"), 1e-300, 1e-3, 1e9]))
    elif kind == "bad_scale":
        band["scale"] = draw(st.sampled_from([float("nan"), float("inf"), 0.0, 1e39, -1e-300]))
    elif kind == "response_non_finite":
        band["response"] = {"wavelength_nm": [c - 1, c, c + 1],
                            "value": [0.5, draw(st.sampled_from([float("nan"), float("inf")])), 0.5]}
    elif kind == "stats_non_finite":
        band["stats"] = {"mean": draw(st.sampled_from([float("nan"), float("inf"), 1e300])),
                         "std": 0.1}
    elif kind == "out_of_range":
        band["center_wavelength_nm"] = draw(st.sampled_from([100.0, 20000.0, 1e6]))
        band["fwhm_nm"] = 10.0
        band.pop("response", None)
        band.pop("common_name", None)


def _breakable_bands(d: dict[str, Any]) -> list[dict[str, Any]]:
    bands = d.get("bands")
    if not isinstance(bands, list):
        return []
    return [b for b in bands if isinstance(b, dict) and isinstance(b.get("center_wavelength_nm"), (int, float))
            and not isinstance(b.get("center_wavelength_nm"), bool)]


@st.composite
def malformed_spec_dicts(
    draw: st.DrawFn,
    *,
    max_problems: int = 3,
    kinds: Sequence[str] | None = None,
    base: st.SearchStrategy[dict] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """``(spec_dict, labels)``: a valid spec dict with 1..``max_problems`` deliberate problems.

    Every label (see :func:`malformed_spec_labels`) names a problem that on its own makes the spec
    invalid: missing or unknown keys, unit slips, FWHM wider than its centre, non-positive GSD,
    wrong types, duplicate band names, bad ids, broken responses, ... ``kinds`` restricts the
    problems drawn. When a band-level problem has no band left to break (an earlier problem
    replaced the band list), an unknown top-level key is added instead. The dict stays
    YAML-serialisable.
    """
    allowed = tuple(kinds) if kinds is not None else malformed_spec_labels()
    unknown = sorted(set(allowed) - set(malformed_spec_labels()))
    if unknown:
        raise ValueError(f"unknown malformation kinds {unknown}; see malformed_spec_labels()")
    d = copy.deepcopy(draw(base if base is not None else valid_spec_dicts(max_bands=4)))
    labels = []
    for _ in range(draw(st.integers(1, max_problems))):
        kind = draw(st.sampled_from(allowed))
        needs_band = kind in BAND_PROBLEMS or kind in ("band_not_mapping", "duplicate_band")
        if needs_band and not _breakable_bands(d):
            kind = "unknown_key"
        if kind in BAND_PROBLEMS:
            _bad_band(draw, draw(st.sampled_from(_breakable_bands(d))), kind)
        elif kind.startswith("missing_"):
            d.pop(kind[len("missing_"):], None)
        elif kind == "unknown_key":
            d[draw(st.sampled_from(["band", "sensor", "gsd", "ids", "Bands", "source"]))] = "x"
        elif kind == "bad_id":
            d["id"] = draw(st.sampled_from(["Sentinel 2", "", "-s2", "S2A", "s2/a", "é"]))
        elif kind == "no_bands":
            d["bands"] = []
        elif kind == "bands_not_list":
            d["bands"] = draw(st.sampled_from(["B01", 3, {"name": "B01"}]))
        elif kind == "band_not_mapping":
            d["bands"].append(draw(st.sampled_from(["B09", 42, None, ["B09", 945.0]])))
        elif kind == "duplicate_band":
            d["bands"].append(copy.deepcopy(_breakable_bands(d)[0]))
        elif kind == "no_sources":
            d["sources"] = []
        elif kind == "bad_modality":
            d["modality"] = draw(st.sampled_from(["radar", "Optical", "hyperspectral"]))
        elif kind == "derivation_without_extends":
            d.pop("extends", None)
            d["drop_bands"] = ["B01"]
        labels.append(kind)
    return d, labels


@st.composite
def malformed_spec_yaml(draw: st.DrawFn) -> str:
    """YAML text that is not a valid spec: a malformed spec dict, a non-mapping, or broken YAML."""
    kind = draw(st.sampled_from(["dict", "dict", "not_mapping", "syntax"]))
    if kind == "dict":
        data, _ = draw(malformed_spec_dicts())
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if kind == "not_mapping":
        return draw(st.sampled_from(["", "- a\n- b\n", "just a string\n", "42\n", "~\n"]))
    valid = yaml.safe_dump(draw(valid_spec_dicts(max_bands=2)), sort_keys=False)
    broken = draw(st.sampled_from([
        "bands: [unclosed\n", "id: 'unterminated\n", "\tid: tab\n", "key: value: other\n",
        "bands:\n  - name: B01\n   gsd_m: 10\n",
    ]))
    return valid + broken
