"""Reading sensor specs from YAML, resolving ``extends:``, and turning validation errors into lines.

Every problem is reported as one line: ``FILE:LINE: key.path: what is wrong; what to write instead``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from atomizer.errors import SpecError
from atomizer.sensors.spec import Band, SensorSpec

#: libyaml's safe loader when available (specs with 1-nm response tables parse ~10x faster).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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

    @property
    def id(self) -> str:
        value = self.data.get("id")
        return str(value) if value is not None else ""


def read_raw_spec(path: str | Path) -> RawSpec:
    """Parse one YAML file into a :class:`RawSpec`; YAML syntax errors become a :class:`SpecError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; check the path", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the file ({exc})", source=str(path)) from None
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}", source=str(path)) from None
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise SpecError(
            [f"{path}:{line}: {key}: the key appears twice in one mapping; keep one" for key, line in duplicates],
            source=str(path),
        )
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(
            f"{path}:1: the file is {kind}; a sensor spec is a mapping with at least id, name, "
            "sources and bands",
            source=str(path),
        )
    return RawSpec(data=data, origin=str(path), node=node)


def _duplicate_keys(node: yaml.Node | None) -> list[tuple[str, int]]:
    """Keys repeated within one YAML mapping (PyYAML silently keeps the last one)."""
    out: list[tuple[str, int]] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in current.value:
                if key_node.value in seen:
                    out.append((str(key_node.value), key_node.start_mark.line + 1))
                seen.add(key_node.value)
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return sorted(out, key=lambda kv: kv[1])


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest existing prefix of it)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node
                    # for an unknown key the key itself is the place to point at
                    line = key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        else:
            return line
    return line


def _where(raw: RawSpec, loc: tuple[Any, ...]) -> str:
    """``FILE:LINE`` of ``loc`` in the spec's YAML, or just the origin when there is no YAML."""
    line = _line_of(raw.node, loc)
    return f"{raw.origin}:{line}" if line is not None else raw.origin


def _loc_text(loc: tuple[Any, ...], data: Mapping[str, Any] | None) -> str:
    """``bands[3](B04).fwhm_nm``: a readable key path, naming bands as well as their index."""
    out = ""
    bands = data.get("bands") if isinstance(data, Mapping) else None
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] == "bands" and isinstance(bands, list) and part < len(bands):
                name = bands[part].get("name") if isinstance(bands[part], dict) else None
                if name:
                    out += f"({name})"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    parent = loc[:-1]
    if not parent:
        return [*SensorSpec.model_fields, *DERIVATION_KEYS]
    if parent[0] == "bands" and len(parent) == 2:
        return list(Band.model_fields)
    if parent and parent[-1] == "response":
        return ["wavelength_nm", "value"]
    if parent and parent[-1] == "stats":
        return ["mean", "std"]
    if parent and parent[-1] == "stac":
        return ["platform", "constellation", "instruments"]
    return []


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"unknown key {key!r}; {hint}"
    if kind == "missing":
        return f"required key {str(loc[-1])!r} is missing; add it"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if kind not in ("value_error", "assertion_error") and "input" in err:
        given = err["input"]
        if not isinstance(given, (dict, list)):
            msg += f" (got {given!r})"
    return msg


def format_validation_error(
    exc: ValidationError, *, origin: str, node: yaml.Node | None, data: Mapping[str, Any] | None
) -> list[str]:
    """One line per pydantic error: ``FILE:LINE: key.path: message``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        where = f"{origin}:{line}" if line is not None else origin
        lines.append(f"{where}: {_loc_text(loc, data)}: {_message(err)}")
    return lines


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
    bands = [dict(b) for b in out.get("bands", []) if isinstance(b, dict)]
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
        lines = format_validation_error(exc, origin=raw.origin, node=raw.node, data=clean)
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

