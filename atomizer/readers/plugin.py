"""Default plugin: registers the built-in readers (STAC items, single raster files, netCDF)."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_readers(register):
    """Register the ``stac``, ``geotiff`` and ``xarray`` readers."""
    from atomizer.readers.geotiff import GeoTiffReader
    from atomizer.readers.stac import StacReader
    from atomizer.readers.xarray import XarrayReader

    register("stac", StacReader())
    register("geotiff", GeoTiffReader())
    register("xarray", XarrayReader())
