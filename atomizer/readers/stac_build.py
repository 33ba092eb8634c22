"""Building STAC Items for rasters on disk, so that any folder of band files can be tokenized.

:func:`build_stac_item` makes an item from ``{asset key: raster path}`` (footprint, bbox and
projection taken from the rasters themselves); :func:`sentinel2_l2a_item` does it for a Sentinel-2
L2A product folder (``*_B04_60m.jp2`` files + ``MTD_MSIL2A.xml``), with ``eo:bands`` wavelengths
from the ESA metadata and ``raster:bands`` scale / offset / no-data from its quantification values.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomizer.errors import ReaderError

#: Sentinel-2 band names and their STAC common names.
SENTINEL2_COMMON_NAMES = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge071",
    "B06": "rededge075",
    "B07": "rededge078",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
}
#: L2A band files: ``T29UNU_20221005T115411_B04_60m.jp2`` (also ``..._B04.tif``).
SENTINEL2_BAND_FILE = re.compile(r"_(B\d[\dA])(?:_(\d+)m)?\.(jp2|tif|tiff)$", re.IGNORECASE)
#: Fraction of the peak that defines the full width at half maximum.
HALF_MAXIMUM = 0.5
NM_PER_UM = 1000.0


def media_type_of(path: str | Path) -> str:
    suffix = Path(str(path)).suffix.lower()
    return {
        ".tif": "image/tiff; application=geotiff",
        ".tiff": "image/tiff; application=geotiff",
        ".jp2": "image/jp2",
        ".vrt": "application/xml; application=vrt",
    }.get(suffix, "application/octet-stream")


def build_stac_item(
    item_id: str,
    assets: Mapping[str, str | Path],
    *,
    datetime: dt.datetime,
    properties: Mapping[str, Any] | None = None,
    asset_fields: Mapping[str, Mapping[str, Any]] | None = None,
    roles: tuple[str, ...] = ("data",),
) -> Any:
    """A ``pystac.Item`` whose assets are the rasters ``assets`` (key -> path), footprint from them.

    ``asset_fields`` adds fields to assets (``eo:bands``, ``raster:bands``, ``bands``, ``roles``).
    Hrefs are absolute paths; save the item anywhere.
    """
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds

    if not assets:
        raise ReaderError(f"item {item_id!r}: give at least one asset")
    bounds, crs = [], None
    shapes: dict[str, dict[str, Any]] = {}
    for key, path in assets.items():
        try:
            with rasterio.open(path) as ds:
                crs = crs or ds.crs
                bounds.append(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))
                shapes[key] = {
                    "proj:shape": [ds.height, ds.width],
                    "proj:transform": list(ds.transform)[:6],
                }
        except rasterio.errors.RasterioError as exc:
            raise ReaderError(f"asset {key!r}: cannot open {path} ({exc})") from None
    west, south = min(b[0] for b in bounds), min(b[1] for b in bounds)
    east, north = max(b[2] for b in bounds), max(b[3] for b in bounds)
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[west, south], [east, south], [east, north], [west, north], [west, south]]
        ],
    }
    props = dict(properties or {})
    if crs is not None and crs.to_epsg():
        props.setdefault("proj:code", f"EPSG:{crs.to_epsg()}")
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[west, south, east, north],
        datetime=datetime,
        properties=props,
    )
    for key, path in assets.items():
        fields = {**shapes[key], **dict((asset_fields or {}).get(key, {}))}
        asset_roles = fields.pop("roles", list(roles))
        item.add_asset(
            key,
            pystac.Asset(
                href=str(Path(path).resolve()),
                media_type=media_type_of(path),
                roles=list(asset_roles),
                extra_fields=fields,
            ),
        )
    return item


def _text(root: ET.Element, tag: str) -> str | None:
    node = root.find(f".//{tag}")
    return node.text.strip() if node is not None and node.text else None


def _fwhm_nm(info: ET.Element) -> float | None:
    """FWHM from the tabulated spectral response (samples at or above half the peak)."""
    values_text = _text(info, "Spectral_Response/VALUES")
    step_text = _text(info, "Spectral_Response/STEP")
    if not values_text or not step_text:
        return None
    values = [float(v) for v in values_text.split()]
    peak = max(values)
    above = [i for i, v in enumerate(values) if v >= HALF_MAXIMUM * peak]
    return (above[-1] - above[0] + 1) * float(step_text) if above else None


def sentinel2_l2a_item(folder: str | Path, *, item_id: str | None = None) -> Any:
    """A STAC item for a folder of Sentinel-2 L2A band files plus ``MTD_MSIL2A.xml``.

    Scale, offset and no-data come from the product metadata: reflectance =
    (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, DN 0 = no data. Non-band files (SCL, TCI,
    ...) are added with role ``data`` but no band metadata, as catalogues do.
    """
    folder = Path(folder)
    mtd_path = folder / "MTD_MSIL2A.xml"
    if not mtd_path.is_file():
        raise ReaderError(f"{folder}: no MTD_MSIL2A.xml; is this a Sentinel-2 L2A product folder?")
    root = ET.parse(mtd_path).getroot()
    quantification = float(_text(root, "BOA_QUANTIFICATION_VALUE") or 10000.0)
    offsets = {int(n.get("band_id", -1)): float(n.text or 0) for n in root.iter("BOA_ADD_OFFSET")}
    spectral = {}
    for info in root.iter("Spectral_Information"):
        band_id = int(info.get("bandId", -1))
        name = info.get("physicalBand", "")
        name = re.sub(r"^B(\d)$", r"B0\1", name)
        spectral[name] = (
            band_id,
            float(_text(info, "Wavelength/CENTRAL") or "nan"),
            _fwhm_nm(info),
        )
    assets: dict[str, Path] = {}
    fields: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        m = SENTINEL2_BAND_FILE.search(path.name)
        if m and m.group(1).upper() in spectral:
            name = m.group(1).upper()
            band_id, center_nm, fwhm_nm = spectral[name]
            eo = {
                "name": name,
                "common_name": SENTINEL2_COMMON_NAMES.get(name),
                "center_wavelength": center_nm / NM_PER_UM,
            }
            if fwhm_nm is not None:
                eo["full_width_half_max"] = fwhm_nm / NM_PER_UM
            raster = {
                "nodata": 0,
                "data_type": "uint16",
                "scale": 1.0 / quantification,
                "offset": offsets.get(band_id, 0.0) / quantification,
            }
            if m.group(2):
                raster["spatial_resolution"] = float(m.group(2))
            assets[name] = path
            fields[name] = {"eo:bands": [eo], "raster:bands": [raster]}
        elif path.suffix.lower() in (".jp2", ".tif", ".tiff") and "_SCL" in path.name.upper():
            assets["SCL"] = path
            fields["SCL"] = {"raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
    if not assets:
        raise ReaderError(f"{folder}: no Sentinel-2 band files (*_B04_60m.jp2, ...) found")
    start = _text(root, "PRODUCT_START_TIME")
    when = dt.datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    if when is None:
        raise ReaderError(f"{mtd_path}: no PRODUCT_START_TIME")
    spacecraft = (_text(root, "SPACECRAFT_NAME") or "Sentinel-2").lower()
    uri = _text(root, "PRODUCT_URI") or folder.name
    properties = {
        "platform": spacecraft,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "s2:processing_baseline": _text(root, "PROCESSING_BASELINE"),
        "s2:product_type": _text(root, "PRODUCT_TYPE"),
    }
    return build_stac_item(
        item_id or uri.removesuffix(".SAFE"),
        assets,
        datetime=when,
        properties=properties,
        asset_fields=fields,
    )
