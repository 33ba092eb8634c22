"""Which sensor took a STAC item: spec hints against item properties, then band fit.

Every registered spec whose ``stac`` hints (or ``platforms``) claim the item's ``platform`` or
``constellation`` is a candidate; among the best-scoring candidates the one the assets fit best
wins (e.g. an L2A item without a B10 asset picks ``sentinel2a-l2a`` over ``sentinel2a``). When no
spec claims the item but its assets carry full band metadata (centre and FWHM), a spec is built
from the item itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from atomizer.errors import BandMatchError, ReaderError
from atomizer.limits import clip_text
from atomizer.readers.matching import AssetInfo, ItemBand, candidate_fit
from atomizer.sensors.spec import Band, SensorSpec

#: Points a spec scores for claiming the item's platform, constellation, instrument.
PLATFORM_SCORE = 4
CONSTELLATION_SCORE = 2
INSTRUMENT_SCORE = 1
#: GSD (m) given to bands of a spec built from an item when nothing says better; the file's
#: geotransform replaces it when the band is read.
PLACEHOLDER_GSD_M = 1.0


def _lower_set(values: Any) -> set[str]:
    if values is None:
        return set()
    if isinstance(values, str):
        return {values.lower()}
    return {str(v).lower() for v in values}


def hint_score(spec: SensorSpec, properties: Mapping[str, Any]) -> int:
    """How strongly ``spec`` claims an item with these properties (0: not at all)."""
    platforms = _lower_set(spec.stac.platform) | _lower_set(spec.platforms)
    score = 0
    if _lower_set(properties.get("platform")) & platforms:
        score += PLATFORM_SCORE
    if _lower_set(properties.get("constellation")) & _lower_set(spec.stac.constellation):
        score += CONSTELLATION_SCORE
    instruments = _lower_set(spec.stac.instruments) | _lower_set(spec.instrument)
    if _lower_set(properties.get("instruments")) & instruments:
        score += INSTRUMENT_SCORE
    return score if score >= CONSTELLATION_SCORE else 0


def _identity(properties: Mapping[str, Any]) -> str:
    parts = [
        f"{k}={clip_text(repr(properties[k]), max_chars=80)}"
        for k in ("platform", "constellation", "instruments")
        if properties.get(k)
    ]
    return ", ".join(parts) if parts else "no platform, constellation or instruments"


def detect_sensor(
    properties: Mapping[str, Any],
    assets: Sequence[AssetInfo],
    specs: Iterable[SensorSpec],
    *,
    source: str,
    item_id: str,
) -> tuple[SensorSpec, str]:
    """The spec for an item and how it was chosen; see the module docstring."""
    specs = list(specs)
    scores = [(hint_score(s, properties), s) for s in specs]
    top = max((sc for sc, _ in scores), default=0)
    if top > 0:
        tied = [s for sc, s in scores if sc == top]
        ranked = candidate_fit(assets, tied)
        if len(ranked) > 1 and ranked[0][1].fit() == ranked[1][1].fit():
            same = [s.id for s, r in ranked if r.fit() == ranked[0][1].fit()]
            raise BandMatchError(
                f"{source}: item {clip_text(item_id, max_chars=80)!r} ({_identity(properties)}) fits sensors "
                f"{', '.join(same)} equally well; choose one with --sensor"
            )
        return ranked[0][0], f"detected from item properties ({_identity(properties)})"
    described = [
        ib for a in assets if a.is_raster and not a.is_non_data for ib in a.bands if ib.spectral
    ]
    if described and all(ib.center_nm is not None and ib.fwhm_nm is not None for ib in described):
        return spec_from_item(
            properties, assets, item_id=item_id, source=source
        ), "item band metadata"
    detail = (
        "some assets lack centre wavelengths or widths"
        if described
        else "its assets carry no band metadata (bands / eo:bands)"
    )
    raise BandMatchError(
        f"{source}: cannot tell which sensor took item {clip_text(item_id, max_chars=80)!r}: no registered sensor claims "
        f"it ({_identity(properties)}) and {detail}; pass --sensor ID (see `atomizer sensors list`)"
    )


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "stac-item"


def _band_from_item(asset: AssetInfo, ib: ItemBand, name: str, gsd_m: float) -> Band:
    fields: dict[str, Any] = {
        "name": name,
        "center_wavelength_nm": ib.center_nm,
        "fwhm_nm": ib.fwhm_nm,
        "gsd_m": gsd_m,
        "asset_keys": [asset.key],
    }
    if ib.nodata and len(ib.nodata) == 1 and ib.nodata[0] == ib.nodata[0]:
        fields["nodata"] = ib.nodata[0]
    if ib.scale is not None:
        fields["scale"] = ib.scale
    if ib.offset is not None:
        fields["offset"] = ib.offset
    try:
        return Band(**fields, common_name=ib.common_name) if ib.common_name else Band(**fields)
    except ValidationError:
        try:  # an unknown or inconsistent common name is not worth failing for
            return Band(**fields)
        except ValidationError as exc:
            msg = "; ".join(e["msg"] for e in exc.errors())
            raise ReaderError(f"asset {asset.key!r} band {name}: {msg}") from None


def spec_from_item(
    properties: Mapping[str, Any], assets: Sequence[AssetInfo], *, item_id: str, source: str
) -> SensorSpec:
    """A sensor spec built from the item's own band metadata (for sensors no spec describes)."""
    bands: list[Band] = []
    names: set[str] = set()
    item_gsd = properties.get("gsd")
    for asset in assets:
        if not asset.is_raster or asset.is_non_data:
            continue
        for ib in asset.bands:
            if not ib.spectral:
                continue
            name = ib.name or (asset.key if len(asset.bands) == 1 else f"{asset.key}_{ib.index}")
            if name in names:
                name = f"{asset.key}_{name}"
            names.add(name)
            gsd = asset.gsd_m or (float(item_gsd) if item_gsd else PLACEHOLDER_GSD_M)
            bands.append(_band_from_item(asset, ib, name, gsd))
    label = properties.get("platform") or properties.get("constellation") or item_id
    try:
        return SensorSpec(
            id=_slug(str(label)),
            name=f"{clip_text(label, max_chars=80)} (from the band metadata of STAC item "
            f"{clip_text(item_id, max_chars=80)})",
            sources=[f"STAC item {item_id} ({source})"],
            bands=bands,
        )
    except ValidationError as exc:
        msg = "; ".join(e["msg"] for e in exc.errors())
        raise ReaderError(
            f"{source}: cannot build a sensor from the item's band metadata: {msg}"
        ) from None
