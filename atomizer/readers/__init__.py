"""Readers: image sources (STAC items, GeoTIFF / COG files) become AtomSets.

Readers are registered through the ``register_readers`` hook and chosen by source with
:func:`reader_for`; :func:`read_atoms` does both. Heavy dependencies (rasterio, pystac) are
imported only when something is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from atomizer.plugins.host import PluginHost
    from atomizer.sensors.spec import SensorSpec

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
    "read_atoms",
    "reader_for",
    "sentinel2_l2a_item",
]


def read_atoms(
    source: str | Path,
    *,
    sensor: SensorSpec | str | None = None,
    host: PluginHost | None = None,
    reader: str | None = None,
    options: ReadOptions | None = None,
) -> Reading:
    """Read ``source`` with the reader that claims it; ``sensor``: a spec, an id or a YAML path."""
    from atomizer.plugins.host import default_host
    from atomizer.sensors import get_sensor

    host = host or default_host()
    spec = get_sensor(sensor, host=host) if isinstance(sensor, (str, Path)) else sensor
    chosen = reader_for(source, host.readers, name=reader)
    return chosen.read(
        source, sensor=spec, sensors=host.sensors if spec is None else None, options=options
    )


def __getattr__(name: str) -> Any:  # lazy: these pull in rasterio / pystac
    if name == "StacReader":
        from atomizer.readers.stac import StacReader

        return StacReader
    if name == "GeoTiffReader":
        from atomizer.readers.geotiff import GeoTiffReader

        return GeoTiffReader
    if name in ("build_stac_item", "sentinel2_l2a_item"):
        from atomizer.readers import stac_build

        return getattr(stac_build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
