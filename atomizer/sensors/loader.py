"""Reading sensor specs from YAML and merging a derived spec (``extends:``) over its parent.

Files are read through :mod:`atomizer.documents` (bounded, duplicate keys refused) and validation
errors rendered by :mod:`atomizer.config`, so every problem is one line:
``FILE:LINE: key.path: what is wrong; what to write instead``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from atomizer.config import render_errors
from atomizer.documents import YamlDocument, read_yaml
from atomizer.errors import SpecError
from atomizer.sensors.spec import SensorSpec

#: Keys a spec file may use on top of the :class:`SensorSpec` fields to derive from another spec.
DERIVATION_KEYS = ("select_bands", "drop_bands", "band_defaults", "band_overrides")
#: List fields a derived spec adds to (parent first) instead of replacing.
ADDITIVE_KEYS = ("sources", "notes")


@dataclass
class RawSpec:
    """A spec as read from YAML (or handed over by a plugin), before ``extends:`` is resolved."""

    data: dict[str, Any]
    origin: str
    node: yaml.Node | None = None
    resolved: dict[str, Any] | None = field(default=None, repr=False)
    #: The plugin that registered it (``None``: the provider it is listed under).
    registrant: str | None = None

    @property
    def id(self) -> str:
        value = self.data.get("id")
        return str(value) if value is not None else ""


def _spec_error(source: str):
    def make(message: str) -> SpecError:
        return SpecError(message.splitlines(), source=source)

    return make


def read_raw_spec(path: str | Path) -> RawSpec:
    """Read one YAML file (within the document limits) into a :class:`RawSpec`; unreadable files,
    YAML syntax errors and repeated keys become a :class:`SpecError`."""
    doc = read_yaml(path, what="file", error=_spec_error(str(path)))
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        raise SpecError(
            f"{path}:1: the file is {kind}; a sensor spec is a mapping with at least id, name, "
            "sources and bands",
            source=str(path),
        )
    return RawSpec(data=doc.data, origin=doc.origin, node=doc.node)


def _where(raw: RawSpec, loc: tuple[Any, ...]) -> str:
    """``FILE:LINE`` of ``loc`` in the spec's YAML, or just the origin when there is no YAML."""
    return YamlDocument(data=raw.data, node=raw.node, origin=raw.origin).where(loc)


def _check_derivation_keys(raw: RawSpec) -> list[str]:
    problems = []
    d = raw.data
    if "extends" not in d:
        for key in DERIVATION_KEYS:
            if key in d:
                problems.append(
                    f"{_where(raw, (key,))}: {key}: only allowed together with "
                    "'extends: <sensor id>'"
                )
    if "extends" in d and "bands" in d and not (
        isinstance(d["bands"], list) and all(isinstance(b, dict) for b in d["bands"])
    ):
        problems.append(
            f"{_where(raw, ('bands',))}: bands: must be a list of band mappings (added to, or "
            "replacing by name, the parent's bands)"
        )
    for key in ("select_bands", "drop_bands"):
        if key in d and not (
            isinstance(d[key], list) and all(isinstance(x, str) for x in d[key])
        ):
            problems.append(f"{_where(raw, (key,))}: {key}: must be a list of band names")
    if "band_defaults" in d and not isinstance(d["band_defaults"], dict):
        problems.append(
            f"{_where(raw, ('band_defaults',))}: band_defaults: must be a mapping of band fields applied to "
            "every band"
        )
    if "band_overrides" in d and not (
        isinstance(d["band_overrides"], dict)
        and all(isinstance(v, dict) for v in d["band_overrides"].values())
    ):
        problems.append(
            f"{_where(raw, ('band_overrides',))}: band_overrides: must map band names to mappings of band fields"
        )
    return problems


