"""Default plugin: registers the sensor specs shipped with atomizer."""

from __future__ import annotations

import pluggy

from atomizer.sensors.registry import builtin_sensor_files

#: The same marker as ``atomizer.hookimpl`` (pluggy identifies markers by project name), made here
#: so that ``atomizer.sensors`` never imports ``atomizer.plugins``.
hookimpl = pluggy.HookimplMarker("atomizer")


@hookimpl
def register_sensors(register):
    for path in builtin_sensor_files():
        register(path)
