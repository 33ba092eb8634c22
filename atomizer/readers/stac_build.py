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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomizer.errors import ReaderError
from atomizer.readers.raster import BBOX_DENSIFY_POINTS

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
#: L2A scene classification layer: ``T29UNU_20221005T115411_SCL_60m.jp2``.
SENTINEL2_SCL_FILE = re.compile(r"_SCL(?:_(\d+)m)?\.(jp2|tif|tiff)$", re.IGNORECASE)
#: The ESA product metadata file of a Sentinel-2 L2A product.
SENTINEL2_L2A_MTD = "MTD_MSIL2A.xml"
#: L2A reflectance = (DN + offset) / this, when the metadata gives no BOA_QUANTIFICATION_VALUE.
DEFAULT_BOA_QUANTIFICATION = 10000.0
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
                bounds.append(
                    transform_bounds(
                        ds.crs, "EPSG:4326", *ds.bounds, densify_pts=BBOX_DENSIFY_POINTS
                    )
                )
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


def read_xml(path: str | Path) -> ET.Element:
    """The root element of an XML metadata file; a missing or corrupt file is a ReaderError."""
    path = Path(path)
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise ReaderError(f"{path}: no such metadata file; check the product folder") from None
    except OSError as exc:
        raise ReaderError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        raise ReaderError(
            f"{path}: not valid XML ({exc}); the file is corrupt or truncated, download it again"
        ) from None


@dataclass(frozen=True)
class Sentinel2BandInfo:
    """What ``MTD_MSIL2A.xml`` says about one band."""

    band_id: int
    center_nm: float
    fwhm_nm: float | None
    #: BOA_ADD_OFFSET in DN (processing baseline 04.00 and later: -1000; 0 before).
    add_offset_dn: float = 0.0


@dataclass(frozen=True)
class Sentinel2L2AProduct:
    """A Sentinel-2 L2A product folder: its band files and what ``MTD_MSIL2A.xml`` says.

    ``band_files`` holds the bands the metadata describes (one file each, see
    :func:`read_sentinel2_l2a_product`); reflectance = (DN + ``add_offset_dn``) /
    ``quantification``, DN 0 = no data.
    """

    folder: Path
    mtd_path: Path
    band_files: dict[str, Path]
    scl_file: Path | None
    bands: dict[str, Sentinel2BandInfo]
    quantification: float
    start_time: dt.datetime | None
    spacecraft: str | None
    cloud_cover_pct: float | None
    product_uri: str | None = None
    processing_baseline: str | None = None
    product_type: str | None = None
    resolution_m: dict[str, float] = field(default_factory=dict)


def _resolution(match: re.Match[str], group: int) -> float | None:
    return float(match.group(group)) if match.group(group) else None


