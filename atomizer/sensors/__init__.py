"""Sensor specs: the pydantic models, YAML loading, the registry and the one sensor resolver."""

from __future__ import annotations

from atomizer.sensors.loader import read_raw_spec, spec_to_dict, spec_to_yaml, validate_raw
from atomizer.sensors.registry import SensorRegistry, build_registry
from atomizer.sensors.resolve import is_spec_path, resolve_sensor
from atomizer.sensors.spec import Band, BandStats, SensorSpec, SpectralResponse, StacHints

__all__ = [
    "Band",
    "BandStats",
    "SensorRegistry",
    "SensorSpec",
    "SpectralResponse",
    "StacHints",
    "build_registry",
    "is_spec_path",
    "read_raw_spec",
    "resolve_sensor",
    "spec_to_dict",
    "spec_to_yaml",
    "validate_raw",
]
