"""Default plugin: registers the sensor specs shipped with atomizer."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl
from atomizer.sensors.registry import builtin_sensor_files


@hookimpl
def register_sensors(register):
    for path in builtin_sensor_files():
        register(path)
