"""Default plugin: registers the built-in readers (STAC items and single raster files)."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_readers(register):
    """Register the ``stac`` and ``geotiff`` readers."""
    from atomizer.readers.geotiff import GeoTiffReader
    from atomizer.readers.stac import StacReader

    register("stac", StacReader())
    register("geotiff", GeoTiffReader())
