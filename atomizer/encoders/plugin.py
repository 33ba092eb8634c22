"""Default plugin: registers the built-in token encoders by the names YAML configs use.

Encoders are registered as import strings, so loading this plugin does not import torch.
"""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    register("fourier_value", "atomizer.encoders.fourier:FourierValueEncoder")
    register("position", "atomizer.encoders.position:PositionEncoder")
    register("spectral", "atomizer.encoders.spectral:SpectralEncoder")
    register("time", "atomizer.encoders.time_location:TimeEncoder")
    register("location", "atomizer.encoders.time_location:LocationEncoder")
