"""A plain GeoTIFF / COG (or any single raster file GDAL reads) + a sensor spec -> AtomSet.

Which spec band each file band holds: an explicit mapping (``--bands B04,B03,B02``, ``-`` skips a
file band), else the file's band descriptions when they all name spec bands, else the spec's own
band order when the counts agree, else (single-band files) a band name at the end of the file name
(``..._B04.tif``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from atomizer.errors import BandMatchError
from atomizer.readers.base import (
    Reading,
    ReadOptions,
    ReadReport,
    normalise_band_name,
    source_suffix,
)
from atomizer.readers.matching import expected_bands
from atomizer.readers.raster import BandSource, open_dataset, read_sources
from atomizer.sensors.spec import Band, SensorSpec

#: File-band placeholder in ``--bands`` for a band to skip.
SKIP_BAND = "-"
#: ``TIFFTAG_DATETIME`` layout (TIFF 6.0).
TIFF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"


def _lookup(spec: SensorSpec, name: str) -> Band | None:
    norm = normalise_band_name(name)
    for b in spec.bands:
        if norm == normalise_band_name(b.name) or norm in (
            normalise_band_name(k) for k in b.asset_keys
        ):
            return b
    common = [b for b in spec.bands if b.common_name and normalise_band_name(b.common_name) == norm]
    return common[0] if len(common) == 1 else None


def band_mapping(
    count: int,
    descriptions: Sequence[str | None],
    spec: SensorSpec,
    *,
    bands: Sequence[str] | None,
    filename: str,
) -> list[tuple[int, Band, str]]:
    """``(1-based file band, spec band, how it was decided)`` for every file band that is read."""
    if bands is not None:
        if len(bands) != count:
            raise BandMatchError(
                f"{filename} has {count} band(s) but --bands names {len(bands)} "
                f"({', '.join(bands)}); "
                f"give one spec band per file band, in file order ('{SKIP_BAND}' skips one)"
            )
        out = [(i + 1, spec.band(n), "--bands") for i, n in enumerate(bands) if n != SKIP_BAND]
    elif descriptions and all(descriptions) and all(_lookup(spec, d) for d in descriptions):
        out = [(i + 1, _lookup(spec, d), "band description") for i, d in enumerate(descriptions)]
    elif count == spec.n_bands:
        out = [(i + 1, b, "spec band order") for i, b in enumerate(spec.bands)]
    else:
        tokens = [t for t in re.split(r"[_\-. ]+", Path(filename).stem) if t]
        named = next((b for t in reversed(tokens) if (b := _lookup(spec, t)) is not None), None)
        if count == 1 and named is not None:
            out = [(1, named, "file name")]
        else:
            raise BandMatchError(
                f"{filename} has {count} band(s) and sensor {spec.id!r} has {spec.n_bands} "
                f"({expected_bands(spec)}); say which spec band each file band holds with "
                "--bands NAME,NAME,... in file order"
            )
    seen: set[str] = set()
    for _, b, _how in out:
        if b.name in seen:
            raise BandMatchError(
                f"{filename}: band {b.name} is mapped to two file bands; map each once"
            )
        seen.add(b.name)
    if not out:
        raise BandMatchError(f"{filename}: every file band was skipped; map at least one")
    return out


def tiff_datetime(tags: dict[str, str]) -> dt.datetime | None:
    """The ``TIFFTAG_DATETIME`` of a file, if it has a valid one."""
    text = tags.get("TIFFTAG_DATETIME")
    if not text:
        return None
    try:
        return dt.datetime.strptime(text.strip(), TIFF_DATETIME_FORMAT)
    except ValueError:
        return None


class GeoTiffReader:
    """Reads one raster file (single or multi-band) with a given sensor spec."""

    name = "geotiff"
    suffixes = (".tif", ".tiff", ".jp2", ".vrt")

    def can_read(self, source: str) -> bool:
        return source_suffix(source) in self.suffixes

    def read(
        self,
        source: str | Path,
        *,
        sensor: SensorSpec | None = None,
        sensors: Iterable[SensorSpec] | None = None,
        options: ReadOptions | None = None,
    ) -> Reading:
        """Atoms of the file's bands as bands of ``sensor`` (required: a raster names no sensor)."""
        options = options or ReadOptions()
        label = str(source)
        if sensor is None:
            raise BandMatchError(
                f"{label}: a raster file does not say which sensor took it; pass --sensor ID "
                "(see `atomizer sensors list`)"
            )
        with contextlib.ExitStack() as stack:
            ds: Any = open_dataset(label, label, stack)
            mapping = band_mapping(
                ds.count,
                list(ds.descriptions),
                sensor,
                bands=options.bands,
                filename=Path(label).name,
            )
            when = tiff_datetime(ds.tags())
        sources = [
            BandSource(band=b, asset=Path(label).name, href=label, asset_band=i, matched_by=how)
            for i, b, how in mapping
        ]
        scene = read_sources(
            sources,
            sensor_id=sensor.id,
            bbox=options.bbox,
            window=options.window,
            progress=options.progress,
            datetime=when,
            source_id=Path(label).name,
        )
        mapped = {b.name for _, b, _ in mapping}
        report = ReadReport(
            source=label,
            reader=self.name,
            sensor_id=sensor.id,
            sensor_from="given",
            crs=scene.crs,
            reference_centre_m=scene.reference_centre_m,
            window=scene.window,
            bands=scene.readings,
            missing_bands=[b.name for b in sensor.bands if b.name not in mapped],
            n_atoms=len(scene.atoms),
            nbytes=scene.atoms.nbytes,
        )
        return Reading(scene.atoms, report)
