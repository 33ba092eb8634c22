"""Packaging: every subpackage is listed in pyproject.toml, and built-in specs ship with the code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def test_every_subpackage_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "atomizer").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "atomizer.builtin_sensors" in listed


def test_builtin_specs_are_installed_with_the_package():
    from atomizer.sensors.registry import builtin_sensor_files

    shipped = {p.name for p in builtin_sensor_files()}
    in_checkout = {p.name for p in (ROOT / "sensors").glob("*.yaml")}
    assert in_checkout and in_checkout == shipped
