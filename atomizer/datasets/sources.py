"""A dataset spec's inputs: its STAC items, its labels, which (item, label) pairs become chips and
which split each label goes to. Everything here runs once, in the process that plans the build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.datasets.spec import SPLIT_NAMES, DatasetSpec
from atomizer.errors import DatasetError

#: Metres per degree of latitude (spherical approximation, for spatial split blocks only).
METRES_PER_DEGREE = 111_320.0


@dataclass
class ItemRef:
    """One STAC item: its JSON (asset hrefs absolute), footprint and acquisition time."""

    id: str
    data: dict[str, Any]
    geometry: Any  # shapely geometry in lon/lat
    datetime: dt.datetime | None


@dataclass
class Label:
    """One label: its row in the labels file, where it is, what it says, when, and for which item."""

    index: int
    lon: float
    lat: float
    value: Any  # a class name, or a tuple of names
    datetime: dt.datetime | None = None
    item_id: str | None = None
    split: str | None = None
    group: str | None = None


@dataclass
class Pairing:
    """Labels per item, and the labels that matched no item (with why)."""

    by_item: dict[int, list[Label]] = field(default_factory=dict)
    unmatched: list[tuple[Label, str]] = field(default_factory=list)


# --- items ----------------------------------------------------------------------------------------
def _absolute_hrefs(data: dict[str, Any], base: str | None) -> dict[str, Any]:
    if base is None:
        return data
    for asset in (data.get("assets") or {}).values():
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and "://" not in href and not Path(href).is_absolute():
            asset["href"] = str((Path(base) / href).resolve())
    return data


def _item_ref(data: Any, base: str | None, origin: str) -> ItemRef:
    import pystac
    from shapely.geometry import shape

    if not isinstance(data, dict):
        raise DatasetError(f"{origin}: an item is a JSON {type(data).__name__}, not a STAC item object")
    try:
        item = pystac.Item.from_dict(_absolute_hrefs(data, base), preserve_dict=False)
        geometry = shape(item.geometry) if item.geometry else None
    except Exception as exc:  # noqa: BLE001 - pystac / shapely raise many kinds on bad input
        raise DatasetError(f"{origin}: item {data.get('id')!r} is not a valid STAC item ({exc})") from None
    if geometry is None:
        raise DatasetError(f"{origin}: item {item.id!r} has no geometry; labels cannot be matched to it")
    from atomizer.readers.stac import item_datetime

    return ItemRef(item.id, item.to_dict(include_self_link=False), geometry, item_datetime(item))


def load_items(source: str) -> list[ItemRef]:
    """The items of an ItemCollection / Catalog / Collection JSON, a folder of item JSONs or a
    stac-geoparquet file, in a stable order (as listed, or by file name)."""
    from atomizer.documents import read_json

    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DatasetError(f"items: folder {path} holds no *.json STAC item; check the path")
        return _unique([_item_ref(read_json(f, what="STAC item", error=DatasetError), str(f.parent),
                                  str(f)) for f in files], path)
    if not path.exists():
        raise DatasetError(f"items: {path} does not exist; give an ItemCollection, catalog, folder or .parquet")
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return _geoparquet_items(path)
    data = read_json(path, what="STAC document", error=DatasetError)
    kind = data.get("type") if isinstance(data, dict) else None
    base = str(path.resolve().parent)
    if kind == "FeatureCollection":
        features = data.get("features")
        if features is None:
            features = []
        if not isinstance(features, list):
            raise DatasetError(f"items: {path}: 'features' is a JSON {type(features).__name__}, "
                               "not a list of STAC items")
        return _unique([_item_ref(f, base, str(path)) for f in features], path)
    if kind == "Feature":
        return [_item_ref(data, base, str(path))]
    if kind in ("Catalog", "Collection"):
        return _unique(_catalog_items(path), path)
    raise DatasetError(
        f"items: {path} is a JSON {kind!r} document, not an ItemCollection (FeatureCollection), "
        "Catalog, Collection or Item"
    )


def _geoparquet_items(path: Path) -> list[ItemRef]:
    try:
        import pyarrow.parquet as pq
        from stac_geoparquet.arrow import stac_table_to_items
    except ImportError:
        raise DatasetError(
            f"items: {path} is stac-geoparquet; install the reader with pip install 'atomizer[datasets]'"
        ) from None
    try:
        table = pq.read_table(path)
        rows = list(stac_table_to_items(table))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a bad file
        raise DatasetError(f"items: {path} is not a readable stac-geoparquet file ({exc})") from None
    return _unique([_item_ref(r, str(path.resolve().parent), str(path)) for r in rows], path)


def _unique(items: list[ItemRef], path: Path) -> list[ItemRef]:
    """``items``, refused when two share an id (labels pin items by id; shards are named by it)."""
    seen: dict[str, int] = {}
    for k, it in enumerate(items):
        if it.id in seen:
            raise DatasetError(f"items: {path}: item id {it.id!r} appears twice (items {seen[it.id]} "
                               f"and {k}); give every item its own id")
        seen[it.id] = k
    return items


def _catalog_items(path: Path) -> list[ItemRef]:
    """The items under a static Catalog or Collection, walked with pystac; every file read within
    the JSON size limit; a broken link, a cycle or an invalid document is one error."""
    import pystac
    from pystac.stac_io import DefaultStacIO

    from atomizer.documents import read_bytes

    class BoundedStacIO(DefaultStacIO):
        def read_text_from_href(self, href: str) -> str:
            if "://" in href and not href.startswith("file://"):
                return super().read_text_from_href(href)
            local = href[len("file://"):] if href.startswith("file://") else href
            data = read_bytes(local, limit_name="json_bytes", what="STAC document", error=DatasetError)
            return data.decode("utf-8", errors="replace")

    try:
        cat = pystac.read_file(str(path.resolve()), stac_io=BoundedStacIO())
        items = sorted(cat.get_items(recursive=True), key=lambda i: i.id)
        for item in items:
            item.make_asset_hrefs_absolute()
        dicts = [i.to_dict(include_self_link=False) for i in items]
    except DatasetError:
        raise
    except RecursionError:
        raise DatasetError(f"items: {path}: the catalog's links nest too deep or form a cycle") from None
    except Exception as exc:  # noqa: BLE001 - pystac raises many kinds on a bad catalog
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DatasetError(f"items: {path}: cannot walk the catalog ({type(exc).__name__}: {first})") from None
    return [_item_ref(d, None, str(path)) for d in dicts]


# --- labels ---------------------------------------------------------------------------------------
def _read_table(spec: DatasetSpec) -> Any:
    import geopandas as gpd
    import pandas as pd

    ls = spec.labels
    path = Path(ls.path)
    if not path.is_file():
        raise DatasetError(f"labels.path: {path} does not exist; check the path")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path)
            for col in (ls.lon_column, ls.lat_column):
                if col not in df.columns:
                    raise DatasetError(
                        f"labels: {path} has no column {col!r} (columns: {', '.join(map(str, df.columns))}); "
                        "set labels.lon_column / labels.lat_column"
                    )
            return gpd.GeoDataFrame(
                df, geometry=gpd.points_from_xy(df[ls.lon_column], df[ls.lat_column]), crs="EPSG:4326"
            )
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
        elif path.suffix.lower() in (".geojson", ".json"):  # bounded read; list values stay lists
            from atomizer.documents import read_json

            doc = read_json(path, what="GeoJSON labels file", error=DatasetError)
            features = doc.get("features") if isinstance(doc, dict) else None
            if not isinstance(features, list):
                raise DatasetError(f"labels: {path} is not a GeoJSON FeatureCollection")
            gdf = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
        else:
            gdf = gpd.read_file(path)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyogrio / pyarrow raise many kinds
        raise DatasetError(f"labels: cannot read {path} ({str(exc).splitlines()[0]})") from None
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    return gdf


def _label_value(raw: Any, sep: str | None, where: str) -> Any:
    """A class name, or a tuple of names (multi-label); anything else is refused with ``where``."""
    if isinstance(raw, str) and sep is not None:
        return tuple(p.strip() for p in raw.split(sep) if p.strip())
    if isinstance(raw, (list, tuple, np.ndarray)):
        return tuple(_class_name(v, where) for v in list(raw))
    return _class_name(raw, where)


def _class_name(raw: Any, where: str) -> str:
    if isinstance(raw, (bool, np.bool_)):
        return str(bool(raw))
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    if isinstance(raw, (float, np.floating)):
        if not math.isfinite(raw):
            raise DatasetError(f"{where}: the label {float(raw)!r} is not a class; give a class name or number")
        return str(int(raw)) if raw == int(raw) else str(float(raw))
    if isinstance(raw, str):
        if not raw.strip():
            raise DatasetError(f"{where}: the label is an empty text; give every row a class")
        return raw
    raise DatasetError(f"{where}: the label {raw!r} is a {type(raw).__name__}, not a class name, "
                       "number or list of them")


def _text(raw: Any) -> str | None:
    """An id / split / group cell as text; an empty cell (None, NaN, blank) is None. A number read
    as float (a column with blanks) keeps its integer form: 100.0 -> '100'."""
    if raw is None or (isinstance(raw, (float, np.floating)) and math.isnan(raw)):
        return None
    if isinstance(raw, (float, np.floating)) and math.isfinite(raw) and raw == int(raw):
        return str(int(raw))
    text = str(raw)
    return text if text.strip() else None


def _as_datetime(raw: Any, where: str) -> dt.datetime | None:
    import pandas as pd

    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or raw is pd.NaT:
        return None
    if isinstance(raw, str) and raw.strip().lower() in ("", "nat", "nan", "none", "null"):
        return None  # an empty date cell
    if isinstance(raw, str) and raw.strip().lower() in ("now", "today", "tomorrow", "yesterday"):
        raise DatasetError(f"{where}: {raw!r} is not a date; write ISO dates like 2022-10-05")
    try:
        ts = pd.Timestamp(raw)
    except (ValueError, TypeError, OverflowError):
        raise DatasetError(f"{where}: {raw!r} is not a date; write ISO dates like 2022-10-05") from None
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.to_pydatetime()


def load_labels(spec: DatasetSpec) -> list[Label]:
    """Every label row as a :class:`Label` (points; a polygon stands for its representative point)."""
    gdf = _read_table(spec)
    ls = spec.labels
    wanted = [ls.column, ls.datetime_column, ls.item_id_column, spec.split.column, spec.split.group]
    for key, col in zip(("column", "datetime_column", "item_id_column", "split.column", "split.group"), wanted):
        if col is not None and col not in gdf.columns:
            cols = ", ".join(str(c) for c in gdf.columns if c != "geometry")
            raise DatasetError(f"labels.{key}: {ls.path} has no column {col!r}; its columns are {cols}")
    labels, kinds = [], {}
    columns = {c: gdf[c].tolist() for c in set(filter(None, wanted))}  # any column name
    for i, geom in enumerate(gdf.geometry.tolist()):
        rec = {c: values[i] for c, values in columns.items()}
        if geom is None or geom.is_empty:
            raise DatasetError(f"{ls.path}: label row {i} has no geometry; give every label a point")
        pt = geom if geom.geom_type == "Point" else geom.representative_point()
        raw = rec[ls.column]
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            raise DatasetError(f"{ls.path}: label row {i} has no value in column {ls.column!r}")
        where = f"{ls.path}: row {i}"
        kinds.setdefault(_kind(raw, ls.separator), i)
        if len(kinds) > 1:
            (k1, r1), (k2, r2) = kinds.items()
            raise DatasetError(
                f"{ls.path}: column {ls.column!r} mixes label types ({k1} in row {r1}, {k2} in row "
                f"{r2}); use one kind: a class name in every row, or a list in every row (multi-label)"
            )
        labels.append(Label(
            index=i, lon=float(pt.x), lat=float(pt.y), value=_label_value(raw, ls.separator, where),
            datetime=_as_datetime(rec[ls.datetime_column], where) if ls.datetime_column else None,
            item_id=_text(rec[ls.item_id_column]) if ls.item_id_column else None,
            split=_text(rec[spec.split.column]) if spec.split.column else None,
            group=_text(rec[spec.split.group]) if spec.split.group else None,
        ))
    if not labels:
        raise DatasetError(f"labels: {ls.path} holds no label; nothing to build")
    return labels


def usable_position(lb: Label) -> bool:
    """Whether a label's lon/lat is a place on Earth (finite, latitude within +-90)."""
    return math.isfinite(lb.lon) and math.isfinite(lb.lat) and abs(lb.lat) <= 90


