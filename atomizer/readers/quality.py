"""Quality masks declared in sensor specs: drop the atoms a product's quality layer flags.

A spec's ``quality`` section names the asset (Sentinel-2 L2A ``SCL``, Landsat ``QA_PIXEL``) and which
class values or bits mean cloud, shadow, cirrus, snow, no data... The layer has its own grid (SCL is
20 m or 60 m under 10 m bands): each atom is mapped to the quality pixel that holds its position,
so bands of every GSD are masked by position, never by resampling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet
from atomizer.errors import ReaderError
from atomizer.sensors.spec import MASK_NAMES, QualityMask, SensorSpec


def parse_mask_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cloud,shadow"`` -> ``("cloud", "shadow")``, checked against :data:`MASK_NAMES`."""
    if not text:
        return ()
    names = tuple(p.strip() for p in (text.split(",") if isinstance(text, str) else text))
    unknown = [n for n in names if n not in MASK_NAMES]
    if unknown or not all(names):
        raise ReaderError(f"unknown mask name(s) {unknown or [text]}; use {', '.join(MASK_NAMES)}")
    return names


def quality_rule(sensor: SensorSpec, names: Sequence[str]) -> QualityMask:
    """The sensor's quality layer, checked to define every flag in ``names``."""
    q = sensor.quality
    if q is None:
        raise ReaderError(
            f"sensor {sensor.id!r} declares no quality layer, so --mask {','.join(names)} cannot be "
            "applied; add a quality: section to its spec or leave the mask out"
        )
    missing = [n for n in names if n not in q.flags]
    if missing:
        raise ReaderError(
            f"sensor {sensor.id!r}'s quality layer has no flag {', '.join(missing)} (it has "
            f"{', '.join(q.flags)}); choose among those"
        )
    return q


def quality_href(rule: QualityMask, assets: dict[str, str], where: str) -> str:
    """The href of the quality asset among ``assets`` (asset key -> href)."""
    by_key = {k.lower(): h for k, h in assets.items()}
    for key in rule.asset_keys:
        if key.lower() in by_key:
            return by_key[key.lower()]
    raise ReaderError(
        f"{where}: no quality asset ({' or '.join(rule.asset_keys)}) to apply the mask; add the "
        "asset to the item or leave the mask out"
    )


def flagged(codes: np.ndarray, rule: QualityMask, names: Sequence[str]) -> np.ndarray:
    """Which quality pixels carry any of the flags ``names``."""
    out = np.zeros(codes.shape, dtype=bool)
    for name in names:
        values = rule.flags[name]
        if rule.encoding == "classes":
            out |= np.isin(codes, values)
        else:
            bits = np.uint64(sum(1 << b for b in values))
            out |= (codes.astype(np.uint64) & bits) != 0
    return out


def drop_flagged(atoms: AtomSet, centre_m: tuple[float, float], href: str, rule: QualityMask,
                 names: Sequence[str], open_files: dict[str, Any] | None = None) -> tuple[AtomSet, int]:
    """``atoms`` without those whose position falls on a flagged quality pixel, and how many went.

    ``centre_m``: the projected position atoms' ``x``, ``y`` are relative to; the quality layer
    must be in the same CRS. Atoms outside the layer's extent are kept.
    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    if len(atoms) == 0:
        return atoms, 0
    with contextlib.ExitStack() as stack:
        try:
            if open_files is not None and href in open_files:
                ds = open_files[href]
            else:
                ds = rasterio.open(href)
                if open_files is not None:
                    open_files[href] = ds
                else:
                    stack.enter_context(ds)
            t = ds.transform
            cols = np.floor((atoms.x.astype(np.float64) + centre_m[0] - t.c) / t.a).astype(np.int64)
            rows = np.floor((atoms.y.astype(np.float64) + centre_m[1] - t.f) / t.e).astype(np.int64)
            inside = (cols >= 0) & (cols < ds.width) & (rows >= 0) & (rows < ds.height)
            if not inside.any():
                return atoms, 0
            c0, c1 = int(cols[inside].min()), int(cols[inside].max()) + 1
            r0, r1 = int(rows[inside].min()), int(rows[inside].max()) + 1
            codes = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
        except RasterioError as exc:
            raise ReaderError(f"quality layer {href}: cannot read it ({exc})") from None
    bad = np.zeros(len(atoms), dtype=bool)
    bad[inside] = flagged(codes, rule, names)[rows[inside] - r0, cols[inside] - c0]
    if not bad.any():
        return atoms, 0
    return atoms.take(np.flatnonzero(~bad)), int(bad.sum())


def mask_item_atoms(source: str, atoms: AtomSet, sensor: SensorSpec, names: Sequence[str],
                    centre_m: tuple[float, float] | None) -> tuple[AtomSet, int]:
    """``atoms`` read from the STAC item ``source`` without those its quality layer flags."""
    from atomizer.readers.base import source_suffix
    from atomizer.readers.stac import asset_infos, load_item

    if source_suffix(source) not in (".json", ".geojson") or centre_m is None:
        raise ReaderError(
            f"{source}: --mask needs a STAC item (whose quality asset holds the flags); "
            "tokenize the item instead of a single file"
        )
    rule = quality_rule(sensor, names)
    item = load_item(source)
    href = quality_href(rule, {a.key: a.href for a in asset_infos(item)}, f"item {item.id!r}")
    return drop_flagged(atoms, centre_m, href, rule, names)
