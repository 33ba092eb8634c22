"""Per-sample metadata for SatMIP: the schema (:class:`MetadataRecord`) and its readers.

A record holds named fields, every one optional: ground sampling distance, acquisition date and
time of day (UTC), footprint centre (lon/lat, degrees), sensor id, view and sun angles and cloud
cover. A missing field is ``None``; encoders replace it with a learned "missing" embedding, so a
record with nothing in it is still valid input.

Readers:

- :func:`metadata_from_stac_item` (pystac ``Item`` or its dict): ``datetime`` / ``start_datetime``,
  ``gsd`` (item or asset level), ``bbox`` / ``geometry``, ``platform``, the ``view`` extension and
  ``eo:cloud_cover``.
- :func:`metadata_from_bigearthnet_json` (``<patch>_labels_metadata.json``): ``acquisition_date``,
  ``coordinates`` (ulx/uly/lrx/lry in the projection, reprojected to lon/lat), ``tile_source``.
- :func:`metadata_from_fmow_json` (fMoW ``*.json``): ``gsd``, ``timestamp``, ``raw_location`` /
  ``utm``, ``cloud_cover``, ``off_nadir_angle_dbl``, ``target_azimuth_dbl``, ``sun_azimuth_dbl``,
  ``sun_elevation_dbl``, ``sensor_platform_name``.
- :func:`metadata_from_atomset`: the scene metadata an :class:`~atomizer.atoms.AtomSet` carries.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from atomizer.errors import ReaderError

#: Every field of a record, in the order encoders and text renderings use.
FIELD_NAMES: tuple[str, ...] = (
    "gsd_m",
    "date",
    "time_utc",
    "location",
    "sensor_id",
    "off_nadir_deg",
    "view_azimuth_deg",
    "sun_azimuth_deg",
    "sun_elevation_deg",
    "cloud_cover_pct",
)

#: Valid ranges of the numeric fields (inclusive), used to reject unit slips early.
FIELD_RANGES: dict[str, tuple[float, float]] = {
    "gsd_m": (1e-3, 1e5),
    "lon": (-180.0, 180.0),
    "lat": (-90.0, 90.0),
    "off_nadir_deg": (0.0, 90.0),
    "view_azimuth_deg": (-360.0, 360.0),
    "sun_azimuth_deg": (-360.0, 360.0),
    "sun_elevation_deg": (-90.0, 90.0),
    "cloud_cover_pct": (0.0, 100.0),
}

#: fMoW's UTM latitude bands (C..X without I and O), each 8 degrees tall from 80 S.
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWX"


@dataclass(frozen=True)
class MetadataRecord:
    """The metadata of one image sample. Every field may be ``None`` (missing)."""

    gsd_m: float | None = None
    date: dt.date | None = None
    time_utc: dt.time | None = None
    lon: float | None = None
    lat: float | None = None
    sensor_id: str | None = None
    off_nadir_deg: float | None = None
    view_azimuth_deg: float | None = None
    sun_azimuth_deg: float | None = None
    sun_elevation_deg: float | None = None
    cloud_cover_pct: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in FIELD_RANGES and value is not None:
                value = float(value)
                if not math.isfinite(value):  # NaN / inf mean "not measured"
                    object.__setattr__(self, f.name, None)
                    continue
                lo, hi = FIELD_RANGES[f.name]
                if not lo <= value <= hi:
                    raise ReaderError(
                        f"metadata field {f.name}={value:g} is outside [{lo:g}, {hi:g}]; check the "
                        "units (degrees, metres, percent) of the source"
                    )
                object.__setattr__(self, f.name, value)
        if (self.lon is None) != (self.lat is None):
            raise ReaderError(
                "metadata gives only one of lon / lat; give both (degrees) or neither"
            )
        if self.sensor_id is not None:
            sid = str(self.sensor_id).strip().lower()
            object.__setattr__(self, "sensor_id", sid or None)

    # --- views ----------------------------------------------------------------------------------
    @property
    def datetime(self) -> dt.datetime | None:
        """Date and time as one UTC datetime (midnight when the time of day is unknown)."""
        if self.date is None:
            return None
        return dt.datetime.combine(self.date, self.time_utc or dt.time(0), tzinfo=dt.timezone.utc)

    @property
    def has_location(self) -> bool:
        return self.lon is not None and self.lat is not None

    def present_fields(self) -> list[str]:
        """Names (from :data:`FIELD_NAMES`) of the fields this record has."""
        out = []
        for name in FIELD_NAMES:
            if name == "location":
                if self.has_location:
                    out.append(name)
            elif getattr(self, name) is not None:
                out.append(name)
        return out

    def with_gsd(self, gsd_m: float | None) -> MetadataRecord:
        return replace(self, gsd_m=gsd_m)

    # --- JSON -----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["date"] = self.date.isoformat() if self.date else None
        d["time_utc"] = self.time_utc.isoformat() if self.time_utc else None
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MetadataRecord:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ReaderError(
                f"unknown metadata keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        data = dict(d)
        if data.get("date"):
            data["date"] = dt.date.fromisoformat(data["date"])
        if data.get("time_utc"):
            data["time_utc"] = dt.time.fromisoformat(data["time_utc"])
        return cls(**data)

    @classmethod
    def from_datetime(cls, when: dt.datetime | None, **kwargs: Any) -> MetadataRecord:
        """A record whose date and time of day come from ``when`` (converted to UTC)."""
        date, time = split_datetime(when)
        return cls(date=date, time_utc=time, **kwargs)


# --- helpers --------------------------------------------------------------------------------------
def split_datetime(when: dt.datetime | None) -> tuple[dt.date | None, dt.time | None]:
    """``(date, time of day)`` in UTC; a naive datetime is taken to be UTC already."""
    if when is None:
        return None, None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return when.date(), when.time().replace(tzinfo=None)


def parse_timestamp(text: Any, *, where: str) -> tuple[dt.date | None, dt.time | None]:
    """Parse ISO-like timestamps: ``2017-06-13 10:10:31``, ``2012-04-02T10:32:22Z``, ``2017-06-13``.

    Returns ``(date, None)`` when the text has no time of day; ``(None, None)`` for empty input.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, None
    if isinstance(text, dt.datetime):
        return split_datetime(text)
    if isinstance(text, dt.date):
        return text, None
    s = str(text).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return dt.date.fromisoformat(s), None
    s = s.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        return split_datetime(dt.datetime.fromisoformat(s))
    except ValueError:
        raise ReaderError(
            f"{where}: cannot read the timestamp {text!r}; write it as ISO 8601, e.g. "
            "2017-06-13T10:10:31Z"
        ) from None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _load_json(source: str | os.PathLike | Mapping[str, Any], kind: str) -> tuple[dict, str]:
    if isinstance(source, Mapping):
        return dict(source), f"<{kind} dict>"
    from atomizer.documents import read_json

    path = Path(source)
    data = read_json(path, what=f"{kind} metadata file", error=ReaderError)
    if not isinstance(data, dict):
        raise ReaderError(f"{path}: expected a JSON object for {kind} metadata")
    return data, str(path)


