"""Sensor specs: the pydantic models, YAML loading, and the registry."""

from __future__ import annotations

from atomizer.sensors.loader import read_raw_spec, spec_to_dict, spec_to_yaml, validate_raw
from atomizer.sensors.registry import SensorRegistry
from atomizer.sensors.spec import Band, BandStats, SensorSpec, SpectralResponse, StacHints

__all__ = [
    "Band",
    "BandStats",
    "SensorRegistry",
    "SensorSpec",
    "SpectralResponse",
    "StacHints",
    "get_sensor",
    "is_spec_path",
    "load_spec_file",
    "spec_to_dict",
    "spec_to_yaml",
]


def is_spec_path(text: str) -> bool:
    """Whether a sensor argument names a YAML spec file rather than a registry id or alias.

    Decided by the suffix alone (``.yaml`` / ``.yml``), so a sensor id never turns into a file
    because a file of that name happens to exist in the working folder.
    """
    return str(text).lower().endswith((".yaml", ".yml"))


def get_sensor(name_or_path, host=None) -> SensorSpec:
    """A spec by registry id / alias, or from a YAML file path (which may ``extends:`` a known id)."""
    from atomizer.plugins.host import default_host

    host = host or default_host()
    text = str(name_or_path)
    if is_spec_path(text):
        return load_spec_file(text, registry=host.sensor_registry(strict=False))
    return host.sensors.get(text)


def load_spec_file(path, registry: SensorRegistry | None = None) -> SensorSpec:
    """Read and validate one YAML spec; ``extends:`` is resolved against ``registry``."""
    from atomizer.errors import SpecError
    from atomizer.limits import clip_text
    from atomizer.sensors.loader import merge_extends

    raw = read_raw_spec(path)
    parent_id = raw.data.get("extends")
    if parent_id is None:
        return validate_raw(raw)
    if registry is None:
        from atomizer.plugins.host import default_host

        registry = default_host().sensor_registry(strict=False)
    if parent_id not in registry:
        raise SpecError(
            f"{raw.origin}: extends: unknown sensor {clip_text(repr(parent_id), max_chars=80)}",
            source=raw.origin,
        )
    parent = spec_to_dict(registry.get(parent_id))
    return validate_raw(raw, merge_extends(raw, parent))
