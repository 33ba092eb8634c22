"""One item's chips: each label's square footprint read on every band's NATIVE grid.

The item's files are opened once for their grids (:func:`~atomizer.readers.raster.plan_sources`),
then each chip is a rasterio window per band of the chip's footprint (the reader's own window
arithmetic and pixel reduction), with positions in metres from the label's point. Files stay open
across the chips of one item; nothing reads a whole scene.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import AtomizerError, ReaderError
from atomizer.readers.pixels import read_atoms, single_thread_decoding
from atomizer.readers.raster import BandPlan, _index_range, plan_sources
from atomizer.sensors.spec import SensorSpec


@dataclass
class ChipRequest:
    """What one task reads: an item (its STAC JSON), its sensor, and the labels to cut chips at."""

    item: dict[str, Any]
    sensor: SensorSpec
    labels: list[dict[str, Any]]  # index, lon, lat, value, datetime (ISO or None)
    chip_m: float
    bands: tuple[str, ...] | None = None
    mask: tuple[str, ...] = ()
    min_atoms: int = 1
    skip_other_assets: bool = False  # a given sensor: assets none of its bands match are ignored


@dataclass
class ItemChips:
    chips: list[AtomSet] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _sources(req: ChipRequest) -> tuple[Any, list[Any], dict[str, str]]:
    import pystac

    from atomizer.readers.matching import match_assets
    from atomizer.readers.stac import asset_infos, item_datetime, item_sources

    item = pystac.Item.from_dict(req.item, preserve_dict=True)
    assets = asset_infos(item)
    select = req.bands
    if select is None and req.skip_other_assets:
        select = tuple(m.band.name for m in match_assets(assets, req.sensor).matches) or None
    sources, _, _ = item_sources(assets, req.sensor, select, f"item {item.id!r}")
    return item_datetime(item), sources, {a.key: a.href for a in assets}


def read_item_chips(req: ChipRequest) -> ItemChips:
    """Every label's chip of one item; a label whose chip is empty or outside is skipped with why.

    An item that cannot be read at all (no matching asset, a corrupt file) raises ReaderError.
    """
    import warnings

    item_id = str(req.item.get("id"))
    when, sources, hrefs = _sources(req)
    open_files: dict[str, Any] = {}  # each file opened once for all the item's chips
    with contextlib.ExitStack() as stack:
        stack.enter_context(single_thread_decoding())  # once for all the item's small windows
        stack.callback(lambda: [ds.close() for ds in open_files.values()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reader warnings (non-square pixels...): see tokenize
            plans = plan_sources(sources, open_files)
        crss = {p.crs.to_string() if p.crs else None for p in plans}
        if len(crss) != 1 or None in crss:
            raise ReaderError(
                f"item {item_id!r}: its bands must share one projected CRS (got {sorted(map(str, crss))})"
            )
        out = ItemChips()
        for lb, atoms, n_masked in _chips(req, item_id, when, hrefs, plans, open_files, out):
            if len(atoms) < req.min_atoms:
                why = f"{len(atoms)} atoms (fewer than min_atoms {req.min_atoms})"
                out.skipped.append(_skip(item_id, lb, why + (f"; {n_masked} masked" if n_masked else "")))
                continue
            out.chips.append(atoms)
            out.rows.append({"label_index": lb["index"], "label": lb["value"], "item_id": item_id,
                             "sensor": req.sensor.id, "datetime": when.isoformat() if when else None,
                             "lon": lb["lon"], "lat": lb["lat"], "atoms": len(atoms), "masked": n_masked})
        return out


def _chips(req: ChipRequest, item_id: str, when: Any, hrefs: dict[str, str], plans: list[BandPlan],
           open_files: dict[str, Any], out: ItemChips) -> Iterator[tuple[dict[str, Any], AtomSet, int]]:
    """(label, chip atoms, atoms masked) for each label whose footprint holds pixels."""
    from rasterio.warp import transform

    from atomizer.readers.quality import drop_flagged, quality_href, quality_rule

    crs = plans[0].crs
    rule = quality_rule(req.sensor, req.mask) if req.mask else None
    mask_href = quality_href(rule, hrefs, f"item {item_id!r}") if rule else None
    xs, ys = transform("EPSG:4326", crs, [lb["lon"] for lb in req.labels], [lb["lat"] for lb in req.labels])
    bands = tuple(p.source.band.model_copy(update={"gsd_m": p.grid.pixel_m}) for p in plans)
    half = req.chip_m / 2.0
    for lb, cx, cy in zip(req.labels, xs, ys):
        if not _set_windows(plans, (cx - half, cy - half, cx + half, cy + half)):
            out.skipped.append(_skip(item_id, lb, "the chip lies outside the item's rasters"))
            continue
        (value, band, x, y), _ = read_atoms(plans, None, cx, cy, open_files, report=False)
        atoms = AtomSet(
            value=value, band=band, x=x, y=y, bands=bands,
            scene=SceneMeta(sensor_id=req.sensor.id, datetime=when, lon=lb["lon"], lat=lb["lat"],
                            crs=crs.to_string(), source_id=item_id,
                            extra={"reference_centre_m": [float(cx), float(cy)], "chip_m": req.chip_m}),
        )
        n_masked = 0
        if rule is not None:
            atoms, n_masked = drop_flagged(atoms, (cx, cy), mask_href, rule, req.mask, open_files)
        yield lb, atoms, n_masked


def _set_windows(plans: Sequence[BandPlan], bounds: tuple[float, float, float, float]) -> bool:
    """Set each plan's pixel window to the chip bounds; False when no band has a pixel there."""
    any_pixels = False
    for p in plans:
        g = p.grid
        c0, c1 = _index_range(bounds[0], bounds[2], g.x0, g.dx, g.width)
        r0, r1 = _index_range(bounds[1], bounds[3], g.y0, g.dy, g.height)
        p.window = (r0, r1, c0, c1) if (c1 > c0 and r1 > r0) else (0, 0, 0, 0)
        any_pixels |= p.window[1] > p.window[0]
    return any_pixels


def _skip(item_id: str, label: dict[str, Any], why: str) -> dict[str, Any]:
    return {"item_id": item_id, "label_index": label["index"], "error": why}


def describe_failure(exc: BaseException) -> str:
    """One line for errors.jsonl."""
    if isinstance(exc, AtomizerError):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