def _kind(raw: Any, sep: str | None) -> str:
    if isinstance(raw, (list, tuple, np.ndarray)) or (isinstance(raw, str) and sep is not None):
        return "a list"
    if isinstance(raw, (bool, np.bool_)):
        return "a boolean"
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return "a number"
    return "a class name"


def class_names(labels: Sequence[Label], spec: DatasetSpec) -> tuple[list[str], bool]:
    """The class names in index order, and whether the task is multi-label."""
    multilabel = isinstance(labels[0].value, tuple)
    seen = {v for lb in labels for v in (lb.value if multilabel else (lb.value,))}
    if not seen and spec.labels.classes is None:
        raise DatasetError(f"labels: {spec.labels.path}: every label list is empty; nothing to learn")
    if spec.labels.classes is None:
        return sorted(seen), multilabel
    unknown = sorted(seen - set(spec.labels.classes))
    if unknown:
        raise DatasetError(f"labels.classes: the labels use classes not listed: {unknown}; add them")
    return list(spec.labels.classes), multilabel


# --- matching and splits --------------------------------------------------------------------------
def pair_labels(items: Sequence[ItemRef], labels: Sequence[Label], spec: DatasetSpec) -> Pairing:
    """Each label with every item whose footprint holds it (and within ``max_days``)."""
    import shapely
    from shapely import STRtree

    tree = STRtree([it.geometry for it in items])
    by_id = {it.id: k for k, it in enumerate(items)}
    out = Pairing()
    max_days = spec.match.max_days
    placed = [i for i, lb in enumerate(labels) if usable_position(lb)]
    found: dict[int, list[int]] = {i: [] for i in placed}
    if placed:  # one query for all labels: (label, item) pairs whose footprint holds the point
        points = shapely.points([labels[i].lon for i in placed], [labels[i].lat for i in placed])
        for q, k in zip(*tree.query(points, predicate="intersects").tolist()):
            found[placed[q]].append(k)
    for i, lb in enumerate(labels):
        if i not in found:
            out.unmatched.append((lb, f"its position (lon {lb.lon}, lat {lb.lat}) is not a place on Earth"))
            continue
        hits = sorted(found[i])
        if lb.item_id is not None:
            if lb.item_id not in by_id:
                out.unmatched.append((lb, f"its item_id {lb.item_id!r} is not among the items"))
                continue
            hits = [k for k in hits if k == by_id[lb.item_id]]
        if not hits:
            out.unmatched.append((lb, f"it lies at lon {lb.lon:.5f}, lat {lb.lat:.5f}, outside every "
                                      "item's footprint"))
            continue
        if max_days is not None and lb.datetime is not None:
            dated = [k for k in hits if items[k].datetime is None
                     or abs((items[k].datetime - lb.datetime).total_seconds()) <= max_days * 86400]
            if not dated:
                out.unmatched.append((lb, f"no item within {max_days:g} days of its date {lb.datetime:%Y-%m-%d}"))
                continue
            hits = dated
        for k in hits:
            out.by_item.setdefault(k, []).append(lb)
    return out