def read_sentinel2_l2a_product(
    folder: str | Path, *, resolution_m: float | None = None
) -> Sentinel2L2AProduct:
    """Band files and ``MTD_MSIL2A.xml`` metadata of a Sentinel-2 L2A product folder.

    Band files are named ``*_B04_60m.jp2`` (or ``*_B04.tif``); with ``resolution_m`` only files of
    that resolution count, otherwise a band found at several resolutions takes its finest file.
    A missing or corrupt metadata file is a :class:`~atomizer.errors.ReaderError`.
    """
    folder = Path(folder)
    mtd_path = folder / SENTINEL2_L2A_MTD
    if not mtd_path.is_file():
        raise ReaderError(
            f"{folder}: no {SENTINEL2_L2A_MTD}; is this a Sentinel-2 L2A product folder?"
        )
    root = read_xml(mtd_path)
    try:
        quantification = float(
            _text(root, "BOA_QUANTIFICATION_VALUE") or DEFAULT_BOA_QUANTIFICATION
        )
        offsets = {
            int(n.get("band_id", -1)): float(n.text or 0) for n in root.iter("BOA_ADD_OFFSET")
        }
        bands = {}
        for info in root.iter("Spectral_Information"):
            band_id = int(info.get("bandId", -1))
            name = re.sub(r"^B(\d)$", r"B0\1", info.get("physicalBand", ""))
            bands[name] = Sentinel2BandInfo(
                band_id=band_id,
                center_nm=float(_text(info, "Wavelength/CENTRAL") or "nan"),
                fwhm_nm=_fwhm_nm(info),
                add_offset_dn=offsets.get(band_id, 0.0),
            )
        cloud_text = _text(root, "Cloud_Coverage_Assessment")
        cloud = float(cloud_text) if cloud_text else None
        start = _text(root, "PRODUCT_START_TIME")
        when = dt.datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    except ValueError as exc:
        raise ReaderError(f"{mtd_path}: unexpected metadata value ({exc})") from None
    band_files: dict[str, Path] = {}
    resolutions: dict[str, float] = {}
    scl = None
    for path in sorted(folder.iterdir()):
        m = SENTINEL2_BAND_FILE.search(path.name)
        if m and m.group(1).upper() in bands:
            name, res = m.group(1).upper(), _resolution(m, 2)
            if resolution_m is not None and res != resolution_m:
                continue
            if name not in band_files or (res or 0.0) < resolutions.get(name, float("inf")):
                band_files[name] = path
                if res is not None:
                    resolutions[name] = res
            continue
        m = SENTINEL2_SCL_FILE.search(path.name)
        if m and (resolution_m is None or _resolution(m, 1) == resolution_m) and scl is None:
            scl = path
    return Sentinel2L2AProduct(
        folder=folder,
        mtd_path=mtd_path,
        band_files=band_files,
        scl_file=scl,
        bands=bands,
        quantification=quantification,
        start_time=when,
        spacecraft=_text(root, "SPACECRAFT_NAME"),
        cloud_cover_pct=cloud,
        product_uri=_text(root, "PRODUCT_URI"),
        processing_baseline=_text(root, "PROCESSING_BASELINE"),
        product_type=_text(root, "PRODUCT_TYPE"),
        resolution_m=resolutions,
    )


def sentinel2_l2a_item(folder: str | Path, *, item_id: str | None = None) -> Any:
    """A STAC item for a folder of Sentinel-2 L2A band files plus ``MTD_MSIL2A.xml``.

    Scale, offset and no-data come from the product metadata: reflectance =
    (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, DN 0 = no data. The scene classification
    layer (SCL) is added with role ``data`` but no band metadata, as catalogues do.
    """
    product = read_sentinel2_l2a_product(folder)
    q = product.quantification
    assets: dict[str, Path] = {}
    fields: dict[str, dict[str, Any]] = {}
    for name, path in product.band_files.items():
        info = product.bands[name]
        eo = {
            "name": name,
            "common_name": SENTINEL2_COMMON_NAMES.get(name),
            "center_wavelength": info.center_nm / NM_PER_UM,
        }
        if info.fwhm_nm is not None:
            eo["full_width_half_max"] = info.fwhm_nm / NM_PER_UM
        raster = {
            "nodata": 0,
            "data_type": "uint16",
            "scale": 1.0 / q,
            "offset": info.add_offset_dn / q,
        }
        if name in product.resolution_m:
            raster["spatial_resolution"] = product.resolution_m[name]
        assets[name] = path
        fields[name] = {"eo:bands": [eo], "raster:bands": [raster]}
    if not assets:
        raise ReaderError(f"{product.folder}: no Sentinel-2 band files (*_B04_60m.jp2, ...) found")
    if product.scl_file is not None:
        assets["SCL"] = product.scl_file
        fields["SCL"] = {"raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
    if product.start_time is None:
        raise ReaderError(f"{product.mtd_path}: no PRODUCT_START_TIME")
    properties = {
        "platform": (product.spacecraft or "Sentinel-2").lower(),
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "s2:processing_baseline": product.processing_baseline,
        "s2:product_type": product.product_type,
    }
    uri = product.product_uri or product.folder.name
    return build_stac_item(
        item_id or uri.removesuffix(".SAFE"),
        assets,
        datetime=product.start_time,
        properties=properties,
        asset_fields=fields,
    )
