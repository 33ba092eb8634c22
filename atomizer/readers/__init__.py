"""Readers: image sources (STAC items, GeoTIFF / COG files) become AtomSets.

Readers are registered through the ``register_readers`` hook and chosen by source with
:func:`reader_for` (``reader_for(source, host.readers).read(source, sensor=..., sensors=...)``).
Heavy dependencies (rasterio, pystac) are imported only when something is read.
"""

from __future__ import annotations

from atomizer._lazy import lazy_exports
from atomizer.readers.base import (
    BandMetadataWarning,
    BandReading,
    LonLatBBox,
    PixelWindow,
    ProgressCallback,
    Reader,
    ReaderWarning,
    Reading,
    ReadOptions,
    ReadReport,
    reader_for,
)

__all__ = [
    "BandMetadataWarning",
    "BandReading",
    "GeoTiffReader",
    "LonLatBBox",
    "PixelWindow",
    "ProgressCallback",
    "ReadOptions",
    "ReadReport",
    "Reader",
    "ReaderWarning",
    "Reading",
    "StacReader",
    "build_stac_item",
    "reader_for",
    "sentinel2_l2a_item",
]


__getattr__, __dir__ = lazy_exports(__name__, {  # these pull in rasterio / pystac
    "StacReader": "stac",
    "GeoTiffReader": "geotiff",
    "build_stac_item": "stac_build",
    "sentinel2_l2a_item": "stac_build",
})
