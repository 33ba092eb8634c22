"""Matching a STAC item's assets (and the bands inside them) to the bands of a sensor spec.

Band metadata is read from the raw asset fields, so it works whatever pystac extension packages are
installed: STAC 1.1 ``bands`` (``eo:center_wavelength``, ``eo:common_name``, ``nodata``, ``scale`` /
``raster:scale``...), or the legacy ``eo:bands`` + ``raster:bands`` pair. STAC's ``eo`` wavelengths
are micrometres; they become nanometres here, at the boundary, and a value that looks like a unit
slip is an error. A band is matched by name, then common name (nearest centre when several spec
bands share it), then asset key, then centre wavelength.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from atomizer.errors import BandMatchError, ReaderError
from atomizer.limits import clip_text
from atomizer.readers.base import BandMetadataWarning, normalise_band_name, source_suffix
from atomizer.sensors.spec import Band, SensorSpec

#: Plausible centre wavelengths in a STAC ``eo`` field, in micrometres.
MICROMETRE_RANGE = (0.3, 15.0)
#: Nanometre range: an ``eo`` value in it was almost certainly written in nm by mistake.
NANOMETRE_RANGE = (300.0, 15000.0)
NM_PER_UM = 1000.0
#: Item and spec centre wavelengths further apart than this (nm) trigger a warning.
CENTER_TOLERANCE_NM = 15.0
#: Item and spec FWHMs whose ratio exceeds this factor trigger a warning.
FWHM_RATIO_TOLERANCE = 2.0
#: Beyond this centre-wavelength gap (and two FWHM) a name match is refused: it is another band.
CONTRADICTION_NM = 3 * CENTER_TOLERANCE_NM
#: Assets with only these roles are never data (unless one of their bands matches by name).
NON_DATA_ROLES = frozenset({"thumbnail", "overview", "visual", "metadata"})
#: Media-type fragments and file suffixes of rasters GDAL reads.
RASTER_MEDIA_HINTS = ("tiff", "jp2", "geotiff", "x-hdf", "netcdf", "vrt", "x-envi")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc", ".hdf", ".h5", ".bil", ".dat")

#: How a band was matched, best first (used to rank two assets that hold the same band).
MATCH_KINDS = ("band name", "common name", "asset key", "centre wavelength")


@dataclass(frozen=True)
class ItemBand:
    """What an item says about one band of an asset (wavelengths already in nm)."""

    index: int  # 1-based band index in the asset's file
    name: str | None = None
    common_name: str | None = None
    center_nm: float | None = None
    fwhm_nm: float | None = None
    nodata: tuple[float, ...] = ()
    scale: float | None = None
    offset: float | None = None
    scale_from: str | None = None

    @property
    def spectral(self) -> bool:
        """Whether the entry says which band it is (a name, a common name or a wavelength)."""
        return bool(self.name or self.common_name or self.center_nm is not None)

    def describe(self) -> str:
        bits = [self.name or f"band {self.index}"]
        if self.common_name:
            bits.append(self.common_name)
        if self.center_nm is not None:
            bits.append(f"{self.center_nm:g} nm")
        return ", ".join(bits)


@dataclass(frozen=True)
class AssetInfo:
    """One asset of an item: where it is, what it is, the bands it declares."""

    key: str
    href: str
    media_type: str | None = None
    roles: tuple[str, ...] = ()
    bands: tuple[ItemBand, ...] = ()
    gsd_m: float | None = None

    @property
    def is_raster(self) -> bool:
        if self.media_type:
            return any(h in self.media_type.lower() for h in RASTER_MEDIA_HINTS)
        return source_suffix(self.href) in RASTER_SUFFIXES

    @property
    def is_non_data(self) -> bool:
        roles = {r.lower() for r in self.roles}
        return bool(roles & NON_DATA_ROLES) and "data" not in roles


@dataclass
class Match:
    """A spec band found in an asset."""

    band: Band
    asset: AssetInfo
    index: int  # 1-based band index in the asset's file
    matched_by: str
    item_band: ItemBand | None = None

    def rank(self) -> tuple[int, int, int, int]:
        key_is_band = normalise_band_name(self.asset.key) in _band_keys(self.band)
        tiff = "tif" in (self.asset.media_type or source_suffix(self.asset.href))
        return (
            MATCH_KINDS.index(self.matched_by),
            0 if len(self.asset.bands) <= 1 else 1,
            0 if key_is_band else 1,
            0 if tiff else 1,
        )


@dataclass
class MatchResult:
    """The outcome of matching an item to a spec; errors are raised by :func:`require_complete`."""

    spec: SensorSpec
    matches: list[Match] = field(default_factory=list)  # in spec band order
    ignored: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unmatched: list[tuple[AssetInfo, ItemBand | None]] = field(default_factory=list)

    def fit(self) -> tuple[int, int, int]:
        """Higher is better: no unmatched spectral asset, more matched bands, fewer missing."""
        return (0 if self.unmatched else 1, len(self.matches), -len(self.missing))


# --- reading band metadata ------------------------------------------------------------------------
def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _nodata_values(value: Any) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        named = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
        return (named[value.lower()],) if value.lower() in named else ()
    number = _float(value)
    return () if number is None else (number,)


def wavelengths_nm(center_um: Any, fwhm_um: Any, where: str) -> tuple[float | None, float | None]:
    """STAC ``eo`` micrometres -> nanometres, refusing values that look like a unit slip."""
    center, fwhm = _float(center_um), _float(fwhm_um)
    lo, hi = MICROMETRE_RANGE
    if center is not None and not (lo <= center <= hi):
        hint = ""
        if NANOMETRE_RANGE[0] <= center <= NANOMETRE_RANGE[1]:
            hint = (
                f"; it looks like nanometres: STAC eo wavelengths are micrometres, write "
                f"{center / NM_PER_UM:g}"
            )
        raise ReaderError(
            f"{where}: centre wavelength {center:g} is not a plausible number of micrometres "
            f"({lo:g}-{hi:g} um){hint}"
        )
    if fwhm is not None:
        if not fwhm > 0:
            raise ReaderError(f"{where}: full_width_half_max {fwhm:g} must be > 0 (micrometres)")
        if center is not None and fwhm >= center:
            raise ReaderError(
                f"{where}: full_width_half_max {fwhm:g} is not below the centre {center:g}; both "
                "are micrometres in STAC eo (a unit slip? e.g. a FWHM written in nm)"
            )
    return (
        None if center is None else center * NM_PER_UM,
        None if fwhm is None else fwhm * NM_PER_UM,
    )


def _entry(
    index: int, eo: Mapping[str, Any], raster: Mapping[str, Any], where: str, stac11: bool
) -> ItemBand:
    prefix = "eo:" if stac11 else ""
    name = eo.get("name")
    center, fwhm = wavelengths_nm(
        eo.get(f"{prefix}center_wavelength"),
        eo.get(f"{prefix}full_width_half_max"),
        f"{where} band {name or index}",
    )
    scale = _float(raster.get("raster:scale", raster.get("scale")))
    offset = _float(raster.get("raster:offset", raster.get("offset")))
    origin = "STAC bands" if stac11 else "raster:bands"
    return ItemBand(
        index=index,
        name=str(name) if name else None,
        common_name=eo.get(f"{prefix}common_name") or eo.get("common_name"),
        center_nm=center,
        fwhm_nm=fwhm,
        nodata=_nodata_values(raster.get("nodata")),
        scale=scale,
        offset=offset,
        scale_from=origin if (scale is not None or offset is not None) else None,
    )


def item_bands(fields: Mapping[str, Any], where: str) -> tuple[ItemBand, ...]:
    """The bands an asset declares: STAC 1.1 ``bands``, or ``eo:bands`` + ``raster:bands``."""
    bands = fields.get("bands")
    if isinstance(bands, list) and bands:
        return tuple(
            _entry(i + 1, b, b, where, stac11=True)
            for i, b in enumerate(bands)
            if isinstance(b, Mapping)
        )
    eo = fields.get("eo:bands") or []
    raster = fields.get("raster:bands") or []
    if not isinstance(eo, list) or not isinstance(raster, list):
        raise ReaderError(f"{where}: eo:bands and raster:bands must be lists")
    n = max(len(eo), len(raster))
    return tuple(
        _entry(
            i + 1,
            eo[i] if i < len(eo) and isinstance(eo[i], Mapping) else {},
            raster[i] if i < len(raster) and isinstance(raster[i], Mapping) else {},
            where,
            stac11=False,
        )
        for i in range(n)
    )


# --- matching ---------------------------------------------------------------------------------
def _band_keys(band: Band) -> set[str]:
    return {normalise_band_name(band.name), *(normalise_band_name(k) for k in band.asset_keys)}


def _by_common_name(spec: SensorSpec, common: str, center_nm: float | None) -> Band | None:
    found = [b for b in spec.bands if (b.common_name or "").lower() == common.lower()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1 and center_nm is not None:
        return min(found, key=lambda b: abs(b.center_wavelength_nm - center_nm))
    return None


def _by_key(spec: SensorSpec, key: str) -> Band | None:
    norm = normalise_band_name(key)
    for b in spec.bands:
        if norm in _band_keys(b):
            return b
    common = [b for b in spec.bands if b.common_name and normalise_band_name(b.common_name) == norm]
    return common[0] if len(common) == 1 else None


def _by_wavelength(spec: SensorSpec, center_nm: float) -> Band | None:
    best = min(spec.bands, key=lambda b: abs(b.center_wavelength_nm - center_nm))
    return best if abs(best.center_wavelength_nm - center_nm) <= CENTER_TOLERANCE_NM else None


def contradicts(band: Band, ib: ItemBand | None) -> bool:
    """Whether the item's own wavelength rules ``band`` out, whatever the names say.

    A centre more than :data:`CONTRADICTION_NM` away from the spec's and more than two FWHM away is
    another band (Sentinel-2's ``B05`` at 704 nm is not Landsat 8's ``B5`` at 865 nm); smaller
    disagreements only warn (:func:`warn_disagreements`).
    """
    if ib is None or ib.center_nm is None:
        return False
    gap = abs(ib.center_nm - band.center_wavelength_nm)
    return gap > CONTRADICTION_NM and gap > 2 * band.fwhm_nm


def match_band(spec: SensorSpec, asset: AssetInfo, ib: ItemBand | None) -> tuple[Band, str] | None:
    """The spec band an asset band is, and how that was decided (``None``: no match).

    Names, common names and asset keys decide first, unless the item's wavelength contradicts
    them; then the nearest centre wavelength within :data:`CENTER_TOLERANCE_NM` decides.
    """
    if ib is not None and ib.name:
        norm = normalise_band_name(ib.name)
        for b in spec.bands:
            if norm in _band_keys(b) and not contradicts(b, ib):
                return b, "band name"
    if ib is not None and ib.common_name:
        found = _by_common_name(spec, ib.common_name, ib.center_nm)
        if found is not None and not contradicts(found, ib):
            return found, "common name"
    if len(asset.bands) <= 1:
        found = _by_key(spec, asset.key)
        if found is not None and not contradicts(found, ib):
            return found, "asset key"
    if ib is not None and ib.center_nm is not None:
        found = _by_wavelength(spec, ib.center_nm)
        if found is not None:
            return found, "centre wavelength"
    return None


def match_assets(
    assets: Sequence[AssetInfo], spec: SensorSpec, *, select: Sequence[str] | None = None
) -> MatchResult:
    """Match every asset band to a spec band; keeps the best asset when several hold one band."""
    result = MatchResult(spec=spec)
    best: dict[str, Match] = {}
    for asset in assets:
        if not asset.is_raster:
            result.ignored[asset.key] = f"not a raster ({asset.media_type or asset.href})"
            continue
        entries: Sequence[ItemBand | None] = asset.bands or (None,)
        spectral = any(e is not None and e.spectral for e in entries)
        if asset.is_non_data and not spectral:
            result.ignored[asset.key] = f"roles {', '.join(asset.roles)}"
            continue
        found_any = False
        for i, ib in enumerate(entries):
            hit = match_band(spec, asset, ib)
            if hit is None:
                if ib is not None and ib.spectral and not asset.is_non_data:
                    result.unmatched.append((asset, ib))
                continue
            found_any = True
            m = Match(
                band=hit[0],
                asset=asset,
                index=ib.index if ib else i + 1,
                matched_by=hit[1],
                item_band=ib,
            )
            prev = best.get(m.band.name)
            if prev is None or m.rank() < prev.rank():
                if prev is not None:
                    result.ignored[prev.asset.key] = (
                        f"also holds {m.band.name}, read from {asset.key!r}"
                    )
                best[m.band.name] = m
            else:
                result.ignored[asset.key] = (
                    f"also holds {m.band.name}, read from {prev.asset.key!r}"
                )
        if not found_any and not spectral and asset.key not in result.ignored:
            result.ignored[asset.key] = "no band metadata, and its key names no band of the spec"
    wanted = [spec.band(n).name for n in select] if select is not None else spec.band_names
    for name in wanted:
        if name in best:
            result.matches.append(best[name])
        else:
            result.missing.append(name)
    for name, m in best.items():
        if name not in wanted:
            result.ignored.setdefault(
                m.asset.key, f"holds {name}, which is not among the bands asked for"
            )
    if select is not None:
        for asset, ib in result.unmatched:
            result.ignored.setdefault(
                asset.key, f"{ib.describe() if ib else 'its band'} matches no band of the spec"
            )
    for key in {m.asset.key for m in result.matches}:
        result.ignored.pop(key, None)
    return result


def expected_bands(spec: SensorSpec) -> str:
    """``B01 (coastal, 443 nm), B02 (blue, 490 nm), ...`` for error messages."""
    return ", ".join(
        f"{b.name} ({b.common_name + ', ' if b.common_name else ''}{b.center_wavelength_nm:g} nm)"
        for b in spec.bands
    )


def require_complete(result: MatchResult, source: str, *, selected: bool) -> None:
    """Raise when an asset matches nothing, or nothing (or not all that was asked for) matched."""
    spec = result.spec
    if result.unmatched and not selected:
        asset, ib = result.unmatched[0]
        others = len(result.unmatched) - 1
        more = f" (and {others} more asset band(s))" if others else ""
        raise BandMatchError(
            f"{source}: asset {clip_text(asset.key, max_chars=80)!r} ({ib.describe() if ib else 'no band metadata'}){more} "
            f"matches no band of sensor {spec.id!r}, which expects {expected_bands(spec)}; "
            "pass the "
            "right sensor with --sensor, or read only some bands with --bands"
        )
    if selected and result.missing:
        raise BandMatchError(
            f"{source}: no asset holds band(s) {', '.join(result.missing)} of sensor {spec.id!r}; "
            "the item's assets are " + ", ".join(sorted(result.ignored) or ["none usable"])
        )
    if not result.matches:
        raise BandMatchError(
            f"{source}: no asset matches a band of sensor {spec.id!r} (it expects "
            f"{expected_bands(spec)}); ignored assets: "
            + "; ".join(f"{k}: {v}" for k, v in sorted(result.ignored.items()))
            + ". Check --sensor, or add band metadata (bands / eo:bands) to the item"
        )


def warn_disagreements(result: MatchResult, source: str) -> list[str]:
    """Warn (:class:`BandMetadataWarning`) where the item's wavelengths disagree with the spec's."""
    messages: list[str] = []
    for m in result.matches:
        ib, b = m.item_band, m.band
        if ib is None:
            continue
        where = f"{source}: asset {m.asset.key!r} band {ib.name or ib.index}"
        if (
            ib.center_nm is not None
            and abs(ib.center_nm - b.center_wavelength_nm) > CENTER_TOLERANCE_NM
        ):
            messages.append(
                f"{where}: the item gives a centre wavelength of {ib.center_nm:g} nm but sensor "
                f"{result.spec.id!r} band {b.name} has {b.center_wavelength_nm:g} nm "
                f"({abs(ib.center_nm - b.center_wavelength_nm):.1f} nm apart, more than "
                f"{CENTER_TOLERANCE_NM:g} nm); the atoms use the spec's value"
            )
        if ib.fwhm_nm is not None:
            ratio = max(ib.fwhm_nm, b.fwhm_nm) / min(ib.fwhm_nm, b.fwhm_nm)
            if ratio > FWHM_RATIO_TOLERANCE:
                messages.append(
                    f"{where}: the item gives a FWHM of {ib.fwhm_nm:g} nm but sensor "
                    f"{result.spec.id!r} band {b.name} has {b.fwhm_nm:g} nm (a factor {ratio:.1f} "
                    f"apart, more than {FWHM_RATIO_TOLERANCE:g}); the atoms use the spec's value"
                )
    for msg in messages:
        warnings.warn(msg, BandMetadataWarning, stacklevel=3)
    return messages


def candidate_fit(
    assets: Sequence[AssetInfo], specs: Iterable[SensorSpec]
) -> list[tuple[SensorSpec, MatchResult]]:
    """Each spec with how well the assets fit it (best first)."""
    scored = [(s, match_assets(assets, s)) for s in specs]
    return sorted(scored, key=lambda sr: sr[1].fit(), reverse=True)
