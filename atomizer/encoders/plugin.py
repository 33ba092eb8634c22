"""Default plugin: registers the built-in token encoders by the names YAML configs use."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    from atomizer.encoders.fourier import FourierValueEncoder
    from atomizer.encoders.position import PositionEncoder
    from atomizer.encoders.spectral import SpectralEncoder
    from atomizer.encoders.time_location import LocationEncoder, TimeEncoder

    register("fourier_value", FourierValueEncoder)
    register("position", PositionEncoder)
    register("spectral", SpectralEncoder)
    register("time", TimeEncoder)
    register("location", LocationEncoder)