def assign_splits(labels: Sequence[Label], spec: DatasetSpec) -> None:
    """Set ``label.split``: from the split column, else one seeded split per block or group."""
    sp = spec.split
    if sp.column is not None:
        for lb in labels:
            if lb.split not in SPLIT_NAMES:
                raise DatasetError(
                    f"{spec.labels.path}: row {lb.index}: split {lb.split!r} in column {sp.column!r} "
                    f"is not one of {', '.join(SPLIT_NAMES)}"
                )
        return
    if sp.blocks_m is not None:
        keys = [_block_key(lb, sp.blocks_m) for lb in labels]
    elif sp.group is not None:
        keys = [str(lb.group) for lb in labels]
    else:
        keys = [str(lb.index) for lb in labels]
    for lb, split in zip(labels, group_split(keys, sp.fractions, sp.seed)):
        lb.split = split


def _block_key(lb: Label, blocks_m: float) -> str:
    """The label's spatial block; "" for a position that is no place (it matches no item)."""
    if not usable_position(lb):
        return ""
    row_f = lb.lat * METRES_PER_DEGREE / blocks_m
    if not math.isfinite(row_f):
        return ""
    row = math.floor(row_f)
    lat_c = (row + 0.5) * blocks_m / METRES_PER_DEGREE
    col_f = lb.lon * METRES_PER_DEGREE * math.cos(math.radians(lat_c)) / blocks_m
    return f"{row},{math.floor(col_f)}" if math.isfinite(col_f) else ""


def group_split(keys: Sequence[str], fractions: dict[str, float], seed: int) -> list[str]:
    """A split per key such that equal keys share one; groups are shuffled (by ``seed``) and filled
    into the splits in order until each holds its fraction of the rows."""
    groups = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    names = [n for n in SPLIT_NAMES if fractions.get(n, 0) > 0]
    bounds = np.cumsum([fractions[n] for n in names]) * len(keys)
    chosen: dict[str, str] = {}
    done = 0
    for g in groups:
        pos = done + counts[g] / 2.0  # a group goes where its middle row falls
        chosen[g] = names[min(int(np.searchsorted(bounds, pos, side="right")), len(names) - 1)]
        done += counts[g]
    return [chosen[k] for k in keys]