def _polygon_centroid_wkt(wkt: str) -> tuple[float, float] | None:
    """Mean vertex of a WKT ``POLYGON ((lon lat, ...))`` (closing vertex counted once)."""
    numbers = re.findall(r"(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s+(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)", wkt)
    if not numbers:
        return None
    pts = [(float(a), float(b)) for a, b in numbers]
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts = pts[:-1]
    return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)


def _geometry_centre(geometry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not geometry:
        return None
    coords: list[tuple[float, float]] = []

    def walk(c: Any) -> None:
        if (
            isinstance(c, (list, tuple))
            and len(c) >= 2
            and all(isinstance(v, (int, float)) for v in c[:2])
        ):
            coords.append((float(c[0]), float(c[1])))
        elif isinstance(c, (list, tuple)):
            for item in c:
                walk(item)

    walk(geometry.get("coordinates"))
    if not coords:
        return None
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    return (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2


def utm_zone_centre(zone: str) -> tuple[float, float] | None:
    """Centre (lon, lat) of a UTM grid-zone designator like ``32T`` (a coarse location)."""
    m = re.fullmatch(r"\s*(\d{1,2})\s*([A-Za-z])\s*", str(zone))
    if not m:
        return None
    number, band = int(m.group(1)), m.group(2).upper()
    if not 1 <= number <= 60 or band not in _UTM_BANDS:
        return None
    lon = -180.0 + 6.0 * (number - 1) + 3.0
    lat = -80.0 + 8.0 * _UTM_BANDS.index(band) + 4.0
    return lon, min(lat, 84.0)


def projected_to_lonlat(x: float, y: float, crs: str) -> tuple[float, float]:
    """Reproject one point from ``crs`` (WKT, ``EPSG:xxxx``) to WGS 84 lon/lat degrees."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    try:
        src = CRS.from_user_input(crs)
    except CRSError as exc:
        raise ReaderError(f"cannot understand the projection {crs[:60]!r}...: {exc}") from None
    lons, lats = transform(src, CRS.from_epsg(4326), [x], [y])
    return float(lons[0]), float(lats[0])


def sensor_id_from_platform(platform: str | None) -> str | None:
    """A compact sensor id from a platform name: ``Sentinel-2A`` -> ``sentinel2a``."""
    if not platform:
        return None
    return re.sub(r"[^a-z0-9]", "", str(platform).lower()) or None


# --- readers --------------------------------------------------------------------------------------
def metadata_from_stac_item(item: Any, *, gsd_m: float | None = None) -> MetadataRecord:
    """Metadata of a STAC item (a ``pystac.Item`` or its dict form).

    ``gsd_m`` overrides the item's ``gsd`` (e.g. after resampling); otherwise the item-level ``gsd``
    or the finest asset-level ``gsd`` is used.
    """
    d = item.to_dict() if hasattr(item, "to_dict") else dict(item)
    where = f"STAC item {d.get('id', '?')}"
    props = d.get("properties") or {}
    date, time = parse_timestamp(props.get("datetime") or props.get("start_datetime"), where=where)
    if gsd_m is None:
        gsd_m = _float_or_none(props.get("gsd"))
    if gsd_m is None:
        asset_gsds = [
            _float_or_none((a or {}).get("gsd")) for a in (d.get("assets") or {}).values()
        ]
        asset_gsds = [g for g in asset_gsds if g is not None]
        gsd_m = min(asset_gsds) if asset_gsds else None
    centre = None
    bbox = d.get("bbox")
    if bbox and len(bbox) >= 4:
        half = len(bbox) // 2
        west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
        if west > east:  # crosses the antimeridian (STAC / GeoJSON convention)
            east += 360.0
        lon = (west + east) / 2
        centre = (lon - 360.0 if lon > 180.0 else lon, (south + north) / 2)
    if centre is None:
        centre = _geometry_centre(d.get("geometry"))
    sun_elev = _float_or_none(props.get("view:sun_elevation"))
    if sun_elev is None and _float_or_none(props.get("s2:mean_solar_zenith")) is not None:
        sun_elev = 90.0 - float(props["s2:mean_solar_zenith"])
    sun_az = _float_or_none(props.get("view:sun_azimuth"))
    if sun_az is None:
        sun_az = _float_or_none(props.get("s2:mean_solar_azimuth"))
    return MetadataRecord(
        gsd_m=gsd_m,
        date=date,
        time_utc=time,
        lon=centre[0] if centre else None,
        lat=centre[1] if centre else None,
        sensor_id=sensor_id_from_platform(props.get("platform") or props.get("constellation")),
        off_nadir_deg=_float_or_none(props.get("view:off_nadir")),
        view_azimuth_deg=_float_or_none(props.get("view:azimuth")),
        sun_azimuth_deg=sun_az,
        sun_elevation_deg=sun_elev,
        cloud_cover_pct=_float_or_none(props.get("eo:cloud_cover")),
    )


#: Finest native GSD of BigEarthNet-S2 (its 10 m bands), the default for its records.
BIGEARTHNET_GSD_M = 10.0


def metadata_from_bigearthnet_json(
    source: str | os.PathLike | Mapping[str, Any], *, gsd_m: float | None = BIGEARTHNET_GSD_M
) -> MetadataRecord:
    """Metadata of a BigEarthNet-S2 patch from its ``*_labels_metadata.json``.

    The patch centre ``((ulx + lrx) / 2, (uly + lry) / 2)`` is reprojected from the ``projection``
    WKT to lon/lat; the sensor comes from the ``tile_source`` prefix (``S2A_`` -> ``sentinel2a``).
    """
    d, where = _load_json(source, "BigEarthNet")
    date, time = parse_timestamp(d.get("acquisition_date"), where=where)
    lon = lat = None
    coords, projection = d.get("coordinates"), d.get("projection")
    if isinstance(coords, Mapping) and projection:
        try:
            x = (float(coords["ulx"]) + float(coords["lrx"])) / 2
            y = (float(coords["uly"]) + float(coords["lry"])) / 2
        except (KeyError, TypeError, ValueError):
            raise ReaderError(
                f"{where}: coordinates must have numeric ulx, uly, lrx, lry (projection units)"
            ) from None
        lon, lat = projected_to_lonlat(x, y, str(projection))
    sensor = None
    tile = str(d.get("tile_source") or "")
    m = re.match(r"S2([ABC])_", tile)
    if m:
        sensor = f"sentinel2{m.group(1).lower()}"
    return MetadataRecord(gsd_m=gsd_m, date=date, time_utc=time, lon=lon, lat=lat, sensor_id=sensor)


def metadata_from_fmow_json(source: str | os.PathLike | Mapping[str, Any]) -> MetadataRecord:
    """Metadata of an fMoW image from its JSON (``gsd``, ``timestamp``, ``*_dbl`` angles, ...).

    The location is the centre of ``raw_location`` (top level, else the first bounding box's),
    else the ``coordinates`` field, else the centre of the ``utm`` grid zone (coarse).
    """
    d, where = _load_json(source, "fMoW")
    date, time = parse_timestamp(d.get("timestamp"), where=where)
    centre = None
    raws = [d.get("raw_location")] + [
        (b or {}).get("raw_location")
        for b in (d.get("bounding_boxes") or [])
        if isinstance(b, Mapping)
    ]
    for raw in raws:
        if isinstance(raw, str):
            centre = _polygon_centroid_wkt(raw)
            if centre:
                break
    if centre is None and d.get("coordinates") is not None:
        c = d["coordinates"]
        if isinstance(c, str):
            try:
                c = json.loads(c)
            except json.JSONDecodeError:
                c = None
        if isinstance(c, (list, tuple)) and len(c) == 2:
            centre = (float(c[0]), float(c[1]))
    if centre is None and d.get("utm"):
        centre = utm_zone_centre(str(d["utm"]))
    return MetadataRecord(
        gsd_m=_float_or_none(d.get("gsd")),
        date=date,
        time_utc=time,
        lon=centre[0] if centre else None,
        lat=centre[1] if centre else None,
        sensor_id=sensor_id_from_platform(d.get("sensor_platform_name")),
        off_nadir_deg=_float_or_none(d.get("off_nadir_angle_dbl")),
        view_azimuth_deg=_float_or_none(d.get("target_azimuth_dbl")),
        sun_azimuth_deg=_float_or_none(d.get("sun_azimuth_dbl")),
        sun_elevation_deg=_float_or_none(d.get("sun_elevation_dbl")),
        cloud_cover_pct=_float_or_none(d.get("cloud_cover")),
    )


#: Keys of ``SceneMeta.extra`` read into a record (same names as the record's fields).
SCENE_EXTRA_KEYS = (
    "off_nadir_deg",
    "view_azimuth_deg",
    "sun_azimuth_deg",
    "sun_elevation_deg",
    "cloud_cover_pct",
)


def metadata_from_atomset(atoms: Any, *, gsd_m: float | None = None) -> MetadataRecord:
    """Metadata of an AtomSet's scene; the GSD is its finest band's unless ``gsd_m`` is given."""
    scene = atoms.scene
    if gsd_m is None and atoms.n_bands:
        gsd_m = float(min(b.gsd_m for b in atoms.bands))
    extra = {k: _float_or_none(scene.extra.get(k)) for k in SCENE_EXTRA_KEYS}
    return MetadataRecord.from_datetime(
        scene.datetime,
        gsd_m=gsd_m,
        lon=scene.lon,
        lat=scene.lat,
        sensor_id=scene.sensor_id,
        **extra,
    )


def metadata_to_text(record: MetadataRecord) -> str:
    """The record written as text, missing fields left out.

    >>> metadata_to_text(MetadataRecord(gsd_m=10, lon=11.3, lat=48.1))
    'gsd 10.0 m, lat 48.10 lon 11.30'
    """
    parts = []
    if record.gsd_m is not None:
        parts.append(f"gsd {record.gsd_m:.1f} m")
    if record.date is not None:
        parts.append(f"date {record.date.isoformat()}")
    if record.time_utc is not None:
        parts.append(f"time {record.time_utc.strftime('%H:%M')} utc")
    if record.has_location:
        parts.append(f"lat {record.lat:.2f} lon {record.lon:.2f}")
    if record.sensor_id is not None:
        parts.append(f"sensor {record.sensor_id}")
    if record.off_nadir_deg is not None:
        parts.append(f"off-nadir {record.off_nadir_deg:.1f} deg")
    if record.view_azimuth_deg is not None:
        parts.append(f"view azimuth {record.view_azimuth_deg:.0f} deg")
    if record.sun_azimuth_deg is not None:
        parts.append(f"sun azimuth {record.sun_azimuth_deg:.0f} deg")
    if record.sun_elevation_deg is not None:
        parts.append(f"sun elevation {record.sun_elevation_deg:.0f} deg")
    if record.cloud_cover_pct is not None:
        parts.append(f"cloud {record.cloud_cover_pct:.0f} %")
    return ", ".join(parts)