def merge_extends(child: RawSpec, parent: dict[str, Any]) -> dict[str, Any]:
    """The child's data laid over its (already resolved) parent's, as a plain dict."""
    malformed = _check_derivation_keys(child)
    if malformed:
        raise SpecError(malformed, source=child.origin)
    d = child.data
    out = copy.deepcopy(parent)
    out.pop("aliases", None)  # aliases belong to the parent, never inherited
    for key, value in d.items():
        if key in ("bands", *DERIVATION_KEYS):
            continue
        if key in ADDITIVE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
            continue
        out[key] = copy.deepcopy(value)
    parent_bands = out.get("bands") if isinstance(out.get("bands"), list) else []
    bands = [dict(b) for b in parent_bands if isinstance(b, dict)]
    names = [b.get("name") for b in bands]
    problems = []
    for name in d.get("drop_bands", []) or []:
        if name not in names:
            problems.append(
                f"{_where(child, ('drop_bands',))}: drop_bands: {parent.get('id')!r} has no "
                f"band {name!r}; its bands are {', '.join(map(str, names))}"
            )
    bands = [b for b in bands if b.get("name") not in set(d.get("drop_bands", []) or [])]
    if d.get("select_bands"):
        by_name = {b.get("name"): b for b in bands}
        selected = []
        for name in d["select_bands"]:
            if name not in by_name:
                problems.append(
                    f"{_where(child, ('select_bands',))}: select_bands: {parent.get('id')!r} "
                    f"has no band {name!r}; its bands are {', '.join(map(str, by_name))}"
                )
            else:
                selected.append(by_name[name])
        bands = selected
    defaults = d.get("band_defaults") or {}
    if isinstance(defaults, dict):
        for band in bands:
            band.update(copy.deepcopy(defaults))
    for name, fields in (d.get("band_overrides") or {}).items():
        target = next((b for b in bands if b.get("name") == name), None)
        if target is None:
            problems.append(
                f"{_where(child, ('band_overrides',))}: band_overrides: no band {name!r} "
                "left to override after select_bands / drop_bands"
            )
        else:
            target.update(copy.deepcopy(fields))
    for new in d.get("bands", []) or []:
        if isinstance(new, dict) and new.get("name") in [b.get("name") for b in bands]:
            i = [b.get("name") for b in bands].index(new.get("name"))
            bands[i] = {**bands[i], **copy.deepcopy(new)}
        else:
            bands.append(copy.deepcopy(new))
    if problems:
        raise SpecError(problems, source=child.origin)
    out["bands"] = bands
    out["extends"] = d["extends"]
    return out


def _duplicate_bands(raw: RawSpec, data: Mapping[str, Any]) -> list[str]:
    """Duplicate band names, reported even when other errors stop pydantic's model checks."""
    bands = data.get("bands")
    if not isinstance(bands, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, band in enumerate(bands):
        name = band.get("name") if isinstance(band, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                f"{_where(raw, ('bands', i, 'name'))}: bands[{i}]({name}).name: duplicate band name {name!r} (also bands"
                f"[{seen[name]}]); give every band its own name"
            )
        else:
            seen[name] = i
    return problems


def validate_raw(raw: RawSpec, data: dict[str, Any] | None = None) -> SensorSpec:
    """Validate ``data`` (the resolved dict, or ``raw.data``) into a :class:`SensorSpec`."""
    data = raw.data if data is None else data
    problems = _check_derivation_keys(raw) + _duplicate_bands(raw, data)
    clean = {k: v for k, v in data.items() if k not in DERIVATION_KEYS}
    try:
        spec = SensorSpec.model_validate(clean)
    except ValidationError as exc:
        doc = YamlDocument(data=clean, node=raw.node, origin=raw.origin)
        lines = render_errors(exc, doc, model=SensorSpec, extra_keys={(): DERIVATION_KEYS})
        problems += [ln for ln in lines if "duplicate band name" not in ln]
        raise SpecError(problems, source=raw.origin) from None
    if problems:
        raise SpecError(problems, source=raw.origin)
    return spec


def spec_to_dict(spec: SensorSpec) -> dict[str, Any]:
    """A plain, YAML-ready dict of a spec, leaving out unset optional fields."""
    return spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
        "id": spec.id,
        "name": spec.name,
        "sources": list(spec.sources),
        "bands": [b.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
            "name": b.name,
            "center_wavelength_nm": b.center_wavelength_nm,
            "fwhm_nm": b.fwhm_nm,
            "gsd_m": b.gsd_m,
        } for b in spec.bands],
    }


def spec_to_yaml(spec: SensorSpec) -> str:
    """The spec as YAML text that :func:`read_raw_spec` reads back into an equal spec."""
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, allow_unicode=True, width=100)

