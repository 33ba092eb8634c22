"""STAC Item -> AtomSet.

Assets are matched to the bands of a sensor spec (given, or detected from the item's properties);
each matched band is read on its own grid with the item's ``raster:bands`` (or STAC 1.1 band)
scale, offset and no-data, else the spec's. Thumbnails, metadata and masks such as SCL are ignored
unless they match a band.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from atomizer.errors import ReaderError
from atomizer.limits import clip_text
from atomizer.readers.base import Reading, ReadOptions, ReadReport, source_suffix
from atomizer.readers.detect import detect_sensor
from atomizer.readers.matching import (
    AssetInfo,
    item_bands,
    match_assets,
    require_complete,
    warn_disagreements,
)
from atomizer.readers.raster import BandSource, read_sources
from atomizer.sensors.spec import SensorSpec


def load_item(source: str | Path) -> Any:
    """A ``pystac.Item`` from a path or URL, validated at the boundary (see
    :mod:`atomizer.readers.stac_model`); a missing or malformed item is a ReaderError."""
    import pystac
    from pystac.utils import is_absolute_href, make_absolute_href

    from atomizer.readers.stac_model import read_item_dict

    text = str(source)
    data, _ = read_item_dict(text)
    href = text if is_absolute_href(text) else make_absolute_href(text)
    try:
        return pystac.Item.from_dict(data, href=href, migrate=True, preserve_dict=False)
    except (pystac.STACError, pystac.STACTypeError) as exc:
        raise ReaderError(f"{text}: not a STAC Item ({clip_text(exc)})") from None
    except (KeyError, TypeError, ValueError) as exc:  # what the model does not cover, pystac checks
        raise ReaderError(
            f"{text}: not a readable STAC Item ({type(exc).__name__}: {clip_text(exc)}); check "
            "it with a STAC validator"
        ) from None


def asset_infos(item: Any) -> list[AssetInfo]:
    """What every asset of ``item`` is and declares (band metadata converted to nm)."""
    out = []
    for key, asset in item.assets.items():
        fields = asset.extra_fields
        where = f"{clip_text(item.id, max_chars=80)}: asset {clip_text(key, max_chars=80)!r}"
        href = asset.get_absolute_href() or asset.href
        gsd = fields.get("gsd")
        out.append(
            AssetInfo(
                key=key,
                href=str(href),
                media_type=asset.media_type,
                roles=tuple(asset.roles or ()),
                bands=item_bands(fields, where),
                gsd_m=float(gsd) if isinstance(gsd, (int, float)) and gsd > 0 else None,
            )
        )
    return out


def item_datetime(item: Any) -> dt.datetime | None:
    """The item's ``datetime``, else its ``start_datetime``; one without a time zone is UTC (STAC
    asks for RFC 3339 times; naive and aware times cannot be compared)."""
    when = item.datetime
    start = item.properties.get("start_datetime")
    if when is None and start:
        from pystac.utils import str_to_datetime

        when = str_to_datetime(start)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


def item_sources(
    assets: list[AssetInfo], sensor: SensorSpec, select: tuple[str, ...] | None, label: str
) -> tuple[list[BandSource], Any, list[str]]:
    """The band sources of an item's assets for ``sensor`` (``select``: only those spec bands), the
    match result and the warnings about metadata that disagrees with the spec."""
    result = match_assets(assets, sensor, select=select)
    require_complete(result, label, selected=select is not None)
    messages = warn_disagreements(result, label)
    sources = [
        BandSource(
            band=m.band,
            asset=m.asset.key,
            href=m.asset.href,
            asset_band=m.index,
            matched_by=m.matched_by,
            scale=m.item_band.scale if m.item_band else None,
            offset=m.item_band.offset if m.item_band else None,
            scale_from=m.item_band.scale_from if m.item_band else None,
            nodata=m.item_band.nodata if m.item_band else (),
            # the report shows what the atoms carry: the spec's band
            center_wavelength_nm=m.band.center_wavelength_nm,
            fwhm_nm=m.band.fwhm_nm,
            single_band=not m.asset.bands,
        )
        for m in result.matches
    ]
    return sources, result, messages


class StacReader:
    """Reads a STAC Item (JSON file or URL) into atoms."""

    name = "stac"
    suffixes = (".json", ".geojson")

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
        """Atoms of each asset band matching ``sensor`` (``None``: detect it among ``sensors``)."""
        options = options or ReadOptions()
        label = str(source)
        item = load_item(source)
        assets = asset_infos(item)
        if sensor is None:
            if sensors is None:  # detect among atomizer's own sensors, whatever the environment
                from atomizer.plugins.host import builtin_host

                sensors = builtin_host().sensors
            sensor, how = detect_sensor(
                item.properties, assets, sensors, source=label, item_id=item.id
            )
        else:
            how = "given"
        sources, result, messages = item_sources(assets, sensor, options.bands, label)
        scene = read_sources(
            sources,
            sensor_id=sensor.id,
            bbox=options.bbox,
            window=options.window,
            progress=options.progress,
            datetime=item_datetime(item),
            source_id=item.id,
        )
        report = ReadReport(
            source=label,
            reader=self.name,
            sensor_id=sensor.id,
            sensor_from=how,
            crs=scene.crs,
            reference_centre_m=scene.reference_centre_m,
            window=scene.window,
            bands=scene.readings,
            ignored_assets=dict(result.ignored),
            missing_bands=list(result.missing),
            warnings=messages,
            n_atoms=len(scene.atoms),
            nbytes=scene.atoms.nbytes,
        )
        return Reading(scene.atoms, report)
